"""The 25-Gaussians mode test (EIEG paper section 4.1, appendix D): a 5 x 5 grid of 2-D Gaussians,
MLP generator and discriminator, modes covered and the fraction of high-quality samples."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from raysynth.nets.gan import GanSettings, eie_features, mlp, train_gan

GRID = torch.tensor([(x, y) for x in (-2.0, -1.0, 0.0, 1.0, 2.0) for y in (-2.0, -1.0, 0.0, 1.0, 2.0)])
STD = 0.05


def twenty_five_gaussians(count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` points: a uniformly chosen grid centre plus N(0, STD^2 I)."""
    centres = GRID[torch.randint(len(GRID), (count,), generator=generator)]
    return centres + STD * torch.randn(count, 2, generator=generator)


def mode_coverage(samples: torch.Tensor, min_share: float = 0.01) -> tuple[int, float]:
    """(modes covered, high-quality fraction): a sample is high quality within 3 STD of its nearest
    centre; a mode is covered when at least ``min_share`` of all samples are high quality near it."""
    distance, nearest = torch.cdist(samples, GRID).min(dim=1)
    good = distance <= 3 * STD
    shares = torch.bincount(nearest[good], minlength=len(GRID)).float() / len(samples)
    return int((shares >= min_share).sum()), float(good.float().mean())


def train_toy_gan(settings: GanSettings, steps: int, seed: int, feature_dim: int = 2, samples: int = 2500,
                  feature_network: bool = True) -> tuple[torch.Tensor, float | None]:
    """Trains the appendix-D MLPs (2-d noise) on the 25 Gaussians for ``steps`` G steps; returns samples
    and the median distance between D's features of 256 real points as the kernels see them (None
    for the GAN loss, which has no kernel).
    ``feature_network=False``: G alone under the energy in data space (the paper's section 2.3)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = mlp(2, 2)
        d = mlp(2, feature_dim if settings.loss == "eie" else 1) if feature_network else nn.Identity()
    train_gan(g, d, lambda n: twenty_five_gaussians(n, generator), lambda n: torch.randn(n, 2, generator=generator),
              settings, steps)
    with torch.no_grad():
        made = g(torch.randn(samples, 2, generator=generator))
        if settings.loss != "eie":
            return made, None
        return made, float(torch.pdist(eie_features(settings, d(twenty_five_gaussians(256, generator)))).median())


TOY_EIEG = GanSettings(loss="eie", lr_generator=1e-3, lr_discriminator=1e-4, batch_size=256)
TOY_DCGAN = replace(TOY_EIEG, loss="nonsaturating", d_steps=1)
