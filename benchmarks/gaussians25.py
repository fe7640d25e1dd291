"""The 25-Gaussians mode test of the EIEG paper (section 4.1, Fig. 4 and 8): EIEG, EIEG without the
generated samples' self-interaction, and the non-saturating GAN, on the appendix-D MLPs, same number
of generator steps, over seeds. Modes covered (>= 1 % of samples within 3 std) and the high-quality
fraction (samples within 3 std of a mode), mean and std over seeds.

    uv run python benchmarks/gaussians25.py --steps 2000 --seeds 0 1 2 --out benchmarks/results/gaussians25.json
    uv run python benchmarks/gaussians25.py --models eieg --lr-discriminator 1e-3 --steps 5000 --seeds 0 \
        --out benchmarks/results/gaussians25_eieg_lrd1e-3.json      # one learning-rate probe
    uv run python benchmarks/gaussians25.py --models eieg --feature-bound tanh --steps 2000 --seeds 0 1 2 \
        --out benchmarks/results/gaussians25_eieg_tanh.json         # D's features in a finite domain
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from raysynth.evaluation.toy import TOY_DCGAN, TOY_EIEG, mode_coverage, train_toy_gan

# name -> (settings, with a feature network D); eie_data_space is G alone under the energy on the
# points themselves (the paper's section 2.3)
MODELS = {"eieg": (TOY_EIEG, True), "eieg_no_self_interaction": (replace(TOY_EIEG, generated_self=False), True),
          "gan": (TOY_DCGAN, True), "eie_data_space": (TOY_EIEG, False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="generator steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lr-generator", type=float, default=TOY_EIEG.lr_generator)
    parser.add_argument("--lr-discriminator", type=float, default=TOY_EIEG.lr_discriminator,
                        help="of D (the paper gives no toy learning rates)")
    parser.add_argument("--feature-bound", choices=["none", "tanh"], default=TOY_EIEG.feature_bound,
                        help="EIEG's D outputs: unbounded, or in [-1, 1]^2")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--out", default="benchmarks/results/gaussians25.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rates = {"lr_generator": args.lr_generator, "lr_discriminator": args.lr_discriminator}
    models = {}
    for name in args.models:  # in the order asked for
        settings, with_d = MODELS[name]
        # the bound is on D's outputs: data-space points stay where they are
        models[name] = (replace(settings, **rates, feature_bound=args.feature_bound if with_d else "none"), with_d)
    result = {"steps": args.steps, "seeds": args.seeds, "command": "uv run python benchmarks/gaussians25.py "
              f"--steps {args.steps} --seeds {' '.join(map(str, args.seeds))} --lr-generator {args.lr_generator} "
              f"--lr-discriminator {args.lr_discriminator} --feature-bound {args.feature_bound} --models {' '.join(args.models)}", "models": {}}
    for name, (settings, with_d) in models.items():
        runs = []
        for seed in args.seeds:
            start = time.perf_counter()
            samples, feature_spread = train_toy_gan(settings, args.steps, seed, feature_network=with_d)
            modes, quality = mode_coverage(samples)
            runs.append({"seed": seed, "modes": modes, "high_quality": quality, "seconds": time.perf_counter() - start,
                         "real_feature_median_distance": feature_spread})
            print(name, runs[-1], flush=True)
        result["models"][name] = {"settings": asdict(settings), "runs": runs,
                                  "modes_mean": float(np.mean([r["modes"] for r in runs])),
                                  "modes_std": float(np.std([r["modes"] for r in runs])),
                                  "high_quality_mean": float(np.mean([r["high_quality"] for r in runs])),
                                  "high_quality_std": float(np.std([r["high_quality"] for r in runs]))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: {m: v[m] for m in ("modes_mean", "modes_std", "high_quality_mean")} for k, v in result["models"].items()}, indent=2))


if __name__ == "__main__":
    main()
