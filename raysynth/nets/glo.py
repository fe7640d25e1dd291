"""Generative latent optimization pieces shared by `scola` and `cola` (seed paper 001, chapter 3).

Latent codes z_i = (t_i, v_i / ||v_i||): a cluster or class part t (unit length) and a content part
v; the generator and the content codes are optimized jointly under a reconstruction loss, each part
renormalized to unit length after every epoch; new images come from per-cluster Gaussians over v.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raysynth.errors import RaysynthError
from raysynth.nets.gaussian import Gaussian

from raysynth.nets.settings import LossKind  # noqa: F401 (re-exported)

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(images: torch.Tensor) -> torch.Tensor:
    channels = images.shape[1]
    kernel = (_BINOMIAL[:, None] * _BINOMIAL[None, :]).to(images).expand(channels, 1, 5, 5)
    return F.conv2d(F.pad(images, (2, 2, 2, 2), mode="replicate"), kernel, groups=channels)


def laplacian_pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Levels L_0 (finest) .. L_{levels-1}: band-pass differences G_i - up(G_{i+1}) with a 5-tap
    binomial blur and 2x decimation; the last level is the coarsest Gaussian level itself."""
    pyramid, current = [], images
    for _ in range(levels - 1):
        down = _blur(current)[..., ::2, ::2]
        up = F.interpolate(down, size=current.shape[-2:], mode="bilinear", align_corners=False)
        pyramid.append(current - up)
        current = down
    pyramid.append(current)
    return pyramid


def laplacian_loss(generated: torch.Tensor, target: torch.Tensor, levels: int = 3, equal: bool = False) -> torch.Tensor:
    """sum_i 2^(-2i) mean |L_i(x) - L_i(x')| (Eq. 3.5, GLO's Lap1): the finest level weighs most;
    ``equal``: every level weighs 1."""
    return sum((1.0 if equal else 2.0 ** (-2 * i)) * (a - b).abs().mean()
               for i, (a, b) in enumerate(zip(laplacian_pyramid(generated, levels), laplacian_pyramid(target, levels))))


def pyramid_levels(image_size: int) -> int:
    """As many levels as keep the coarsest at >= 4 px (3 for 28/32 px, 2 for 8 px), at most 4."""
    return max(1, min(4, int(math.log2(image_size / 4)) + 1))


class PerceptualLoss(nn.Module):
    """Mean squared difference of VGG-16 features (relu1_2, relu2_2, relu3_3; Eq. 3.4). Needs ImageNet
    weights: a local file (``weights``), else torchvision's download, else a one-line error."""

    LAYERS = (3, 8, 15)

    def __init__(self, weights: str | None):
        super().__init__()
        from torchvision.models import VGG16_Weights, vgg16

        try:
            if weights:
                model = vgg16()
                model.load_state_dict(torch.load(Path(weights), map_location="cpu", weights_only=True))
            else:
                model = vgg16(weights=VGG16_Weights.IMAGENET1K_V1)
        except (OSError, RuntimeError) as error:
            raise RaysynthError(f"loss.kind=perceptual needs ImageNet VGG-16 weights ({type(error).__name__}); offline, "
                                "set params.loss.vgg_weights=/path/to/vgg16-397923af.pth, or use loss.kind=laplacian") from None
        self.features = model.features[: self.LAYERS[-1] + 1].eval()
        for parameter in self.features.parameters():
            parameter.requires_grad_(False)

    def forward(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        def to_rgb(x: torch.Tensor) -> torch.Tensor:
            return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x

        a, b, loss = to_rgb(generated), to_rgb(target), generated.new_zeros(())
        for index, layer in enumerate(self.features):
            a, b = layer(a), layer(b)
            if index in self.LAYERS:
                loss = loss + F.mse_loss(a, b)
        return loss


def reconstruction_criterion(kind: LossKind, image_size: int, vgg_weights: str | None = None,
                             device: torch.device | None = None, equal_levels: bool = False
                             ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if kind == "laplacian":
        levels = pyramid_levels(image_size)
        return lambda generated, target: laplacian_loss(generated, target, levels, equal_levels)
    if kind == "perceptual":
        return PerceptualLoss(vgg_weights).to(device)
    return lambda generated, target: (generated - target).abs().mean()


class InfoGANGenerator(nn.Module):
    """InfoGAN's generator (also GLO's): fc 1024 - fc 128 x (S/4)^2 - two stride-2 transposed
    convolutions (64 channels, then the image), BN + ReLU between, tanh out. 8 px images start at 2 x 2."""

    def __init__(self, code_dim: int, channels: int, image_size: int):
        super().__init__()
        self.base = image_size // 4
        self.fc = nn.Sequential(nn.Linear(code_dim, 1024), nn.BatchNorm1d(1024), nn.ReLU(True),
                                nn.Linear(1024, 128 * self.base * self.base), nn.BatchNorm1d(128 * self.base * self.base),
                                nn.ReLU(True))
        self.deconv = nn.Sequential(nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(True),
                                    nn.ConvTranspose2d(64, channels, 4, 2, 1), nn.Tanh())

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(codes).view(len(codes), 128, self.base, self.base))


def initial_content(count: int, dim: int, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """v_i ~ N(0, sigma I), normalized (Alg. 1's initialization)."""
    return F.normalize(sigma * torch.randn(count, dim, generator=generator), dim=1)


def fit_content_gaussians(content: torch.Tensor, clusters: torch.Tensor, num_clusters: int,
                          cov: Literal["full", "diag"]) -> list[Gaussian | None]:
    """The Gaussian of each cluster's content codes (None for an empty cluster)."""
    return [Gaussian.fit(content[clusters == c].double().numpy(), diagonal=cov == "diag")
            if bool((clusters == c).any()) else None for c in range(num_clusters)]


def sample_content(gaussian: Gaussian, count: int, rng: np.random.Generator, scale: float = 1.0) -> torch.Tensor:
    """``count`` content codes from a cluster's Gaussian (its covariance times ``scale``), back on the unit sphere."""
    if scale != 1.0:
        gaussian = Gaussian(gaussian.mean, gaussian.covariance * scale)
    return F.normalize(torch.from_numpy(gaussian.sample(count, rng)).float(), dim=1)


def train_glo(generator: nn.Module, cluster_codes: torch.Tensor, content: torch.Tensor, images: torch.Tensor, *,
              criterion, epochs: int, batch_size: int, lr_generator: float, lr_codes: float, lr_halving_steps: int,
              device: torch.device, learn_cluster_codes: bool = False,
              seed_generator: torch.Generator, on_epoch: Callable[[int, float], None] = lambda epoch, loss: None,
              loop: Callable[..., Iterable[int]] = lambda epochs, **state: range(1, epochs + 1)) -> torch.Tensor:
    """Jointly optimizes G and the content codes (Adam, both rates halved every ``lr_halving_steps``
    optimizer steps); after each epoch the
    content codes are renormalized to unit length (the cluster part is fixed and already unit).
    ``learn_cluster_codes``: the cluster part is learned too (at the codes' rate) and renormalized with them.
    ``loop(epochs, **state)`` yields the epoch numbers (a fit passes ``FitContext.resumable``).
    Returns the content codes and the cluster codes."""
    content = content.clone().to(device).requires_grad_()
    cluster_codes, images = cluster_codes.clone().to(device), images.to(device)
    learned = [content]
    if learn_cluster_codes:
        cluster_codes.requires_grad_()
        learned.append(cluster_codes)
    optimizer = torch.optim.Adam([{"params": generator.parameters(), "lr": lr_generator},
                                  {"params": learned, "lr": lr_codes}])
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=lr_halving_steps, gamma=0.5)  # stepped per batch
    generator.train()
    for epoch in loop(epochs, generator=generator, content=content, cluster_codes=cluster_codes, optimizer=optimizer,
                      schedule=schedule, rng=seed_generator):
        order = torch.randperm(len(images), generator=seed_generator).to(device)
        total = 0.0
        for begin in range(0, len(images), batch_size):
            index = order[begin: begin + batch_size]
            if len(index) < 2:  # batch norm needs two samples
                continue
            codes = torch.cat([cluster_codes[index], content[index]], dim=1)
            loss = criterion(generator(codes), images[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        with torch.no_grad():
            for part in learned:
                part.copy_(F.normalize(part, dim=1))
        on_epoch(epoch, total / len(images))
    return content.detach().cpu(), cluster_codes.detach().cpu()
