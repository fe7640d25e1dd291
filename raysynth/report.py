"""``raysynth report``: MLflow -> comparison table (Markdown, CSV) and a bar chart with error bars.

For a ladder: one row per step (its best trial when the step was searched), metrics as mean ± std
over the seed runs, and the change in accuracy from the previous step. For a search: the trials
ranked by the objective, their sampled parameters, and Optuna's parameter importances.
"""

from __future__ import annotations

import csv
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from raysynth.errors import RaysynthError
from raysynth.tracking import Tracker

SHOWN_METRICS = ("accuracy", "cas", "fid", "gain", "baseline_accuracy")


@dataclass
class Row:
    label: str
    status: str
    params: dict[str, str] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)  # metric -> one value per seed
    objective: float | None = None
    error: str = ""

    def mean(self, metric: str) -> float:
        return float(np.mean(self.values[metric])) if self.values.get(metric) else math.nan

    def std(self, metric: str) -> float:
        return float(np.std(self.values[metric])) if self.values.get(metric) else math.nan


def format_mean_std(mean: float, std: float, digits: int = 2) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _load_sweep(tracker: Tracker, experiment: str, sweep_id: str | None):
    client = tracker.client
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise RaysynthError(f"`--experiment {experiment}`: no such experiment in {tracker.tracking_uri} (experiments: {names})")
    sweeps = tracker.runs(found.experiment_id, "sweep", f"tags.sweep_id = '{sweep_id}'" if sweep_id else "")
    if not sweeps:
        raise RaysynthError(f"experiment `{experiment}` has no sweep runs in {tracker.tracking_uri}; run `raysynth sweep` first")
    parent = max(sweeps, key=lambda r: r.info.start_time)
    sid = parent.data.tags["sweep_id"]
    trials = tracker.runs(found.experiment_id, "trial", f"tags.sweep_id = '{sid}'")
    seeds = tracker.runs(found.experiment_id, "seed", f"tags.sweep_id = '{sid}'")
    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(parent.info.run_id, "sweep.yaml", folder)
        sweep_spec = yaml.safe_load(Path(path).read_text())
    return parent, trials, seeds, sweep_spec


def objective(sweep_spec: dict) -> tuple[str, str]:
    """The (first) metric and mode the sweep optimized."""
    metric, mode = sweep_spec["tune"]["metric"], sweep_spec["tune"]["mode"]
    return (metric[0] if isinstance(metric, list) else metric), (mode[0] if isinstance(mode, list) else mode)


def build_rows(trials, seeds, sweep_spec: dict) -> tuple[list[Row], bool]:
    """The report's rows, and whether they are ladder steps."""
    metric, mode = objective(sweep_spec)
    search_keys = list(sweep_spec.get("search") or {})
    seeds_by_trial: dict[str, list] = {}
    for run in seeds:
        if run.info.status == "FINISHED":
            seeds_by_trial.setdefault(run.data.tags.get("mlflow.parentRunId"), []).append(run)

    def row_of(run, label: str) -> Row:
        row = Row(label=label, status=run.info.status, error=run.data.tags.get("error", ""),
                  objective=run.data.metrics.get(metric),
                  params={k: run.data.params.get(f"params.{k}", "–") for k in search_keys})
        for metric_name in SHOWN_METRICS:
            row.values[metric_name] = [s.data.metrics[metric_name] for s in seeds_by_trial.get(run.info.run_id, [])
                                       if metric_name in s.data.metrics]
        return row

    better = max if mode == "max" else min
    ladder = bool(sweep_spec.get("ablation"))
    if ladder:
        rows = []
        for step in [s["name"] for s in sweep_spec["ablation"]]:
            runs = [r for r in trials if r.data.tags.get("ablation_step") == step]
            finished = [r for r in runs if r.info.status == "FINISHED" and metric in r.data.metrics]
            if finished:
                rows.append(row_of(better(finished, key=lambda r: r.data.metrics[metric]), step))
            elif runs:
                rows.append(row_of(runs[0], step))
        return rows, True
    finished = [r for r in trials if r.info.status == "FINISHED" and metric in r.data.metrics]
    ranked = sorted(finished, key=lambda r: r.data.metrics[metric], reverse=(mode == "max"))
    others = [r for r in trials if r not in finished]
    return [row_of(r, f"#{i + 1} {r.info.run_name}") for i, r in enumerate(ranked)] + \
           [row_of(r, r.info.run_name or r.info.run_id[:8]) for r in others], False


def importances(trials, sweep_spec: dict) -> dict[str, float]:
    """Optuna's (fANOVA) parameter importances over the finished trials of a search."""
    import optuna

    from raysynth.spec import Distribution

    search = {k: Distribution.model_validate(v) for k, v in (sweep_spec.get("search") or {}).items()}
    metric, mode = objective(sweep_spec)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for run in trials:
        if run.info.status != "FINISHED" or metric not in run.data.metrics:
            continue
        params, distributions = {}, {}
        for key, dist in search.items():
            raw = run.data.params.get(f"params.{key}")
            if raw is None:
                continue
            if dist.kind == "choice":
                value = next((c for c in dist.choice if str(c) == raw), raw)
                distributions[key] = optuna.distributions.CategoricalDistribution(dist.choice)
            elif dist.kind == "int":
                value = int(float(raw))
                distributions[key] = optuna.distributions.IntDistribution(*dist.int)
            else:
                value = float(raw)
                low, high = getattr(dist, dist.kind)
                distributions[key] = optuna.distributions.FloatDistribution(low, high, log=dist.kind == "loguniform")
            params[key] = value
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=run.data.metrics[metric]))
    return dict(optuna.importance.get_param_importances(study))


def render_markdown(title: str, rows: list[Row], ladder: bool, importance: dict[str, float] | None, note: str) -> str:
    param_keys = list(rows[0].params) if rows and not ladder else []
    header = ["step" if ladder else "trial", *param_keys, "accuracy (%)", "CAS (%)", "FID", "gain (pp)"]
    if ladder:
        header.append("Δ accuracy")
    header += ["seeds", "status"]
    lines = [f"# {title}", "", note, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    previous = None
    for row in rows:
        cells = [row.label, *[row.params[k] for k in param_keys],
                 format_mean_std(row.mean("accuracy"), row.std("accuracy")), format_mean_std(row.mean("cas"), row.std("cas")),
                 format_mean_std(row.mean("fid"), row.std("fid"), 3), format_mean_std(row.mean("gain"), row.std("gain"))]
        if ladder:
            accuracy = row.mean("accuracy")
            cells.append("–" if previous is None or math.isnan(accuracy) else f"{accuracy - previous:+.2f}")
            previous = accuracy if not math.isnan(accuracy) else previous
        cells += [str(len(row.values.get("accuracy", []))), row.status.lower()]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in rows if r.error]
    if failed:
        lines += ["", "Failed trials:", *[f"- {r.label}: {r.error}" for r in failed]]
    if importance:
        lines += ["", "Parameter importances (Optuna, fANOVA):", "",
                  "| parameter | importance |", "|---|---|", *[f"| {k} | {v:.3f} |" for k, v in importance.items()]]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[Row]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        params = list(rows[0].params) if rows else []
        writer.writerow(["label", *params, *[f"{m}_{s}" for m in SHOWN_METRICS for s in ("mean", "std")], "seeds", "status"])
        for row in rows:
            writer.writerow([row.label, *[row.params[k] for k in params],
                             *[f"{v:.6g}" for m in SHOWN_METRICS for v in (row.mean(m), row.std(m))],
                             len(row.values.get("accuracy", [])), row.status])


def plot(path: Path, rows: list[Row], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.values.get("accuracy")]
    labels = [r.label for r in shown]
    x = np.arange(len(shown))
    figure, (left, right) = plt.subplots(1, 2, figsize=(max(8, 1.3 * len(shown) + 4), 4.5),
                                         gridspec_kw={"width_ratios": [2, 1]})
    width = 0.38
    for offset, metric, name in ((-width / 2, "accuracy", "accuracy"), (width / 2, "cas", "CAS")):
        left.bar(x + offset, [r.mean(metric) for r in shown], width, yerr=[r.std(metric) for r in shown], capsize=3, label=name)
    left.set_xticks(x, labels, rotation=30, ha="right")
    left.set_ylabel("test accuracy (%)")
    left.legend()
    left.set_title(title)
    right.bar(x, [r.mean("fid") for r in shown], 0.6, yerr=[r.std("fid") for r in shown], capsize=3, color="tab:gray")
    right.set_xticks(x, labels, rotation=30, ha="right")
    right.set_ylabel("FID (lower is better)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(experiment: str, *, tracking_uri: str, out_dir: Path, sweep_id: str | None = None,
                 log: Callable[[str], None] = print) -> str:
    """Writes report.md, report.csv and report.png for the latest (or the given) sweep; returns the Markdown."""
    tracker = Tracker(tracking_uri, retry_seconds=10)
    parent, trials, seeds, sweep_spec = _load_sweep(tracker, experiment, sweep_id)
    rows, ladder = build_rows(trials, seeds, sweep_spec)
    if not rows:
        raise RaysynthError(f"sweep {parent.data.tags['sweep_id']} of `{experiment}` has no trial runs yet")
    importance = None
    if not ladder and sweep_spec.get("search"):
        try:
            importance = importances(trials, sweep_spec)
        except (ValueError, RuntimeError) as error:
            log(f"parameter importances unavailable: {error}")
    evaluation = sweep_spec.get("evaluation", {})
    note = (f"Sweep `{parent.data.tags['sweep_id']}`, dataset `{sweep_spec['dataset']['name']}` at "
            f"{sweep_spec['dataset']['images_per_class']} images per class; mean ± std over seeds {sweep_spec['seeds']}; "
            f"classifier {evaluation.get('classifier')} (width {evaluation.get('width') or 'default'}), "
            f"{evaluation.get('epochs')} epochs, {evaluation.get('num_eval')} classifier(s) per set; "
            f"method budget {sweep_spec.get('budget', {}).get('epochs')} epochs.")
    markdown = render_markdown(f"{experiment}: {'ablation ladder' if ladder else 'search'}", rows, ladder, importance, note)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text(markdown)
    write_csv(out_dir / "report.csv", rows)
    plot(out_dir / "report.png", rows, experiment)
    for name in ("report.md", "report.csv", "report.png"):
        tracker.log_artifact(parent.info.run_id, out_dir / name, "report")
    log(f"report written to {out_dir}/report.{{md,csv,png}} and logged to the sweep's run")
    return markdown
