"""Probe: how does the scale of D's features decide whether EIEG's generator learns? Fashion-MNIST
class 0 (its first 10 training images), Table 3's settings (feature dim 16, cut-off 0.1, lr 1e-4 /
1e-5, 3 D steps, batch 64), D's outputs multiplied by each ``--scales`` value (`eie.feature_scale`;
1 is the literal reading). Every 100 G steps: the mean distance from 100 generated images (fixed
noise) to their nearest real image (pixels in [-1, 1]; the real images' own nearest-neighbour
distance is the reference) and the median real-to-generated feature distance in cut-offs, after
scaling. Writes JSON.

    uv run python benchmarks/eieg_feature_scale.py --steps 1000 --out benchmarks/results/eieg_feature_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from raysynth.data.datasets import load_dataset
from raysynth.nets.gan import DCGANDiscriminator, DCGANGenerator, GanSettings, eie_features, train_gan
from raysynth.spec import default_cache_dir


def nearest_real_distance(generated: torch.Tensor, real: torch.Tensor) -> float:
    return float(torch.cdist(generated.flatten(1), real.flatten(1)).min(1).values.mean())


def probe(real: torch.Tensor, scale: float, steps: int, seed: int) -> dict:
    torch.manual_seed(seed)
    draws = torch.Generator().manual_seed(seed)
    fixed_noise = torch.randn(100, 100, generator=torch.Generator().manual_seed(seed + 1))
    g = DCGANGenerator(1, 28, 100, 32)
    d = DCGANDiscriminator(1, 28, 16, 32)
    settings = GanSettings(loss="eie", lr_generator=1e-4, lr_discriminator=1e-5, batch_size=64, feature_scale=scale)
    trajectory = []

    def measure(step: int) -> None:
        with torch.no_grad():
            generated = g(fixed_noise)
            spread = torch.cdist(eie_features(settings, d(real)), eie_features(settings, d(generated))) / settings.cutoff
        trajectory.append({"step": step, "nearest_real": nearest_real_distance(generated, real),
                           "feature_distance_in_cutoffs_median": float(spread.median())})

    measure(0)
    start = time.perf_counter()
    train_gan(g, d, lambda n: real[torch.randint(len(real), (n,), generator=draws)],
              lambda n: torch.randn(n, 100, generator=draws), settings, steps,
              on_step=lambda step, g_loss, d_loss: measure(step) if step % 100 == 0 else None)
    return {"scale": scale, "trajectory": trajectory, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.01, 0.001])
    parser.add_argument("--out", default="benchmarks/results/eieg_feature_scale.json")
    args = parser.parse_args()
    data = load_dataset("fashion-mnist", data_root=None, cache_dir=default_cache_dir(os.environ), allow_download=False)
    real = data.train_images[data.train_labels == 0][:10].float()
    real = real / 127.5 - 1  # uint8 -> the generator's tanh range
    own = torch.cdist(real.flatten(1), real.flatten(1)).fill_diagonal_(float("inf")).min(1).values.mean()
    runs = []
    for scale in args.scales:
        runs.append(probe(real, scale, args.steps, args.seed))
        print(json.dumps({"scale": scale, "last": runs[-1]["trajectory"][-1]}), flush=True)
    Path(args.out).write_text(json.dumps({
        "steps": args.steps, "seed": args.seed, "real_nearest_neighbour": float(own), "runs": runs,
        "command": f"uv run python benchmarks/eieg_feature_scale.py --steps {args.steps} --seed {args.seed} "
                   f"--scales {' '.join(map(str, args.scales))}"}, indent=2))


if __name__ == "__main__":
    main()
