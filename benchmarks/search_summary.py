"""The issue-20 searches, summarized from their MLflow runs and persisted studies (`raysynth report`):
``benchmarks/results/search_<method>.json`` per method (the selected configuration, its validation
score, the confirmation's per-seed test accuracies, the baseline's and the defaults' on the same seeds,
the paired difference) and the Markdown table of docs/results.md's "What the search found".

    python benchmarks/search_summary.py [--tracking-uri sqlite:///PATH/mlflow.db] [method ...]
    python benchmarks/search_summary.py --overview   # from the JSON files alone: docs/search/overview.{md,png}

Run from the clone the searches ran in (benchmarks/search_queue.sh); the report's figures go to
``docs/search/<method>/``. The overview puts every finished search on one table and one figure: the
tuned configuration against its baseline (the difference and Holm p of its own report) and against
its defaults (the gain from searching, Holm-adjusted across the methods).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import yaml

from raysynth.report import plot_differences, short_number, strict_json, write_report
from raysynth.stats import FEW_SEEDS, PairedDifference, holm, paired_difference, summarize, t_interval

ROOT = Path(__file__).resolve().parent.parent
METHODS = ["learned_augmentation", "expansive", "koopcon", "dm", "scola", "eieg"]
OVERVIEW_ORDER = ["learned_augmentation", "expansive", "scola", "eieg", "koopcon", "dm"]
TITLES = {"learned_augmentation": "learned augmentation", "expansive": "Expansive Synthesis", "scola": "sCOLA",
          "eieg": "EIEG", "koopcon": "Koopcon", "dm": "DM (the condensation peer)"}
BASELINES = {"classic_x10": "classic augmentation ×10", "classic_x2": "classic augmentation ×2",
             "random_subset": "a random real subset", "real": "the 10 real images per class"}


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


def baseline_name(summary: dict) -> str:
    return BASELINES.get(summary["baseline"]["step"], summary["baseline"]["step"])


def seeded(values: dict[str, float]) -> dict[int, float]:
    return {int(seed): value for seed, value in values.items()}


def recorded_difference(summary: dict) -> PairedDifference | None:
    """The tuned row's difference against its baseline as its report computed it (Holm p inside its ladder)."""
    d = summary["difference_vs_baseline"]
    if not d:
        return None
    return PairedDifference(tuple(d["seeds"]), d["mean"], d["ci95"][0], d["ci95"][1], d["p_t"], math.nan)


def overview(results: Path, out_dir: Path) -> str:
    """docs/search/overview.{md,png} from the committed ``search_<method>.json``: one row per finished search."""
    summaries = [json.loads((results / f"search_{name}.json").read_text()) | {"name": name}
                 for name in OVERVIEW_ORDER if (results / f"search_{name}.json").exists()]
    gains = [paired_difference(seeded(s["confirmation"]["test_accuracy_per_seed"]),
                               seeded(s["default"]["test_accuracy_per_seed"])) for s in summaries]
    gains_holm = holm([g.p_t if g else math.nan for g in gains])
    lines = ["| method | baseline | baseline (%) | defaults (%) | **tuned** (%) | tuned − baseline | p (Holm, its ladder) "
             "| tuned − defaults | p (Holm, across methods) |", "|---|---|---|---|---|---|---|---|---|"]
    for s, gain, gain_p in zip(summaries, gains, gains_holm):
        versus = s["difference_vs_baseline"] or {}
        lines.append(" | ".join([
            f"| {TITLES[s['name']]}", baseline_name(s),
            cell(s["baseline"]["test_accuracy_per_seed"]), cell(s["default"]["test_accuracy_per_seed"]),
            f"**{cell(s['confirmation']['test_accuracy_per_seed'])}**", difference_cell(versus),
            f"{versus.get('p_t_holm', math.nan):.2f}", difference_cell(gain and {"mean": gain.mean, "ci95": [gain.low, gain.high]}),
            f"{gain_p:.2f} |"]))
    few = min((len(s["confirmation"]["test_accuracy_per_seed"]) for s in summaries), default=0)
    lines += ["", f"Test accuracy on the confirmation seeds, mean [95 % t-interval]; differences paired over those seeds"
              f" ({few} per method{': too few for a claim' if few < FEW_SEEDS else ''}). Finished: "
              f"{len(summaries)} of {len(OVERVIEW_ORDER)} searches. Written by `python benchmarks/search_summary.py --overview`."]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "overview.md").write_text("\n".join(lines) + "\n")
    plot_overview(out_dir / "overview.png", summaries, gains)
    return "\n".join(lines)


def plot_overview(path: Path, summaries: list[dict], gains: list[PairedDifference | None]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 1.6 + 0.7 * len(summaries)))
    versus = [(f"{TITLES[s['name']]}\nvs {baseline_name(s)}", recorded_difference(s)) for s in summaries]
    plot_differences(left, [(label, d) for label, d in versus if d], "tuned − baseline, test accuracy (points)")
    plot_differences(right, [(TITLES[s["name"]], g) for s, g in zip(summaries, gains) if g],
                     "tuned − defaults, test accuracy (points)")
    left.set_title("against the baseline, paired over the confirmation seeds, 95 % CI\n"
                   "(green / red: the interval excludes 0; not adjusted for multiplicity)", fontsize=9)
    right.set_title("the gain from searching: against the defaults, same seeds", fontsize=9)
    figure.suptitle("What the search found: Fashion-MNIST, 10 images per class, CPU budget, tuned on validation",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("methods", nargs="*", default=METHODS)
    parser.add_argument("--tracking-uri", default=f"sqlite:///{ROOT / 'mlflow.db'}")
    parser.add_argument("--overview", action="store_true",
                        help="only the overview of the finished searches, from benchmarks/results/search_*.json")
    args = parser.parse_args()
    if args.overview:
        print(overview(ROOT / "benchmarks" / "results", ROOT / "docs" / "search"))
        return
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    summaries = []
    for name in args.methods:
        summary = summarize_method(name, args.tracking_uri)
        (ROOT / "benchmarks" / "results" / f"search_{name}.json").write_text(strict_json(summary))
        summaries.append(summary)
    print(markdown(summaries))


if __name__ == "__main__":
    main()
