"""Koopcon's trainable pieces: the linear Koopman operator T on flattened latents, and the learned
per-class queries that pool a class's latents into its condensed ones."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KoopmanOperator(nn.Module):
    """T: a learned linear map of the flattened latent (no bias, so it is linear, not affine), initialized to I."""

    def __init__(self, dimension: int):
        super().__init__()
        self.weight = nn.Parameter(torch.eye(dimension))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return (latents.flatten(1) @ self.weight.T).view_as(latents)


class AttentionPooling(nn.Module):
    """IPC learned queries per class attend over a class's latents: each condensed latent is a
    softmax-weighted combination of them (how n_c latents become IPC, which the paper leaves implicit)."""

    def __init__(self, num_classes: int, per_class: int, dimension: int, key_dim: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_classes, per_class, key_dim) / key_dim ** 0.5)
        self.keys = nn.Linear(dimension, key_dim)

    def forward(self, latents: torch.Tensor, cls: int) -> torch.Tensor:
        flat = latents.flatten(1)
        weights = F.softmax(self.queries[cls] @ self.keys(flat).T / self.keys.out_features ** 0.5, dim=-1)
        return (weights @ flat).view(-1, *latents.shape[1:])
