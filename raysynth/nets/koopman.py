"""Koopcon's trainable pieces: the linear Koopman operator T on flattened latents, and the learned
per-class queries that pool a class's latents into its condensed ones."""

from __future__ import annotations

import math

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
    softmax-weighted combination of them (how n_c latents become IPC, which the paper leaves implicit).

    ``scores="dot"``: scaled dot products (the softmax starts near uniform, so every condensed latent
    starts near the class mean); ``"cosine"``: cosine similarities times a learned inverse temperature
    (started at 10), which can sharpen the pooling onto a few members."""

    def __init__(self, num_classes: int, per_class: int, dimension: int, key_dim: int, scores: str = "dot"):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_classes, per_class, key_dim) / key_dim ** 0.5)
        self.keys = nn.Linear(dimension, key_dim)
        self.scores = scores
        self.log_inverse_temperature = nn.Parameter(torch.tensor(math.log(10.0))) if scores == "cosine" else None

    def forward(self, latents: torch.Tensor, cls: int) -> torch.Tensor:
        flat = latents.flatten(1)
        keys, queries = self.keys(flat), self.queries[cls]
        if self.log_inverse_temperature is not None:
            scores = F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T * self.log_inverse_temperature.exp()
        else:
            scores = queries @ keys.T / self.keys.out_features ** 0.5
        return (F.softmax(scores, dim=-1) @ flat).view(-1, *latents.shape[1:])
