"""Probe: does scaling D's features to the cut-off's scale let EIEG's generator learn? Fashion-MNIST
class 0 (its first 10 training images), Table 3's settings (feature dim 16, cut-off 0.1, lr 1e-4 /
1e-5, 3 D steps, batch 64), 200 G steps, D's outputs multiplied by 1 (the literal reading) or 0.01.
Reports the mean distance from 100 generated images to their nearest real image, before and after
training, and the median real-to-generated feature distance in cut-offs. Writes JSON.

    uv run python benchmarks/eieg_feature_scale.py --out benchmarks/results/eieg_feature_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

from raysynth.data.datasets import load_dataset
from raysynth.nets.gan import DCGANDiscriminator, DCGANGenerator, GanSettings, train_gan
from raysynth.spec import default_cache_dir


class ScaledFeatures(nn.Module):
    """D's outputs times a constant: moves the feature distances relative to the kernel's cut-off."""

    def __init__(self, network: nn.Module, scale: float):
        super().__init__()
        self.network, self.scale = network, scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images) * self.scale


def nearest_real_distance(generated: torch.Tensor, real: torch.Tensor) -> float:
    return float(torch.cdist(generated.flatten(1), real.flatten(1)).min(1).values.mean())


def probe(real: torch.Tensor, scale: float, steps: int, seed: int) -> dict:
    torch.manual_seed(seed)
    draws = torch.Generator().manual_seed(seed)
    g = DCGANGenerator(1, 28, 100, 32)
    d = ScaledFeatures(DCGANDiscriminator(1, 28, 16, 32), scale)
    settings = GanSettings(loss="eie", lr_generator=1e-4, lr_discriminator=1e-5, batch_size=64)
    with torch.no_grad():
        before = g(torch.randn(100, 100, generator=draws))
    start = time.perf_counter()
    train_gan(g, d, lambda n: real[torch.randint(len(real), (n,), generator=draws)],
              lambda n: torch.randn(n, 100, generator=draws), settings, steps)
    with torch.no_grad():
        after = g(torch.randn(100, 100, generator=draws))
        spread = torch.cdist(d(real), d(after)) / settings.cutoff
    return {"scale": scale, "nearest_real_before": nearest_real_distance(before, real),
            "nearest_real_after": nearest_real_distance(after, real),
            "feature_distance_in_cutoffs_median": float(spread.median()), "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/eieg_feature_scale.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = load_dataset("fashion-mnist", data_root=None, cache_dir=default_cache_dir(os.environ), allow_download=False)
    real = data.train_images[data.train_labels == 0][:10].float()
    real = real / real.max() * 2 - 1  # the generator's tanh range
    runs = []
    for scale in (1.0, 0.01):
        runs.append(probe(real, scale, args.steps, args.seed))
        print(json.dumps(runs[-1]), flush=True)
    Path(args.out).write_text(json.dumps({"steps": args.steps, "seed": args.seed, "runs": runs,
                                          "command": "uv run python benchmarks/eieg_feature_scale.py"}, indent=2))


if __name__ == "__main__":
    main()
