"""Datasets (registry, loaders) and seeded splits. The splits (torch) load on first use, so the
registry's metadata answers without it."""

from raysynth.data.datasets import DATASETS, ImageDataset, load_dataset

__all__ = ["DATASETS", "ImageDataset", "Split", "load_dataset", "make_split"]


def __getattr__(name: str):
    if name in ("Split", "make_split"):
        from raysynth.data import splits

        return getattr(splits, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
