"""Per-trial overhead and efficiency of ``raysynth sweep`` against the same trials run back to back.

The workload is N identical `real` trials on digits (one seed each), sized by ``--epochs`` to take
about ``30 s`` each. Reference: the N trials in one process with ``run_trial`` (no Ray, no MLflow),
one after another, with the per-trial thread count. Sweep: the same N trials as an ablation ladder
through ``run_sweep`` (local Ray, SQLite MLflow, ``--slots`` concurrent trials of 1 CPU each).

    efficiency = sum of reference trial times / (sweep wall time x slots)
    overhead per trial = (sweep wall time x slots - sum of reference trial times) / N

    uv run python benchmarks/sweep_overhead.py --trials 6 --epochs 300 --out benchmarks/results/sweep_overhead.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from raysynth.runner import load_spec_dataset, run_trial
from raysynth.spec import build_spec, resolve_defaults


class _Quiet:
    def on_seed_start(self, seed):
        pass

    def on_progress(self, seed, step, metrics):
        pass

    def on_seed_end(self, seed, metrics, synthetic, split):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=300, help="classifier epochs per trial (sets the trial length)")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/sweep_overhead.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="raysynth-overhead-"))
    data = {
        "experiment": "overhead", "method": "real", "seeds": [0],
        "dataset": {"name": "digits", "images_per_class": 10},
        "evaluation": {"classifier": "convnet", "width": 64, "epochs": args.epochs, "num_eval": 1, "probe_every": 50},
        # identical trials; distinct step names; each trial trains its own classifiers (no shared cache hit)
        "ablation": [{"name": f"t{i}", "set": {"evaluation.lr": 0.01 + 1e-6 * i}} for i in range(args.trials)],
        "tune": {"max_concurrent": args.slots, "resources_per_trial": {"cpu": 1}},
        "tracking": {"uri": f"sqlite:///{work}/m.db"}, "cache_dir": str(work / "cache"),
    }
    spec = build_spec(resolve_defaults(data, {}, work))
    dataset = load_spec_dataset(spec)

    torch.set_num_threads(1)
    run_trial(spec.steps()[0][1], dataset, _Quiet())  # warm-up: the domain FID network, kernels
    scores = Path(spec.cache_dir) / "accuracy"  # content-keyed classifier scores: a trial run twice would hit them
    shutil.rmtree(scores, ignore_errors=True)
    reference = []
    for _, step in spec.steps():
        start = time.perf_counter()
        run_trial(step, dataset, _Quiet())
        reference.append(time.perf_counter() - start)
    shutil.rmtree(scores, ignore_errors=True)  # the sweep trains every classifier again; the FID network stays

    from raysynth.tuning.sweep import run_sweep

    timeline: list[tuple[float, str]] = []  # when each of the sweep's lines was printed: the breakdown
    start = time.perf_counter()
    outcome = run_sweep(spec, log=lambda message: timeline.append((round(time.perf_counter() - start, 2), message)))
    wall = time.perf_counter() - start
    in_trial = [r["metrics"].get("time_total_s", float("nan")) for r in outcome.results]
    total = sum(reference)
    result = {
        "benchmark": "sweep_overhead", "trials": args.trials, "slots": args.slots, "classifier_epochs": args.epochs,
        "reference_trial_seconds": reference, "reference_mean_trial_seconds": total / len(reference),
        "sweep_wall_seconds": wall, "sweep_in_trial_seconds": in_trial,
        "efficiency": total / (wall * args.slots),
        "overhead_seconds_per_trial": (wall * args.slots - total) / args.trials,
        "failed_trials": sum(1 for r in outcome.results if r["error"]),
        "breakdown": _breakdown(timeline, wall), "timeline": timeline,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def _breakdown(timeline: list[tuple[float, str]], wall: float) -> dict[str, float]:
    """Seconds to Ray being up, to the first trial start, the trials' span, and after the last trial."""
    def first(word: str) -> float:
        return next((t for t, message in timeline if word in message), float("nan"))

    ended = [t for t, message in timeline if " finished: " in message or " FAILED" in message]
    last = max(ended) if ended else float("nan")
    return {"ray_up": first("Ray:"), "first_trial_started": first(" started"), "last_trial_ended": last,
            "after_last_trial": wall - last}


if __name__ == "__main__":
    main()
