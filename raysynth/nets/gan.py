"""GAN building blocks shared by `eieg` and `dcgan`: DCGAN and MLP networks, the elastic interaction
energy (EIE) and the standard non-saturating loss, and one training loop for both.

EIE (seed paper 002): K(r) = r^-(d-1) in a d-dimensional feature space, replaced below the cut-off
eps by the quadratic a - b r^2 matching K's value and slope at eps. Both kernels (the energy's, cut-off
eps, and the stabilizer's, cut-off eps_stab) are computed in the paper's literal units, in float64
(K(eps) is 1e15 at d = 16 and 1e31 at d = 32): dividing a loss by such a constant would put every
gradient below Adam's epsilon (1e-8), so that G learns nothing, and dividing the two terms by their
own constants would multiply lambda by (eps_stab / eps)^(d-1). The stabilizer's weight relative to
the energy is lambda, as written. Adam's second moment, the squared gradient, is float32 like the
networks: literal gradients reach 1e28 (d = 32, or a small cut-off) and would square to inf, silently
freezing their weights, so the networks train on the loss times ``EIE_LOSS_SCALE`` with Adam's epsilon
scaled alike (the same steps, see ``train_gan``), and a gradient beyond even that range stops the fit
with the keys to change.

``GanSettings.feature_scale`` multiplies D's outputs before both kernels (1: the literal reading; at
0.001 every pair sits in the kernels' quadratic cores and EIE reduces to matching feature means).
``feature_bound: tanh`` first maps them into [-1, 1]^d (a raysynth option, not the paper's: its
"finite domain" refers to the input data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from raysynth.errors import NonFiniteLossError
from raysynth.nets.classifiers import padded_size  # DCGAN needs powers of two: 28 px on a 32 px canvas

from raysynth.nets.settings import FeatureBound, GanLoss  # noqa: F401 (re-exported)


def eie_kernel(distance: torch.Tensor, dimension: int, cutoff: float) -> torch.Tensor:
    """K(r) = r^-(d-1) above the cut-off eps, eps^-(d-1) ((d+1) - (d-1)(r/eps)^2) / 2 below it (float64)."""
    exponent = max(dimension - 1, 1)  # d = 1 would make K constant (no force): read as d = 2
    scaled = distance.double() / cutoff
    far = scaled.clamp_min(1.0).pow(-exponent)
    near = 0.5 * ((exponent + 2) - exponent * scaled.pow(2))
    return torch.where(scaled >= 1.0, far, near) * float(cutoff) ** -exponent


def _pairwise(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    # sqrt of a clamped squared distance: finite gradients at r = 0 (the near branch is smooth there)
    return (first.double().unsqueeze(1) - second.double().unsqueeze(0)).pow(2).sum(-1).clamp_min(1e-12).sqrt()


def self_interaction(points: torch.Tensor, cutoff: float) -> torch.Tensor:
    """mean over i != j of K(p_i - p_j) (float64). The diagonal is masked, not subtracted: K(0) is the
    kernel's largest value, and subtracting it from the sum cancels most of the digits."""
    n = len(points)
    kernel = eie_kernel(_pairwise(points, points), points.shape[1], cutoff)
    diagonal = torch.eye(n, dtype=torch.bool, device=kernel.device)
    return kernel.masked_fill(diagonal, 0.0).sum() / max(n * (n - 1), 1)


def cross_interaction(first: torch.Tensor, second: torch.Tensor, cutoff: float) -> torch.Tensor:
    """mean over i, j of K(p_i - q_j) (float64)."""
    return eie_kernel(_pairwise(first, second), first.shape[1], cutoff).mean()


def eie_energy(data: torch.Tensor, generated: torch.Tensor, cutoff: float, *, generated_self: bool = True) -> torch.Tensor:
    """E = mean K(y_i - y_j) + mean K(x_i - x_j) - 2 mean K(x_i - y_j) (float64); ``generated_self=False``
    drops the generated samples' self-interaction (the paper's Fig. 4 ablation)."""
    energy = self_interaction(data, cutoff) - 2 * cross_interaction(data, generated, cutoff)
    if generated_self:
        energy = energy + self_interaction(generated, cutoff)
    return energy


# Adam's step m / (sqrt(v) + epsilon) is unchanged when the loss and epsilon are multiplied by one
# constant, and by a power of two exactly. 2^-36 is the smallest scale that keeps epsilon^2 (the
# squares that matter for a step) in float32's normal range; a literal gradient may then reach about
# 1e30 before its square overflows (unscaled: 1.8e19, which d = 32 or a cut-off of 0.02 exceeds).
# Networks in float64 (``eie.precision``) hold about 1e165.
ADAM_EPSILON = 1e-8
EIE_LOSS_SCALE = 2.0 ** -36


def largest_adam_gradient(dtype: torch.dtype) -> float:
    """The largest gradient whose square Adam's second moment holds in ``dtype``."""
    return math.sqrt(torch.finfo(dtype).max)


# -- networks ----------------------------------------------------------------------------------------
def mlp(inputs: int, outputs: int) -> nn.Sequential:
    """The 25-Gaussians networks of the paper's appendix D: fc(in,100), LReLU, fc(100,50), LReLU, fc(50,out)."""
    return nn.Sequential(nn.Linear(inputs, 100), nn.LeakyReLU(0.2), nn.Linear(100, 50), nn.LeakyReLU(0.2),
                         nn.Linear(50, outputs))


class DCGANGenerator(nn.Module):
    """noise (``noise_dim``) -> image in [-1, 1]; transposed convolutions 4x4 -> ... -> the image size."""

    def __init__(self, channels: int, image_size: int, noise_dim: int = 100, width: int = 64):
        super().__init__()
        self.noise_dim, self.image_size = noise_dim, image_size
        canvas = padded_size(image_size)
        ups = int(math.log2(canvas // 4))
        widths = [width * 2 ** (ups - 1 - i) for i in range(ups)]  # e.g. 256, 128, 64 for 32 px
        layers: list[nn.Module] = [nn.ConvTranspose2d(noise_dim, widths[0], 4, 1, 0), nn.BatchNorm2d(widths[0]), nn.ReLU(True)]
        for i in range(ups - 1):
            layers += [nn.ConvTranspose2d(widths[i], widths[i + 1], 4, 2, 1), nn.BatchNorm2d(widths[i + 1]), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        images = self.net(noise.view(len(noise), -1, 1, 1))
        offset = (images.shape[-1] - self.image_size) // 2
        return images[..., offset: offset + self.image_size, offset: offset + self.image_size]


class DCGANDiscriminator(nn.Module):
    """image -> ``outputs`` numbers (the EIE feature vector, or one logit for `dcgan`): strided
    convolutions down to 4 x 4, then a 4 x 4 convolution in place of DCGAN's output layer."""

    def __init__(self, channels: int, image_size: int, outputs: int, width: int = 64):
        super().__init__()
        self.image_size = image_size
        canvas = padded_size(image_size)
        downs = int(math.log2(canvas // 4))
        layers: list[nn.Module] = []
        in_channels = channels
        for i in range(downs):
            out = width * 2 ** i
            layers.append(nn.Conv2d(in_channels, out, 4, 2, 1))
            if i > 0:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.LeakyReLU(0.2, True))
            in_channels = out
        layers += [nn.Conv2d(in_channels, outputs, 4, 1, 0), nn.Flatten()]
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pad = (padded_size(self.image_size) - self.image_size) // 2
        return self.net(F.pad(images, (pad,) * 4) if pad else images)


# -- training ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GanSettings:
    loss: GanLoss = "eie"
    cutoff: float = 0.1
    stab_cutoff: float = 0.8
    stab_lambda: float = 1.0
    generated_self: bool = True  # EIE's self-interaction of generated samples (off: the collapse ablation)
    lr_generator: float = 1e-4
    lr_discriminator: float = 1e-5
    d_steps: int = 3
    batch_size: int = 64
    feature_scale: float = 1.0  # D's outputs are multiplied by it before the EIE kernels (1: the literal reading)
    feature_bound: FeatureBound = "none"  # tanh: D's outputs in [-1, 1]^d before the scale


def eie_features(settings: GanSettings, outputs: torch.Tensor) -> torch.Tensor:
    """D's outputs as the EIE kernels see them: bounded (``feature_bound``), then scaled."""
    return (torch.tanh(outputs) if settings.feature_bound == "tanh" else outputs) * settings.feature_scale


def discriminator_loss(settings: GanSettings, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
    """What D minimizes. EIE: -(E + lambda S), S = -mean K_stab(D(x_i) - D(x_j)) the repulsion of real
    features, a float64 scalar in the paper's units (float32 may not hold it)."""
    if settings.loss == "nonsaturating":
        return (F.binary_cross_entropy_with_logits(real_out, torch.ones_like(real_out))
                + F.binary_cross_entropy_with_logits(fake_out, torch.zeros_like(fake_out)))
    real_out, fake_out = eie_features(settings, real_out), eie_features(settings, fake_out)
    energy = eie_energy(real_out, fake_out, settings.cutoff, generated_self=settings.generated_self)
    return -energy + settings.stab_lambda * self_interaction(real_out, settings.stab_cutoff)


def generator_loss(settings: GanSettings, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
    """What G minimizes: E(D(x), D(G(z))), or the non-saturating -log D(G(z))."""
    if settings.loss == "nonsaturating":
        return F.binary_cross_entropy_with_logits(fake_out, torch.ones_like(fake_out))
    return eie_energy(eie_features(settings, real_out.detach()), eie_features(settings, fake_out), settings.cutoff,
                      generated_self=settings.generated_self)


def train_gan(generator: nn.Module, discriminator: nn.Module, real_batch: Callable[[int], torch.Tensor],
              noise: Callable[[int], torch.Tensor], settings: GanSettings, steps: int, *,
              on_step: Callable[[int, float, float], None] = lambda step, g, d: None,
              loop: Callable[..., Iterable[int]] = lambda steps, **state: range(1, steps + 1)) -> None:
    """``steps`` generator updates, each after ``settings.d_steps`` discriminator updates (Adam,
    betas (0.5, 0.999) as DCGAN). A discriminator without parameters (``nn.Identity``: the energy in
    data space, the paper's section 2.3) is not trained. ``loop(steps, **state)`` yields the step
    numbers (a fit passes ``FitContext.resumable``, which restores and checkpoints ``state``).
    ``on_step`` gets the losses in the loss's own units (EIE: the paper's)."""
    trains_discriminator = any(True for _ in discriminator.parameters())
    scale = EIE_LOSS_SCALE if settings.loss == "eie" else 1.0
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=settings.lr_generator, betas=(0.5, 0.999),
                                   eps=ADAM_EPSILON * scale)
    d_optimizer = (torch.optim.Adam(discriminator.parameters(), lr=settings.lr_discriminator, betas=(0.5, 0.999),
                                    eps=ADAM_EPSILON * scale)
                   if trains_discriminator else None)
    generator.train()
    discriminator.train()
    d_loss = torch.tensor(float("nan"))
    for step in loop(steps, generator=generator, discriminator=discriminator, g_optimizer=g_optimizer,
                     d_optimizer=d_optimizer):
        for _ in range(settings.d_steps if trains_discriminator else 0):
            real = real_batch(settings.batch_size)
            with torch.no_grad():
                fake = generator(noise(settings.batch_size))
            d_loss = discriminator_loss(settings, discriminator(real), discriminator(fake))
            _descend(d_optimizer, d_loss, scale, settings, f"D, before generator step {step}")
        real = real_batch(settings.batch_size)
        g_loss = generator_loss(settings, discriminator(real), discriminator(generator(noise(settings.batch_size))))
        _descend(g_optimizer, g_loss, scale, settings, f"G, generator step {step}")
        on_step(step, g_loss.item(), d_loss.item())


def _descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor, scale: float, settings: GanSettings, where: str) -> None:
    """One Adam step on ``loss * scale``; a gradient whose square float32 cannot hold stops the fit."""
    optimizer.zero_grad(set_to_none=True)
    (loss * scale).backward()
    gradients = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    largest = float(torch.stack([g.abs().max() for g in gradients]).max()) if gradients else 0.0
    dtype = gradients[0].dtype if gradients else torch.float32
    if not largest < largest_adam_gradient(dtype):  # NaN fails this too
        hint = (f"EIE's kernels grow as cutoff^-(d-1) (cutoff {settings.cutoff:g}); raise params.eie.cutoff, "
                "lower params.feature_dim" + (" or set params.eie.precision: float64" if dtype != torch.float64 else "")
                if settings.loss == "eie" else "lower the learning rates")
        raise NonFiniteLossError(f"a gradient of {largest / scale:.2g} ({where}) is beyond what Adam can square in "
                                 f"{str(dtype).removeprefix('torch.')} (about {largest_adam_gradient(dtype) / scale:.0g}): {hint}")
    optimizer.step()
