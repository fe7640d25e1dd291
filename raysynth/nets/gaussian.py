"""A multivariate Gaussian fitted to a few vectors and sampled: the per-class distributions of
`learned_augmentation` (tangent vectors) and of `scola` / `cola` (content codes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Gaussian:
    mean: np.ndarray
    covariance: np.ndarray

    @classmethod
    def fit(cls, vectors: np.ndarray, *, center: Literal["mean", "zero"] = "mean", diagonal: bool = False,
            ridge: float = 1e-4) -> "Gaussian":
        """``center="mean"``: the sample mean and covariance; ``"zero"``: mean 0 and the second moment
        about 0. ``ridge`` x the mean variance is added to the diagonal, so fewer vectors than
        dimensions still give a positive definite covariance."""
        mean = vectors.mean(0) if center == "mean" else np.zeros(vectors.shape[1])
        centered = vectors - mean
        covariance = centered.T @ centered / max(1, len(vectors) - 1)
        if diagonal:
            covariance = np.diag(np.diag(covariance))
        scale = max(float(np.trace(covariance)) / len(covariance), 1e-12)
        return cls(mean, covariance + ridge * scale * np.eye(len(covariance)))

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return rng.multivariate_normal(self.mean, self.covariance, size=count, method="cholesky")
