"""The issue-20 searches, summarized from their MLflow runs and persisted studies (`raysynth report`):
``benchmarks/results/search_<method>.json`` per method (the selected configuration, its validation
score, the confirmation's per-seed test accuracies, the baseline's and the defaults' on the same seeds,
the paired difference) and the Markdown table of docs/results.md's "What the search found".

    python benchmarks/search_summary.py [--tracking-uri sqlite:///PATH/mlflow.db] [method ...]

Run from the clone the searches ran in (benchmarks/search_queue.sh); the report's figures go to
``docs/search/<method>/``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import yaml

from raysynth.report import short_number, strict_json, write_report
from raysynth.stats import summarize, t_interval

ROOT = Path(__file__).resolve().parent.parent
METHODS = ["learned_augmentation", "expansive", "koopcon", "dm", "scola", "eieg"]


def accuracies(row: dict | None) -> dict[str, float]:
    return {seed: m["accuracy"] for seed, m in (row or {}).get("per_seed", {}).items() if "accuracy" in m}


def summarize_method(name: str, tracking_uri: str) -> dict:
    space = ROOT / "search_spaces" / "cpu" / f"{name}.yaml"
    out_dir = ROOT / "docs" / "search" / name
    out_dir.mkdir(parents=True, exist_ok=True)
    write_report(f"search_{name}", tracking_uri=tracking_uri, out_dir=out_dir, all_sweeps=True, log=print)
    report = json.loads((out_dir / "report.json").read_text())
    rows = {row["label"]: row for row in report["rows"]}
    search = report["searches"]["searched"]
    reference = report["reference"]
    tuned = rows.get("searched")
    spec = yaml.safe_load(space.read_text())
    return {
        "method": spec["method"], "space": str(space.relative_to(ROOT)),
        "command": f"raysynth sweep {space.relative_to(ROOT)}",
        "budget": {"dataset": spec["dataset"], "evaluation": spec["evaluation"], "budget": spec["budget"],
                   "trials": search["trials"]},
        "selected": {"params": (search["selected"] or {}).get("params"), "selection_metric": search["selection_metric"],
                     "validation_score": search["selected_value"], "search_seed": 0},
        "confirmation": {"test_accuracy_per_seed": accuracies(search["confirmation"])},
        "default": {"test_accuracy_per_seed": accuracies(rows.get("default"))},
        "baseline": {"step": reference, "test_accuracy_per_seed": accuracies(rows.get(reference))},
        "difference_vs_baseline": (tuned or {}).get("difference"),
        "default_difference_vs_baseline": rows.get("default", {}).get("difference"),
        "importances": search["importances"], "figures": sorted(p.name for p in out_dir.glob("*.png")),
    }


def cell(values: dict[str, float]) -> str:
    numbers = list(values.values())
    if not numbers:
        return "–"
    summary, (low, high) = summarize(numbers), t_interval(numbers)
    return f"{summary.mean:.2f} [{low:.2f}, {high:.2f}]" if summary.n > 1 else f"{summary.mean:.2f}"


def difference_cell(difference: dict | None) -> str:
    if not difference:
        return "–"
    low, high = difference["ci95"]
    return f"{difference['mean']:+.2f} [{low:+.2f}, {high:+.2f}]"


def markdown(summaries: list[dict]) -> str:
    lines = ["| method | row | test accuracy (%), 3 seeds [95 % CI] | Δ vs baseline [95 % CI] | p (t, Holm) |",
             "|---|---|---|---|---|"]
    for s in summaries:
        params = ", ".join(f"{k}={short_number(str(v))}" for k, v in (s["selected"]["params"] or {}).items())
        diff, default_diff = s["difference_vs_baseline"], s["default_difference_vs_baseline"]
        lines += [
            f"| {s['method']} | baseline `{s['baseline']['step']}` | {cell(s['baseline']['test_accuracy_per_seed'])} | reference | – |",
            f"| | defaults | {cell(s['default']['test_accuracy_per_seed'])} | {difference_cell(default_diff)} | "
            f"{(default_diff or {}).get('p_t_holm', float('nan')):.3g} |",
            f"| | tuned ({params}; val {s['selected']['validation_score']:.2f}) | "
            f"{cell(s['confirmation']['test_accuracy_per_seed'])} | {difference_cell(diff)} | "
            f"{(diff or {}).get('p_t_holm', float('nan')):.3g} |"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("methods", nargs="*", default=METHODS)
    parser.add_argument("--tracking-uri", default=f"sqlite:///{ROOT / 'mlflow.db'}")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    summaries = []
    for name in args.methods:
        summary = summarize_method(name, args.tracking_uri)
        (ROOT / "benchmarks" / "results" / f"search_{name}.json").write_text(strict_json(summary))
        summaries.append(summary)
    print(markdown(summaries))


if __name__ == "__main__":
    main()
