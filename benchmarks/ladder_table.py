"""A ladder's table from the MLflow store: every finished per-seed run of the named sweeps, pooled
by ablation step (a ladder may be run in several sweeps, e.g. seed 0 first and more seeds later;
a step and seed run twice counts its latest run), mean and std over seeds. Writes JSON and prints Markdown.

    uv run python benchmarks/ladder_table.py --tracking-uri sqlite:///mlflow.db --experiment ablation_expansive \
        --space search_spaces/ablation_expansive.yaml [--sweep ID ...] --out benchmarks/results/expansive_ladder.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import yaml

from raysynth.report import Row, format_mean_std
from raysynth.tracking import Tracker

METRICS = ("accuracy", "cas", "baseline_accuracy", "gain", "classic_accuracy", "gain_vs_classic", "fid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--sweep", action="append", default=[], help="sweep id to include (repeatable); default: all")
    parser.add_argument("--space", help="the ladder's YAML: rows in its step order")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    tracker = Tracker(args.tracking_uri, retry_seconds=10)
    experiment = tracker.client.get_experiment_by_name(args.experiment)
    rows: dict[str, Row] = {}
    seeds: dict[str, list[int]] = defaultdict(list)
    latest: dict[tuple[str, str], object] = {}  # a (step, seed) run again in a later sweep counts once
    for run in tracker.runs(experiment.experiment_id, "seed", "attributes.status = 'FINISHED'"):
        if args.sweep and run.data.tags.get("sweep_id") not in args.sweep:
            continue
        key = (run.data.tags.get("ablation_step", "-"), run.data.tags["seed"])
        if key not in latest or run.info.start_time > latest[key].info.start_time:
            latest[key] = run
    for (step, _), run in sorted(latest.items(), key=lambda item: item[1].info.start_time):
        row = rows.setdefault(step, Row(label=step, status="FINISHED"))
        seeds[step].append(int(run.data.tags["seed"]))
        for metric in METRICS:
            if metric in run.data.metrics:
                row.values.setdefault(metric, []).append(run.data.metrics[metric])
    order = list(rows)
    if args.space:
        steps = [step["name"] for step in yaml.safe_load(Path(args.space).read_text()).get("ablation", [])]
        order = [s for s in steps if s in rows] + [s for s in rows if s not in steps]
    table = {step: {"seeds": sorted(seeds[step]),
                    **{m: {"mean": rows[step].mean(m), "std": rows[step].std(m), "n": len(rows[step].values[m])}
                       for m in METRICS if rows[step].values.get(m)}} for step in order}
    Path(args.out).write_text(json.dumps({"experiment": args.experiment, "sweeps": args.sweep, "steps": table}, indent=2))
    print("| step | seeds | " + " | ".join(METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for step in order:
        row = rows[step]
        cells = [("" if not row.values.get(m) else f"{row.mean(m):.3g} ± {row.std(m):.2g}" if m == "fid"
                  else format_mean_std(row.mean(m), row.std(m))) for m in METRICS]
        print(f"| {step} | {','.join(map(str, sorted(seeds[step])))} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
