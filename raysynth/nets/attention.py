"""Self-attention on a latent map ``N x C x h x w`` (Expansive Synthesis section 3.2, appendix E).

Variants (``attention.variant``), each keeping the latent's shape:

- ``none``: the identity.
- ``rowwise`` (E.1): the map is cut into P x P patches; each channel's patches are stacked into a
  sequence of (h/P)(w/P) tokens of size P^2 and attention runs along that sequence, per channel
  (``rowwise_tokens``: or along each row of patches with tokens over all channels, or across the
  channels at each patch position).
- ``spatial`` (E.2): each patch, flattened over all channels (C P^2 values), is one token at its
  spatial position; attention runs across all positions, without positional encoding.
- ``spatial_skip``: spatial plus a residual connection.
- ``mhsa``: multi-head spatial attention (``heads``), with the residual connection.
- ``mhsa_egm``: ``mhsa`` whose per-head outputs also feed the expander graph mapping.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from raysynth.nets.settings import MULTI_HEAD, VARIANTS, AttentionParams, RowwiseTokens, Variant  # noqa: F401 (re-exported)


def patchify(latents: torch.Tensor, patch: int) -> torch.Tensor:
    """``N x C x h x w`` -> ``N x T x (C P^2)`` tokens, T = (h/P)(w/P), row-major patch order."""
    return F.unfold(latents, patch, stride=patch).transpose(1, 2)


def unpatchify(tokens: torch.Tensor, patch: int, size: int) -> torch.Tensor:
    """The inverse of :func:`patchify` for a square ``size`` x ``size`` map."""
    return F.fold(tokens.transpose(1, 2), (size, size), patch, stride=patch)


class MultiHeadAttention(nn.Module):
    """softmax(Q K^T / sqrt(d_k)) V per head (paper Eq. 12, 15), with the per-head outputs exposed:
    the expander graph mapping recombines them before the output projection."""

    def __init__(self, embed_dim: int, heads: int = 1, self_bias: float = 0.0):
        super().__init__()
        if embed_dim % heads:
            raise ValueError(f"attention width {embed_dim} is not divisible by {heads} heads")
        self.heads, self.head_dim = heads, embed_dim // heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.out = nn.Linear(embed_dim, embed_dim)
        # added to every token's score for itself: permutation-equivariant, unlike a positional encoding
        self.self_bias = nn.Parameter(torch.tensor(float(self_bias))) if self_bias > 0 else None

    def head_outputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """``N x T x E`` -> per-head outputs ``N x heads x T x head_dim``."""
        n, t, _ = tokens.shape
        q, k, v = self.qkv(tokens).view(n, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        mask = None if self.self_bias is None else self.self_bias * torch.eye(t, device=tokens.device, dtype=q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def project(self, head_outputs: torch.Tensor) -> torch.Tensor:
        """Sum over heads j of W_o[j] head_j: ``N x heads x T x head_dim`` -> ``N x T x E``."""
        n, _, t, _ = head_outputs.shape
        return self.out(head_outputs.transpose(1, 2).reshape(n, t, -1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.project(self.head_outputs(tokens))


class LatentAttention(nn.Module):
    """One of the :data:`VARIANTS` on ``channels x size x size`` latent maps with ``patch`` x ``patch`` patches."""

    def __init__(self, variant: Variant, channels: int, size: int, patch: int = 1, heads: int = 1, self_bias: float = 0.0,
                 rowwise_tokens: RowwiseTokens = "channel_patches"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown attention variant `{variant}`: use one of {', '.join(VARIANTS)}")
        if size % patch:
            raise ValueError(f"patch {patch} does not divide the {size} x {size} latent map; use a divisor of {size}")
        self.variant, self.patch, self.size, self.rowwise_tokens = variant, patch, size, rowwise_tokens
        self.skip = variant in ("spatial_skip", *MULTI_HEAD)
        self.heads = heads if variant in MULTI_HEAD else 1
        if variant == "none":
            self.attention = None
        elif variant == "rowwise":
            width = channels * patch * patch if rowwise_tokens == "patch_rows" else patch * patch
            self.attention = MultiHeadAttention(width, 1, self_bias)
        else:
            self.attention = MultiHeadAttention(channels * patch * patch, self.heads, self_bias)

    @classmethod
    def from_params(cls, attention: AttentionParams, channels: int, size: int) -> "LatentAttention":
        return cls(attention.variant, channels, size, attention.patch, attention.heads, attention.self_bias,
                   attention.rowwise_tokens)

    def tokens(self, latents: torch.Tensor) -> torch.Tensor:
        """The sequences attention runs along: ``sequences x length x width``."""
        n, c = latents.shape[:2]
        if self.variant != "rowwise":
            return patchify(latents, self.patch)
        if self.rowwise_tokens == "channel_patches":  # one sequence of P^2-tokens per channel
            return patchify(latents.reshape(n * c, 1, self.size, self.size), self.patch)
        patches = patchify(latents, self.patch)  # N x T x (C P^2), T = rows x rows, row-major
        if self.rowwise_tokens == "patch_rows":
            return patches.reshape(n * (self.size // self.patch), self.size // self.patch, -1)
        return patches.reshape(-1, c, self.patch * self.patch)  # per patch position, its C channels

    def untokens(self, tokens: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`tokens` for maps shaped ``like``."""
        if self.variant != "rowwise":
            return unpatchify(tokens, self.patch, self.size)
        if self.rowwise_tokens == "channel_patches":
            return unpatchify(tokens, self.patch, self.size).reshape(like.shape)
        n, c = like.shape[:2]
        return unpatchify(tokens.reshape(n, -1, c * self.patch * self.patch), self.patch, self.size)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        if self.attention is None:
            return latents
        attended = self.untokens(self.attention(self.tokens(latents)), latents)
        return latents + attended if self.skip else attended

    def head_outputs(self, latents: torch.Tensor) -> torch.Tensor:
        """Per-head feature maps f_ij (Eq. 2): ``N x heads x T x head_dim`` (spatial variants only)."""
        return self.attention.head_outputs(self.tokens(latents))

    def from_heads(self, head_outputs: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The latent-map contribution sum_j W_o[j] head_j of (possibly recombined) head outputs."""
        return self.untokens(self.attention.project(head_outputs), like)
