"""Seeded splits: the few-shot set, the validation set, the remaining training images, the real test set.

The validation set is labelled training data that no method ever sees: it is what selection (Optuna,
ASHA, the best trial of a step) measures on, so that the test set is scored once and only reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from raysynth.data.datasets import ImageDataset
from raysynth.errors import SpecError


def per_class_indices(labels: torch.Tensor, per_class: int, num_classes: int, generator: torch.Generator,
                      key: str = "dataset.images_per_class") -> torch.Tensor:
    """``per_class`` indices of each class, drawn without replacement; sorted by class."""
    chosen = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()
        if len(members) < per_class:
            raise SpecError(key, f"class {c} has only {len(members)} training images available, but {per_class} per class were asked for")
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
    validation_index: torch.Tensor = field(repr=False, default_factory=lambda: torch.zeros(0, dtype=torch.int64))

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def channels(self) -> int:
        return self.dataset.channels

    @property
    def image_size(self) -> int:
        return self.dataset.image_size

    def _take(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.normalize(self.dataset.train_images[index]), self.dataset.train_labels[index]

    @cached_property
    def fewshot(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The labelled few-shot set X: ``images_per_class`` images of every class."""
        return self._take(self.fewshot_index)

    @cached_property
    def remainder(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training images outside the few-shot and validation sets; labels are returned for methods
        that declare they use them (e.g. condensation), unlabelled pretraining must ignore them."""
        return self._take(self.remainder_index)

    @cached_property
    def validation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Class-balanced labelled training images that no method sees: selection measures on these."""
        return self._take(self.validation_index)

    @cached_property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The full real test set."""
        return self.dataset.normalize(self.dataset.test_images), self.dataset.test_labels

    @property
    def available_index(self) -> torch.Tensor:
        """Every training image a method may use (few-shot set and remainder), sorted."""
        return torch.sort(torch.cat([self.fewshot_index, self.remainder_index])).values

    @cached_property
    def available(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The images (normalized) and labels of :attr:`available_index`: what a method that uses the
        whole labelled training set may read (never a validation image)."""
        return self._take(self.available_index)

    def random_subset(self, per_class: int, seed_offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """A seeded random real subset, ``per_class`` images per class, of the images methods may use
        (never a validation image)."""
        generator = torch.Generator().manual_seed(self.seed * 1000 + 17 + seed_offset)
        available = self.available_index
        chosen = per_class_indices(self.dataset.train_labels[available], per_class, self.num_classes, generator)
        return self._take(available[chosen])


def make_split(dataset: ImageDataset, images_per_class: int, seed: int, validation_per_class: int = 0) -> Split:
    """The few-shot set, then the validation set from the other training images, then the remainder;
    all seeded by ``seed``. The few-shot set of a seed does not depend on ``validation_per_class``."""
    if images_per_class < 1:
        raise SpecError("dataset.images_per_class", f"must be at least 1, but got {images_per_class}")
    generator = torch.Generator().manual_seed(seed)
    labels = dataset.train_labels
    fewshot = per_class_indices(labels, images_per_class, dataset.num_classes, generator)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[fewshot] = False
    validation = torch.zeros(0, dtype=torch.int64)
    if validation_per_class:
        # its own stream, so the few-shot set of a seed is the same with or without a validation set
        rest = torch.nonzero(mask).flatten()
        validation_generator = torch.Generator().manual_seed(seed * 7919 + 104729)
        validation = rest[per_class_indices(labels[rest], validation_per_class, dataset.num_classes,
                                            validation_generator, key="dataset.validation_per_class")]
        mask[validation] = False
    return Split(dataset, seed, images_per_class, fewshot, torch.nonzero(mask).flatten(), validation)
