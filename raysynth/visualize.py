"""Pictures a person looks at: the grid of synthetic samples per class."""

from __future__ import annotations

from pathlib import Path

import torch

from raysynth.data import Split
from raysynth.methods import SyntheticSet


def save_sample_grid(synthetic: SyntheticSet, split: Split, path: Path, per_class: int = 10) -> Path:
    """A PNG with one row per class and up to ``per_class`` synthetic samples in it (blank where fewer)."""
    dataset = split.dataset
    rows = []
    blank = torch.zeros(per_class, dataset.channels, dataset.image_size, dataset.image_size)
    for c in range(split.num_classes):
        members = synthetic.images[synthetic.labels.cpu() == c][:per_class].detach().float().cpu()
        row = blank.clone()
        if len(members):
            row[: len(members)] = dataset.denormalize(members)
        rows.append(row)
    from torchvision.utils import save_image  # imported on use: torchvision takes seconds to import

    path.parent.mkdir(parents=True, exist_ok=True)
    scale = max(1, 32 // dataset.image_size)  # 8 px digits are upscaled so the grid is legible
    grid = torch.cat(rows)
    if scale > 1:
        grid = torch.nn.functional.interpolate(grid, scale_factor=scale, mode="nearest")
    save_image(grid, path, nrow=per_class, padding=2, pad_value=1.0)
    return path
