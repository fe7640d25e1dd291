"""Expander graph mapping (Expansive Synthesis section 3.3): per-class graphs on the L attention heads.

Each class c owns a weighted graph on L head-vertices: a learned symmetric non-negative adjacency
with at most ``degree`` edges per vertex, normalized to mean weighted degree 1 (so the spectral gap
cannot grow by scaling). It is trained to maximize the spectral gap lambda_2 - lambda_1 of its
Laplacian D - A while keeping its spectrum close to that of the class's feature-similarity graph;
the best graph seen is kept as the class codeword G_c. New latents propagate cropped head features
of several samples one step over G_c's normalized adjacency (Eq. 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raysynth.nets.attention import LatentAttention


def normalized(adjacency: torch.Tensor) -> torch.Tensor:
    """Scaled to mean weighted degree 1 (batched over leading dims)."""
    degree = adjacency.sum(-1).mean(-1, keepdim=True).unsqueeze(-1)
    return adjacency / degree.clamp_min(1e-12)


def laplacian_spectrum(adjacency: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (ascending) of D - A; differentiable in A."""
    laplacian = torch.diag_embed(adjacency.sum(-1)) - adjacency
    return torch.linalg.eigvalsh(laplacian)


def spectral_gap(adjacency: torch.Tensor) -> torch.Tensor:
    """lambda_2 - lambda_1 of the Laplacian (lambda_1 = 0; the gap is the algebraic connectivity)."""
    spectrum = laplacian_spectrum(adjacency)
    return spectrum[..., 1] - spectrum[..., 0]


def degree_mask(scores: torch.Tensor, degree: int) -> torch.Tensor:
    """Symmetric 0/1 mask keeping an edge (j, k) when each endpoint ranks it in its top ``degree``
    (mutual top-k), so no vertex has more than ``degree`` edges; no self-loops."""
    vertices = scores.shape[-1]
    eye = torch.eye(vertices, dtype=torch.bool, device=scores.device)
    scores = scores.masked_fill(eye, float("-inf"))
    top = torch.zeros_like(scores, dtype=torch.bool)
    top.scatter_(-1, scores.topk(min(degree, vertices - 1), dim=-1).indices, True)
    return (top & top.transpose(-1, -2)).to(scores.dtype)


def similarity_graph(head_features: torch.Tensor) -> torch.Tensor:
    """The class's feature-similarity graph on heads: ReLU of the cosine similarity between the
    heads' mean feature maps (``n x L x ...`` -> ``L x L``), zero diagonal, normalized."""
    means = F.normalize(head_features.mean(0).flatten(1), dim=1)
    similarity = (means @ means.T).clamp_min(0)
    similarity = similarity * (1 - torch.eye(len(similarity), device=similarity.device))
    return normalized(similarity + 1e-6 * (1 - torch.eye(len(similarity), device=similarity.device)))


def attention_crop(features: torch.Tensor, keep: float) -> torch.Tensor:
    """Keeps the ``keep`` fraction of largest-magnitude activations of each map (the last two dims), zeroing the rest."""
    if keep >= 1.0:
        return features
    flat = features.flatten(-2)
    count = max(1, int(round(keep * flat.shape[-1])))
    threshold = flat.abs().topk(count, dim=-1).values[..., -1:]
    return (flat * (flat.abs() >= threshold)).view_as(features)


def propagate(adjacency: torch.Tensor, head_features: torch.Tensor) -> torch.Tensor:
    """One step over the normalized adjacency with self-loops, D^-1/2 (A + I) D^-1/2, along the head
    axis: ``(L x L)``, ``N x L x ...`` -> ``N x L x ...``."""
    with_loops = adjacency + torch.eye(len(adjacency), device=adjacency.device, dtype=adjacency.dtype)
    inverse_sqrt = with_loops.sum(-1).rsqrt()
    operator = inverse_sqrt[:, None] * with_loops * inverse_sqrt[None, :]
    return torch.einsum("jk,nk...->nj...", operator, head_features)


class ClassGraphs(nn.Module):
    """One learned head graph per class, and the best one found so far (the codewords)."""

    def __init__(self, num_classes: int, vertices: int, degree: int, spectral_weight: float = 0.1):
        super().__init__()
        if vertices < 2:
            raise ValueError("expander graph mapping needs at least 2 attention heads")
        self.degree, self.spectral_weight = degree, spectral_weight
        self.logits = nn.Parameter(0.1 * torch.randn(num_classes, vertices, vertices))
        self.register_buffer("codewords", torch.zeros(num_classes, vertices, vertices))
        self.register_buffer("best_scores", torch.full((num_classes,), float("-inf")))

    def adjacency(self, index: int | slice = slice(None)) -> torch.Tensor:
        scores = self.logits[index]
        symmetric = F.softplus(0.5 * (scores + scores.transpose(-1, -2)))
        return normalized(symmetric * degree_mask(symmetric.detach(), self.degree))

    def objective(self, cls: int, similarity: torch.Tensor) -> torch.Tensor:
        """What the graph of ``cls`` maximizes: its spectral gap minus ``spectral_weight`` times the
        squared distance of its Laplacian spectrum to that of the similarity graph."""
        adjacency = self.adjacency(cls)
        mismatch = (laplacian_spectrum(adjacency) - laplacian_spectrum(similarity.detach())).pow(2).sum()
        return spectral_gap(adjacency) - self.spectral_weight * mismatch

    @torch.no_grad()
    def remember(self, cls: int, score: float) -> None:
        """Keeps the current graph of ``cls`` as its codeword when it scores best so far."""
        if score > float(self.best_scores[cls]):
            self.best_scores[cls] = score
            self.codewords[cls] = self.adjacency(cls).detach()

    def codeword(self, cls: int) -> torch.Tensor:
        """The best graph of ``cls`` (its current graph before any was remembered)."""
        if torch.isinf(self.best_scores[cls]):
            return self.adjacency(cls).detach()
        return self.codewords[cls]


def sample_pairs(count: int, members: int, generator: torch.Generator, shape: tuple[int, ...] = ()) -> tuple:
    """``count`` (x ``shape``) random pairs (a, b) of ``members`` indices and mixing weights in [0, 1)."""
    size = (count, *shape)
    first = torch.randint(members, size, generator=generator)
    second = torch.randint(members, size, generator=generator)
    return first, second, torch.rand(size, generator=generator)


class Expander(nn.Module):
    """The trainable parts that turn a class's latents into new ones: attention, and the class graphs
    (``params``: expansive's parameters)."""

    def __init__(self, params, num_classes: int, latent_size: int):
        super().__init__()
        attention, egm = params.attention, params.egm
        self.params = params
        self.attention = LatentAttention.from_params(attention, params.ae.latent_channels, latent_size)
        self.uses_graph = attention.variant == "mhsa_egm"
        self.graphs = ClassGraphs(num_classes, attention.heads, egm.degree, egm.spectral_weight) if self.uses_graph else None

    def new_latents(self, latents: torch.Tensor, cls: int, count: int, generator: torch.Generator,
                    codeword: bool = False) -> torch.Tensor:
        """``count`` new latents of class ``cls`` from its ``latents`` (``n_c x C x h x w``)."""
        members = len(latents)
        first, second, weight = sample_pairs(count, members, generator)
        weight = weight.to(latents.device).view(-1, 1, 1, 1)
        if self.params.interpolate:
            base = weight * latents[first] + (1 - weight) * latents[second]
        else:
            base = latents[first]
        if not self.uses_graph:
            return self.attention(base)
        # EGM (Eq. 2-3): head j's cropped features come from its own interpolated pair of samples,
        # are propagated one step over the class graph, and projected back to the latent channels
        heads = self.attention.head_outputs(latents)  # n_c x L x T x d
        vertices = heads.shape[1]
        first, second, weight = sample_pairs(count, members, generator, (vertices,))
        head_index = torch.arange(vertices).expand(count, vertices)
        weight = weight.to(latents.device)[..., None, None]
        mixed = weight * heads[first, head_index] + (1 - weight) * heads[second, head_index]
        cropped = attention_crop(mixed, self.params.egm.keep)
        graph = self.graphs.codeword(cls) if codeword else self.graphs.adjacency(cls)
        return base + self.attention.from_heads(propagate(graph, cropped), base)

    def mapped(self, latents: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each latent through the attention and, with EGM, its own cropped heads propagated over its
        class graph: no interpolation, one output per input (the path of Algorithm 1's L_re)."""
        if not self.uses_graph:
            return self.attention(latents)
        cropped = attention_crop(self.attention.head_outputs(latents), self.params.egm.keep)
        propagated = torch.zeros_like(cropped)
        for cls in torch.unique(labels).tolist():
            members = labels == cls
            propagated[members] = propagate(self.graphs.adjacency(cls), cropped[members])
        return latents + self.attention.from_heads(propagated, latents)

    def graph_objective(self, latents: torch.Tensor, cls: int) -> torch.Tensor:
        """The objective the class graph maximizes (its own loss; the graph also keeps its best)."""
        with torch.no_grad():
            similarity = similarity_graph(self.attention.head_outputs(latents))
        objective = self.graphs.objective(cls, similarity)
        self.graphs.remember(cls, objective.item())
        return objective
