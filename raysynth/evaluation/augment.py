"""Differentiable siamese augmentation (DSA, Zhao & Bilen 2021) for batches of normalized images.

Random parameters come from an explicit ``torch.Generator``. Training a classifier draws them per
sample; distribution matching (``shared=True``) draws one parameter set per call and applies it to the
whole batch, so a real and a synthetic batch augmented from the same generator state get the identical
transformation, as the reference code's batch mode does (``randf[:] = randf[0]``) whatever the batch
sizes. As in the reference code's single mode, each call applies one randomly chosen family of the
policy. Every op is differentiable with respect to the images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DSA_POLICY = ("color", "crop", "cutout", "flip", "scale", "rotate")


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=generator) * (high - low) + low).to(device)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.expand(x.shape[0], -1, -1), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def _color(x, g, n):
    x = x + (_uniform(n, -0.5, 0.5, g, x.device)).view(-1, 1, 1, 1)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(n, 0.0, 2.0, g, x.device).view(-1, 1, 1, 1) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(n, 0.5, 1.5, g, x.device).view(-1, 1, 1, 1) + mean


def _crop(x, g, n, ratio: float = 0.125):
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = _uniform(n, -2 * ratio, 2 * ratio, g, x.device)
    theta[:, 1, 2] = _uniform(n, -2 * ratio, 2 * ratio, g, x.device)
    return _affine(x, theta)


def _cutout(x, g, n, ratio: float = 0.5):
    h, w = x.shape[-2:]
    ch, cw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    cy = (torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=g)).to(x.device)
    cx = (torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=g)).to(x.device)
    ys = torch.arange(h, device=x.device).view(1, -1, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, -1)
    inside = ((ys - cy).abs() <= ch // 2) & ((xs - cx).abs() <= cw // 2)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def _flip(x, g, n):
    flip = (torch.rand(n, generator=g) < 0.5).to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


def _scale(x, g, n, ratio: float = 1.2):
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = _uniform(n, 1 / ratio, ratio, g, x.device)
    theta[:, 1, 1] = _uniform(n, 1 / ratio, ratio, g, x.device)
    return _affine(x, theta)


def _rotate(x, g, n, degrees: float = 15.0):
    angle = _uniform(n, -degrees, degrees, g, x.device) * math.pi / 180
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle), -torch.sin(angle)
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle), torch.cos(angle)
    return _affine(x, theta)


_OPS = {"color": _color, "crop": _crop, "cutout": _cutout, "flip": _flip, "scale": _scale, "rotate": _rotate}


def dsa_augment(x: torch.Tensor, generator: torch.Generator, policy: tuple[str, ...] = DSA_POLICY,
                shared: bool = False) -> torch.Tensor:
    """One randomly chosen augmentation of ``policy``, its parameters drawn from ``generator`` per sample,
    or with ``shared`` once for the whole batch."""
    op = policy[int(torch.randint(0, len(policy), (1,), generator=generator))]
    return _OPS[op](x, generator, 1 if shared else x.shape[0])


def policy_for(dataset_name: str) -> tuple[str, ...]:
    """The DSA policy; horizontal flips change a digit's identity, so digit data goes without them."""
    if dataset_name in ("digits", "mnist"):
        return tuple(op for op in DSA_POLICY if op != "flip")
    return DSA_POLICY
