"""A ladder's table from the MLflow store: every finished per-seed run of the named sweeps, pooled
by ablation step (a ladder may be run in several sweeps, e.g. seed 0 first and more seeds later),
mean and std over seeds. Writes JSON and prints Markdown.

    uv run python benchmarks/ladder_table.py --tracking-uri sqlite:///mlflow.db \
        --experiment ablation_expansive --sweep ID [--sweep ID2] --out benchmarks/results/expansive_ladder.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

METRICS = ("accuracy", "cas", "baseline_accuracy", "gain", "classic_accuracy", "gain_vs_classic", "fid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--sweep", action="append", default=[], help="sweep id to include (repeatable); default: all")
    parser.add_argument("--space", help="the ladder's YAML: rows in its step order")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    client = MlflowClient(args.tracking_uri)
    experiment = client.get_experiment_by_name(args.experiment)
    runs = client.search_runs([experiment.experiment_id], "tags.`raysynth.kind` = 'seed' and attributes.status = 'FINISHED'",
                              max_results=5000)
    by_step: dict[str, dict[int, dict]] = defaultdict(dict)
    for run in runs:
        if args.sweep and run.data.tags.get("sweep_id") not in args.sweep:
            continue
        by_step[run.data.tags.get("ablation_step", "-")][int(run.data.tags["seed"])] = run.data.metrics
    order = list(by_step)
    if args.space:
        import yaml

        steps = [step["name"] for step in yaml.safe_load(Path(args.space).read_text()).get("ablation", [])]
        order = [s for s in steps if s in by_step] + [s for s in by_step if s not in steps]
    table = {}
    for step in order:
        seeds = by_step[step]
        row = {"seeds": sorted(seeds)}
        for metric in METRICS:
            values = [m[metric] for m in seeds.values() if metric in m]
            if values:
                row[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}
        table[step] = row
    Path(args.out).write_text(json.dumps({"experiment": args.experiment, "sweeps": args.sweep, "steps": table}, indent=2))
    print("| step | seeds | " + " | ".join(METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for step, row in table.items():
        cells = [("" if m not in row else f"{row[m]['mean']:.3g} ± {row[m]['std']:.2g}" if m == "fid"
                  else f"{row[m]['mean']:.2f} ± {row[m]['std']:.2f}") for m in METRICS]
        print(f"| {step} | {','.join(map(str, row['seeds']))} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
