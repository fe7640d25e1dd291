"""Datasets (registry, loaders) and seeded splits."""

from raysynth.data.datasets import DATASETS, ImageDataset, load_dataset
from raysynth.data.splits import Split, make_split

__all__ = ["DATASETS", "ImageDataset", "Split", "load_dataset", "make_split"]
