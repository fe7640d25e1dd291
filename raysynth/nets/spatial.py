"""Spatial transformer families, batched: warps, their tangent space (log map) and back (exp map).

- ``affine``: 2 x 3 matrices theta (``F.affine_grid``); tangent vector = the top two rows of the
  matrix logarithm of the 3 x 3 homogeneous matrix (scipy's ``logm``/``expm``), 6 numbers.
- ``diffeomorphic``: a stationary velocity field on a coarse ``grid`` x ``grid`` lattice, upsampled
  to the image and integrated by scaling and squaring, so the warp is invertible (its inverse is the
  warp of the negated field); the tangent vector is the velocity field itself.

Coordinates are ``grid_sample``'s normalized [-1, 1] with ``align_corners=False``. Images are warped
in [0, 1] pixel units so that what enters from outside the frame is background (0).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F


def identity_grid(count: int, size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``count x size x size x 2`` sampling grid of the identity map."""
    eye = torch.eye(2, 3, device=device, dtype=dtype).expand(count, 2, 3)
    return F.affine_grid(eye, [count, 1, size, size], align_corners=False)


def affine_warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``images`` (N x C x S x S) sampled through the affine maps ``theta`` (N x 2 x 3)."""
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def affine_identity(count: int, device=None) -> torch.Tensor:
    return torch.eye(2, 3, device=device).repeat(count, 1, 1)


def homogeneous(theta: np.ndarray) -> np.ndarray:
    """``N x 2 x 3`` -> ``N x 3 x 3`` with the row (0, 0, 1)."""
    bottom = np.broadcast_to(np.array([0.0, 0.0, 1.0]), (len(theta), 1, 3))
    return np.concatenate([theta, bottom], axis=1)


def affine_log(theta: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Tangent vectors (N' x 6) of the affine maps whose logarithm is real, and a mask of those kept
    (a map with a reflection or a negative real eigenvalue has no real logarithm)."""
    matrices = homogeneous(theta.detach().double().cpu().numpy())
    vectors, keep = [], []
    for matrix in matrices:
        ok = np.linalg.det(matrix[:2, :2]) > 0
        if ok:
            logarithm = _logm_keeping_global_rng(matrix)
            ok = bool(np.all(np.isfinite(logarithm)) and np.abs(np.imag(logarithm)).max() < 1e-8)
        keep.append(ok)
        if ok:
            vectors.append(np.real(logarithm)[:2].reshape(6))
    return (np.stack(vectors) if vectors else np.zeros((0, 6))), np.array(keep, dtype=bool)


def _logm_keeping_global_rng(matrix: np.ndarray) -> np.ndarray:
    """scipy's logm estimates a 1-norm with random vectors from numpy's global generator; a method must
    leave the global random state as it found it (and its result then no longer depends on it)."""
    state = np.random.get_state()
    try:
        return scipy.linalg.logm(matrix)
    finally:
        np.random.set_state(state)


def affine_exp(vectors: np.ndarray) -> torch.Tensor:
    """Affine maps (N x 2 x 3) from tangent vectors (N x 6): the matrix exponential."""
    algebra = np.zeros((len(vectors), 3, 3))
    algebra[:, :2] = vectors.reshape(-1, 2, 3)
    return torch.from_numpy(scipy.linalg.expm(algebra)[:, :2]).float()


def upsample_velocity(velocity: torch.Tensor, size: int) -> torch.Tensor:
    """``N x 2 x g x g`` -> ``N x 2 x size x size`` (bilinear; smooth between lattice points)."""
    return F.interpolate(velocity, size=(size, size), mode="bilinear", align_corners=True)


def _resample(field: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=False)


def integrate_velocity(velocity: torch.Tensor, size: int, squarings: int = 6) -> torch.Tensor:
    """Displacement ``N x 2 x size x size`` of exp(v) by scaling and squaring: u = v / 2^K, then
    K times u <- u + u o (id + u). Channel 0 is x, 1 is y (grid_sample's order)."""
    displacement = upsample_velocity(velocity, size) / 2 ** squarings
    base = identity_grid(len(velocity), size, velocity.device, velocity.dtype)
    for _ in range(squarings):
        displacement = displacement + _resample(displacement, base + displacement.permute(0, 2, 3, 1))
    return displacement


def displacement_warp(images: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """``images`` sampled at id + ``displacement``."""
    grid = identity_grid(len(images), images.shape[-1], images.device, images.dtype) + displacement.permute(0, 2, 3, 1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def compose_displacements(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The displacement of the map x -> first-map(second-map(x)) sampled on the grid: sampling an image
    through the result equals sampling it through ``first`` and then through ``second``."""
    base = identity_grid(len(first), first.shape[-1], first.device, first.dtype)
    return second + _resample(first, base + second.permute(0, 2, 3, 1))
