"""Distribution losses shared by the Koopman-space methods (`expansive`, `koopcon`).

L_W: Wasserstein distance between two empirical measures of latent vectors, through POT's torch
backend so it is differentiable (exact OT, entropic Sinkhorn, or sliced). L_cov: ||Cov(Y') - I||_F^2
on flattened, standardized latents (Expansive Synthesis Eq. 8).
"""

from __future__ import annotations


import ot
import torch

from raysynth.nets.settings import OtKind  # noqa: F401 (re-exported)


def wasserstein(source: torch.Tensor, target: torch.Tensor, kind: OtKind = "exact", *, reg: float = 0.05,
                projections: int = 64, seed: int = 0) -> torch.Tensor:
    """W between the uniform empirical measures of ``source`` (n x ...) and ``target`` (m x ...),
    squared-Euclidean ground cost; sizes may differ. Differentiable in both inputs."""
    x, y = source.flatten(1), target.flatten(1)
    if kind == "sliced":
        return ot.sliced_wasserstein_distance(x, y, n_projections=projections, seed=seed)
    a = torch.full((len(x),), 1.0 / len(x), dtype=x.dtype, device=x.device)
    b = torch.full((len(y),), 1.0 / len(y), dtype=y.dtype, device=y.device)
    cost = ot.dist(x, y)  # squared Euclidean
    if kind == "exact":
        return ot.emd2(a, b, cost)
    if kind == "sinkhorn":
        # the cost is scaled to [0, 1] so one `reg` works at every latent size; the value is scaled back
        scale = cost.detach().max().clamp_min(1e-12)
        return ot.sinkhorn2(a, b, cost / scale, reg) * scale
    raise ValueError(f"unknown OT kind `{kind}`: use exact, sinkhorn or sliced")


def per_class_wasserstein(source: torch.Tensor, source_labels: torch.Tensor, target: torch.Tensor,
                          target_labels: torch.Tensor, kind: OtKind = "exact", **options) -> torch.Tensor:
    """Mean over the classes present in both sets of the W between their class-conditional measures."""
    distances = [wasserstein(source[source_labels == c], target[target_labels == c], kind, **options)
                 for c in torch.unique(target_labels).tolist() if bool((source_labels == c).any())]
    return torch.stack(distances).mean()


def covariance_loss(latents: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """||Cov(Z) - I||_F^2 with Z the flattened latents standardized per dimension (needs n >= 2)."""
    z = latents.flatten(1)
    z = (z - z.mean(0)) / (z.std(0) + eps)
    covariance = z.T @ z / (len(z) - 1)
    identity = torch.eye(covariance.shape[0], dtype=z.dtype, device=z.device)
    return ((covariance - identity) ** 2).sum()
