"""The Koopman autoencoder shared by `expansive` and `koopcon`: phi (image -> latent map) and phi^-1.

Depth follows the Koopcon paper's ablation: shallow / medium / deep = 5 / 7 / 9 convolutions in
all (encoder ceil(k/2), decoder floor(k/2)). Every convolution is a :class:`FiLMConv`, so a model
pretrained on a larger set can be fine-tuned on a few-shot set with its weights W frozen and only a
per-filter scale gamma and shift beta learned (Expansive Synthesis Eq. 1).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from raysynth.diskcache import cached_state, content_key
from raysynth.nets.classifiers import padded_size  # 28 px -> 32: two halvings give an 8 x 8 latent map

from raysynth.nets.settings import Depth, FilmMode, downsamplings, latent_map_size  # noqa: F401 (re-exported)
CONV_LAYERS: dict[str, int] = {"shallow": 5, "medium": 7, "deep": 9}


class FiLMConv(nn.Module):
    """A convolution (or transposed convolution) with per-output-filter ``gamma`` and ``beta``.

    ``mode="weight"``: conv(x; gamma_i W_i + beta_i), the right-hand side of Eq. 1 (beta shifts every
    weight of filter i). ``mode="output"``: gamma_i conv(x; W)_i + beta_i, its left-hand side (beta
    shifts the activation). gamma = 1 and beta = 0 at the start, so both begin as the plain convolution.
    """

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d, mode: FilmMode = "weight"):
        super().__init__()
        self.conv, self.mode = conv, mode
        out_channels = conv.out_channels
        self.gamma = nn.Parameter(torch.ones(out_channels))
        self.beta = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if self.mode == "output":
            shape = (1, -1, 1, 1)
            return conv(x) * self.gamma.view(shape) + self.beta.view(shape)
        transposed = isinstance(conv, nn.ConvTranspose2d)
        # output filters are dim 0 of a Conv2d weight and dim 1 of a ConvTranspose2d weight
        shape = (1, -1, 1, 1) if transposed else (-1, 1, 1, 1)
        weight = conv.weight * self.gamma.view(shape) + self.beta.view(shape)
        if transposed:
            return F.conv_transpose2d(x, weight, conv.bias, conv.stride, conv.padding, conv.output_padding)
        return F.conv2d(x, weight, conv.bias, conv.stride, conv.padding)


class KoopmanAutoencoder(nn.Module):
    """phi: ``N x channels x S x S`` -> ``N x latent_channels x h x h``; phi^-1 back. ``variational``
    adds a log-variance head (the KL term of L_re); the latent then is its mean, sampled in training."""

    def __init__(self, channels: int, image_size: int, latent_channels: int = 32, depth: Depth = "medium",
                 variational: bool = False, width: int = 64, film: FilmMode = "weight"):
        super().__init__()
        self.image_size, self.variational = image_size, variational
        total = CONV_LAYERS[depth]
        encoder_convs, decoder_convs = math.ceil(total / 2), total // 2
        downs = downsamplings(image_size)
        self.latent_size = latent_map_size(image_size)
        self.latent_channels = latent_channels

        def film(conv):
            return FiLMConv(conv, film)

        act = nn.LeakyReLU(0.2)
        encoder: list[nn.Module] = []
        in_channels = channels
        for _ in range(downs):
            encoder += [film(nn.Conv2d(in_channels, width, 4, stride=2, padding=1)), act]
            in_channels = width
        for _ in range(encoder_convs - downs - 1):
            encoder += [film(nn.Conv2d(width, width, 3, padding=1)), act]
        out = 2 * latent_channels if variational else latent_channels
        encoder.append(film(nn.Conv2d(width, out, 3, padding=1)))
        self.encoder = nn.Sequential(*encoder)

        decoder: list[nn.Module] = []
        in_channels = latent_channels
        for _ in range(decoder_convs - downs):
            decoder += [film(nn.Conv2d(in_channels, width, 3, padding=1)), act]
            in_channels = width
        for index in range(downs):
            last = index == downs - 1
            decoder.append(film(nn.ConvTranspose2d(in_channels, channels if last else width, 4, stride=2, padding=1)))
            in_channels = width
            if not last:
                decoder.append(act)
        self.decoder = nn.Sequential(*decoder)
        # NaN: the latents' scale is free; set by fix_latent_scale (not saved: each fit calibrates it again)
        self.register_buffer("latent_rms", torch.tensor(float("nan")), persistent=False)
        self.scale_fixed = False

    def fix_latent_scale(self, images: torch.Tensor, batch_size: int = 512) -> None:
        """From now on every batch's latent map is rescaled to the RMS the encoder gives ``images`` now."""
        with torch.no_grad():
            means = [self.encode_stats(images[i: i + batch_size])[0] for i in range(0, len(images), batch_size)]
            self.latent_rms.fill_(float(torch.cat(means).pow(2).mean().sqrt()))
        self.scale_fixed = True

    def conv_layers(self) -> int:
        return sum(isinstance(m, FiLMConv) for m in self.modules())

    def encode_stats(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean, log-variance) of the latent map; log-variance is None for the plain autoencoder."""
        pad = (padded_size(self.image_size) - self.image_size) // 2
        hidden = self.encoder(F.pad(images, (pad,) * 4) if pad else images)
        mean, log_variance = hidden.chunk(2, dim=1) if self.variational else (hidden, None)
        if self.scale_fixed:
            mean = mean * (self.latent_rms / mean.pow(2).mean().sqrt().clamp_min(1e-12))
        return mean, (log_variance.clamp(-10, 10) if log_variance is not None else None)

    def encode(self, images: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, log_variance = self.encode_stats(images)
        if not (sample and self.variational):
            return mean
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
        return mean + noise * (0.5 * log_variance).exp()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        images = self.decoder(latents)
        pad = (padded_size(self.image_size) - self.image_size) // 2
        return images[..., pad: pad + self.image_size, pad: pad + self.image_size] if pad else images

    def film_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.modules() if isinstance(m, FiLMConv) for p in (m.gamma, m.beta)]

    def freeze_for_finetuning(self) -> None:
        """Freezes the pretrained W (and biases); only gamma and beta stay trainable (Eq. 1)."""
        film = {id(p) for p in self.film_parameters()}
        for parameter in self.parameters():
            parameter.requires_grad_(id(parameter) in film)


def kl_divergence(mean: torch.Tensor, log_variance: torch.Tensor | None) -> torch.Tensor:
    """KL(q(Y|X) || N(0, I)) per image, averaged; zero for the plain autoencoder."""
    if log_variance is None:
        return mean.new_zeros(())
    return 0.5 * (mean.pow(2) + log_variance.exp() - 1 - log_variance).flatten(1).sum(1).mean()


def reconstruction_loss(model: KoopmanAutoencoder, images: torch.Tensor, kl_weight: float = 1e-3,
                        generator: torch.Generator | None = None,
                        through: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """L_re (Eq. 5 read as Gaussian likelihood): mean squared error (+ ``kl_weight`` x KL per pixel when
    variational), decoding ``through(latents)`` when given (a map between encoder and decoder).
    Returns (loss, latents) so callers can reuse the encoding."""
    mean, log_variance = model.encode_stats(images)
    latents = mean
    if log_variance is not None:
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
        latents = mean + noise * (0.5 * log_variance).exp()
    loss = F.mse_loss(model.decode(through(latents) if through is not None else latents), images)
    if log_variance is not None:
        loss = loss + kl_weight * kl_divergence(mean, log_variance) / images[0].numel()
    return loss, latents


def train_autoencoder(model: KoopmanAutoencoder, images: torch.Tensor, *, epochs: int, batch_size: int = 128,
                      lr: float = 1e-3, kl_weight: float = 1e-3, device: torch.device, seed: int,
                      on_epoch: Callable[[int, float], None] = lambda epoch, loss: None) -> KoopmanAutoencoder:
    """Trains every weight of ``model`` by reconstruction (Adam) on ``images`` (labels are never used)."""
    model.to(device).train()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(images), generator=generator)
        total, count = 0.0, 0
        for start in range(0, len(images), batch_size):
            batch = images[order[start: start + batch_size]].to(device)
            loss, _ = reconstruction_loss(model, batch, kl_weight, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(batch), count + len(batch)
        on_epoch(epoch, total / max(count, 1))
    return model


def pretrained_autoencoder(build: Callable[[], KoopmanAutoencoder], images: torch.Tensor, *, settings: dict, epochs: int,
                           kl_weight: float, device: torch.device, seed: int, cache_dir: Path | None,
                           on_epoch: Callable[[int, float], None] = lambda epoch, loss: None) -> KoopmanAutoencoder:
    """``build()`` trained by reconstruction on ``images``; with a ``cache_dir`` the weights are kept on
    disk under a key of ``settings`` (which must identify the images and the architecture), so every
    trial on the machine with the same settings reuses one training."""

    # built once: a second build() on a cold cache would draw from the caller's random stream again, and
    # every module initialized after it would differ between a cold and a warm cache
    model = build()

    def train() -> dict[str, torch.Tensor]:
        return train_autoencoder(model, images, epochs=epochs, kl_weight=kl_weight, device=device, seed=seed,
                                 on_epoch=on_epoch).state_dict()

    if cache_dir is None:
        model.load_state_dict(train())
    else:
        key = content_key({**settings, "epochs": epochs, "kl_weight": kl_weight, "seed": seed, "images": len(images)})
        model.load_state_dict(cached_state(cache_dir / "autoencoders" / f"{key}.pt", train))
    return model
