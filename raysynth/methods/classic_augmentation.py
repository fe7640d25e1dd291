"""Baseline `classic_augmentation`: the few-shot set grown to ``expansion_ratio`` times its size with
a torchvision.transforms.v2 policy suited to the dataset (no flips for digits)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from raysynth.methods.base import FitContext, Intent, Method, Params, Report, SyntheticSet, register_method

if TYPE_CHECKING:  # annotations only: the module loads without torch (raysynth validate stays fast)
    import torch


class ClassicAugmentationParams(Params):
    expansion_ratio: int = Field(10, ge=2, le=1000, description="size of real + augmented set over the few-shot set's size")


def augmentation_policy(dataset_name: str, image_size: int):
    """The classic policy: small affine jitter; flips where they keep the label; crops and colour for CIFAR."""
    import torchvision.transforms.v2 as T  # imported on use: torchvision takes seconds to import

    # bilinear: with the default nearest-neighbour sampling, small affines of 8 px digits often
    # return the input unchanged, so "augmented" copies would be duplicates
    bilinear = T.InterpolationMode.BILINEAR
    if dataset_name in ("digits", "mnist"):
        return T.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=5, interpolation=bilinear)
    if dataset_name == "fashion-mnist":
        return T.Compose([T.RandomHorizontalFlip(),
                          T.RandomAffine(degrees=8, translate=(0.08, 0.08), scale=(0.9, 1.1), interpolation=bilinear)])
    return T.Compose([T.RandomCrop(image_size, padding=image_size // 8), T.RandomHorizontalFlip(),
                      T.ColorJitter(0.2, 0.2, 0.2)])


def classic_expand(split, expansion_ratio: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(expansion_ratio - 1) x n`` augmented copies of the few-shot set (the real images not included)."""
    import torch

    images, labels = split.fewshot
    dataset = split.dataset
    policy = augmentation_policy(dataset.name, dataset.image_size)
    unit = dataset.denormalize(images)
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # v2 transforms draw from torch's global RNG; fork keeps the caller's state
        for _ in range(expansion_ratio - 1):
            out.append(torch.stack([policy(image) for image in unit]))
    return dataset.normalize(torch.cat(out).clamp(0, 1)), labels.repeat(expansion_ratio - 1)


def classic_reference(split, expansion_ratio: int, seed: int,
                      alone: bool = False) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The `classic` reference set of an expansion method: the few-shot set plus its classic
    augmentation, ``expansion_ratio`` x its size (what the paper compares at equal size); with ``alone``
    also `classic_alone`: ``expansion_ratio`` augmented copies of each image without the originals."""
    import torch

    if expansion_ratio < 2:
        return {}
    # with `alone`, one copy more of each image: as many as X'; the first copies are the `classic` ones (same seed)
    images, labels = classic_expand(split, expansion_ratio + 1 if alone else expansion_ratio, seed)
    fewshot_images, fewshot_labels = split.fewshot
    copies = (expansion_ratio - 1) * len(fewshot_labels)
    references = {"classic": (torch.cat([fewshot_images, images[:copies]]), torch.cat([fewshot_labels, labels[:copies]]))}
    if alone:
        references["classic_alone"] = (images, labels)
    return references


@register_method("classic_augmentation")
class ClassicAugmentation(Method):
    Params = ClassicAugmentationParams
    intent = Intent.EXPANSION

    def fit(self, split, context: FitContext, report: Report) -> SyntheticSet:
        images, labels = classic_expand(split, self.params.expansion_ratio, context.seed)
        return SyntheticSet(images, labels)
