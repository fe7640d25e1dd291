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


def _standardized(latents: torch.Tensor, eps: float) -> torch.Tensor:
    z = latents.flatten(1)
    return (z - z.mean(0)) / (z.std(0) + eps)


def covariance_loss(latents: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """||Cov(Z) - I||_F^2 with Z the flattened latents standardized per dimension (needs n >= 2)."""
    z = _standardized(latents, eps)
    covariance = z.T @ z / (len(z) - 1)
    identity = torch.eye(covariance.shape[0], dtype=z.dtype, device=z.device)
    return ((covariance - identity) ** 2).sum()


def covariance_excess(latents: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``covariance_loss`` minus its floor when there are fewer samples n than dimensions d.

    Cov has rank <= n - 1, so ||Cov - I||_F^2 >= d^2 / (n - 1) - d, reached when the n standardized
    samples are mutually orthogonal. Through the n x n Gram matrix G = Z Z^T / d this is
    (d / (n - 1))^2 ||G - P||_F^2 with P = I - 11^T / n: the same value less the floor, hence the same
    gradient, and zero is attainable. With n > d it is ``covariance_loss`` itself."""
    z = _standardized(latents, eps)
    count, dims = z.shape
    if count > dims:
        return covariance_loss(latents, eps)
    gram = z @ z.T / dims
    centring = torch.eye(count, dtype=z.dtype, device=z.device) - 1.0 / count
    return (dims / (count - 1)) ** 2 * ((gram - centring) ** 2).sum()


def class_covariance_loss(latents: torch.Tensor, labels: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean over the classes (with >= 2 samples) of ``covariance_excess`` of the class's latents."""
    losses = [covariance_excess(latents[labels == c], eps) for c in torch.unique(labels).tolist()
              if int((labels == c).sum()) >= 2]
    return torch.stack(losses).mean() if losses else latents.new_zeros(())
