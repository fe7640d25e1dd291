"""Method `learned_augmentation`: spatial transformations learned between same-class images.

After Hauberg et al., "Dreaming more data" (the poster in seed 003): for every ordered pair (m, n)
of same-class images fit theta_mn so that x_m warped by T(theta_mn) matches x_n (L2, Adam) -- all
pairs of all classes as one batched optimization; map each fit to the tangent space (log map), fit a
per-class Gaussian there (p(T | y)), and make new images by warping real images of the class with
transformations sampled from it (exp map). docs/methods.md has every reading.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from raysynth.methods.base import (FitContext, Intent, Method, Params, Report, SyntheticSet, register_method,
                                    report_due)
from raysynth.methods.classic_augmentation import classic_reference

if TYPE_CHECKING:  # annotations only: the module loads without torch (raysynth validate stays fast)
    import numpy as np
    import torch


class FitParams(Params):
    steps: int = Field(200, ge=1, le=1_000_000, description="Adam steps of the batched pair fit")
    lr: float = Field(0.01, gt=0, le=10, description="Adam learning rate of the pair fit")
    max_pairs: int = Field(2000, ge=1, le=10_000_000, description="ordered pairs per class at most (a seeded sample beyond)")


class StatsParams(Params):
    center: Literal["zero", "mean"] = Field("zero", description="Gaussian mean in the tangent space: 0 (identity) or the sample mean")
    ridge: float = Field(1e-4, ge=0, le=1e6, description="added to the covariance diagonal, relative to its mean variance")
    scale: float = Field(1.0, gt=0, le=1e6, description="multiplies the sampled tangent vectors (1: the fitted spread)")


class LearnedAugmentationParams(Params):
    transform: Literal["affine", "diffeomorphic"] = Field("affine", description="transformation family")
    expansion_ratio: int = Field(10, ge=2, le=1000, description="size of real + generated set over the few-shot set's size")
    grid: int = Field(4, ge=2, le=32, description="velocity lattice side of the diffeomorphic family")
    squarings: int = Field(6, ge=1, le=12, description="scaling-and-squaring steps integrating the velocity")
    fit: FitParams = FitParams()
    stats: StatsParams = StatsParams()


def ordered_pairs(members: torch.Tensor, max_pairs: int, generator: torch.Generator) -> torch.Tensor:
    """``P x 2`` ordered pairs (m, n), m != n, of ``members``; a seeded sample of ``max_pairs`` when more."""
    import torch

    count = len(members)
    first, second = torch.meshgrid(torch.arange(count), torch.arange(count), indexing="ij")
    mask = first != second
    pairs = torch.stack([members[first[mask]], members[second[mask]]], dim=1)
    if len(pairs) > max_pairs:
        pairs = pairs[torch.randperm(len(pairs), generator=generator)[:max_pairs]]
    return pairs


class TransformFamily:
    """The three operations a family needs: warp with parameters, log map, exp map."""

    def __init__(self, params: LearnedAugmentationParams, image_size: int):
        self.params, self.image_size = params, image_size

    def initial(self, count: int, device) -> torch.Tensor:
        import torch

        from raysynth.nets.spatial import affine_identity

        if self.params.transform == "affine":
            return affine_identity(count, device)
        return torch.zeros(count, 2, self.params.grid, self.params.grid, device=device)

    def warp(self, images: torch.Tensor, parameters: torch.Tensor) -> torch.Tensor:
        from raysynth.nets.spatial import affine_warp, displacement_warp, integrate_velocity

        if self.params.transform == "affine":
            return affine_warp(images, parameters)
        return displacement_warp(images, integrate_velocity(parameters, self.image_size, self.params.squarings))

    def log(self, parameters: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Tangent vectors of the fits that have one, and the mask of those."""
        import numpy as np

        from raysynth.nets.spatial import affine_log

        if self.params.transform == "affine":
            return affine_log(parameters)
        vectors = parameters.detach().double().cpu().flatten(1).numpy()  # the velocity field is the tangent vector
        return vectors, np.ones(len(vectors), dtype=bool)

    def exp(self, vectors: np.ndarray) -> torch.Tensor:
        import torch

        from raysynth.nets.spatial import affine_exp

        if self.params.transform == "affine":
            return affine_exp(vectors)
        return torch.from_numpy(vectors).float().view(-1, 2, self.params.grid, self.params.grid)


def fit_pairs(family: TransformFamily, sources: torch.Tensor, targets: torch.Tensor, fit: FitParams,
              report: Report | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fits all pairs at once: one parameter tensor, one Adam, loss summed over pairs (so each pair's
    gradient is its own). Returns (parameters, final per-pair mean squared error)."""
    import torch

    parameters = family.initial(len(sources), sources.device).requires_grad_()
    optimizer = torch.optim.Adam([parameters], lr=fit.lr)
    for step in range(1, fit.steps + 1):
        errors = (family.warp(sources, parameters) - targets).pow(2).flatten(1).mean(1)
        optimizer.zero_grad(set_to_none=True)
        errors.sum().backward()
        optimizer.step()
        if report is not None and report_due(step, fit.steps, 20):
            report(step, fit_mse=errors.mean().item())
    with torch.no_grad():
        errors = (family.warp(sources, parameters) - targets).pow(2).flatten(1).mean(1)
    return parameters.detach(), errors


def sample_tangents(vectors: np.ndarray, stats: StatsParams, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` draws from N(0 or mean, Sigma_y) fitted to one class's tangent vectors, their spread
    around the centre scaled by ``stats.scale``."""
    from raysynth.nets.gaussian import Gaussian

    gaussian = Gaussian.fit(vectors, center=stats.center, ridge=stats.ridge)
    return gaussian.mean + stats.scale * (gaussian.sample(count, rng) - gaussian.mean)


@register_method("learned_augmentation")
class LearnedAugmentation(Method):
    Params = LearnedAugmentationParams
    intent = Intent.EXPANSION  # accuracy: the few-shot set plus the generated images
    epoch_counts = "nothing: the pair fits run params.fit.steps steps"

    def references(self, split, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return classic_reference(split, self.params.expansion_ratio, seed)

    def fit(self, split, context: FitContext, report: Report) -> SyntheticSet:
        import numpy as np
        import torch

        params, device = self.params, context.device
        dataset = split.dataset
        images, labels = split.fewshot
        unit = dataset.denormalize(images).to(device)  # warped in [0, 1]: the frame's outside is background
        family = TransformFamily(params, split.image_size)
        generator = context.torch_rng("pairs")
        rng = context.numpy_rng("tangents")

        pairs = torch.cat([ordered_pairs(torch.nonzero(labels == c).flatten(), params.fit.max_pairs, generator)
                           for c in range(split.num_classes)])
        fitted, errors = fit_pairs(family, unit[pairs[:, 0]], unit[pairs[:, 1]], params.fit, report)
        vectors, kept = family.log(fitted)
        pair_labels = labels[pairs[:, 0]].numpy()[kept]

        new_images, new_labels = [], []
        for c in range(split.num_classes):
            members = torch.nonzero(labels == c).flatten()
            class_vectors = vectors[pair_labels == c]
            count = (params.expansion_ratio - 1) * len(members)
            if len(class_vectors) < 2:  # one image in the class, or no fit had a logarithm: identity only
                class_vectors = np.zeros((2, vectors.shape[1] if vectors.size else 6))
            transforms = family.exp(sample_tangents(class_vectors, params.stats, count, rng)).to(device)
            sources = members.repeat(params.expansion_ratio - 1)  # every real image warped equally often
            with torch.no_grad():
                new_images.append(family.warp(unit[sources], transforms).clamp(0, 1).cpu())
            new_labels.append(torch.full((count,), c))
        info = {"fit_mse": float(errors.mean()), "fit_pairs": float(len(pairs)),
                "fit_without_logarithm": float((~kept).sum())}
        return SyntheticSet(dataset.normalize(torch.cat(new_images)), torch.cat(new_labels), info)
