"""Seeded splits: the few-shot set, the remaining training images, the real test set."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from raysynth.data.datasets import ImageDataset
from raysynth.errors import SpecError


def per_class_indices(labels: torch.Tensor, per_class: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """``per_class`` indices of each class, drawn without replacement; sorted by class."""
    chosen = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()
        if len(members) < per_class:
            raise SpecError(
                "dataset.images_per_class",
                f"class {c} has only {len(members)} training images, but {per_class} per class were asked for",
            )
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen)


@dataclass(eq=False)
class Split:
    """One seeded split of a dataset. Tensors are normalized floats, computed on first use."""

    dataset: ImageDataset
    seed: int
    images_per_class: int
    fewshot_index: torch.Tensor = field(repr=False)
    remainder_index: torch.Tensor = field(repr=False)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def channels(self) -> int:
        return self.dataset.channels

    @property
    def image_size(self) -> int:
        return self.dataset.image_size

    @cached_property
    def fewshot(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The labelled few-shot set X: ``images_per_class`` images of every class."""
        return self.dataset.normalize(self.dataset.train_images[self.fewshot_index]), self.dataset.train_labels[self.fewshot_index]

    @cached_property
    def remainder(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training images outside the few-shot set; labels are returned for methods that
        declare they use them (e.g. condensation), unlabelled pretraining must ignore them."""
        return self.dataset.normalize(self.dataset.train_images[self.remainder_index]), self.dataset.train_labels[self.remainder_index]

    @cached_property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The full real test set."""
        return self.dataset.normalize(self.dataset.test_images), self.dataset.test_labels

    def random_subset(self, per_class: int, seed_offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """A seeded random real subset of the whole training set, ``per_class`` images per class."""
        generator = torch.Generator().manual_seed(self.seed * 1000 + 17 + seed_offset)
        index = per_class_indices(self.dataset.train_labels, per_class, self.num_classes, generator)
        return self.dataset.normalize(self.dataset.train_images[index]), self.dataset.train_labels[index]


def make_split(dataset: ImageDataset, images_per_class: int, seed: int) -> Split:
    """The few-shot set (``images_per_class`` per class) and the remainder, both seeded by ``seed``."""
    if images_per_class < 1:
        raise SpecError("dataset.images_per_class", f"must be at least 1, but got {images_per_class}")
    generator = torch.Generator().manual_seed(seed)
    fewshot = per_class_indices(dataset.train_labels, images_per_class, dataset.num_classes, generator)
    mask = torch.ones(len(dataset.train_labels), dtype=torch.bool)
    mask[fewshot] = False
    return Split(dataset, seed, images_per_class, fewshot, torch.nonzero(mask).flatten())
