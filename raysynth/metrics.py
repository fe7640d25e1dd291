"""The metric table: every metric a trial reports, its direction, the split it is measured on.

Selection (Optuna's objective, ASHA's signal, the best trial of a searched step) may only use metrics
measured on the validation split; test metrics are computed once per trial and reported. The spec's
checks of ``tune.metric``, the runner's seed spread, the report's columns and the sweep's summary all
read this one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from raysynth.registry import Registry

Split = Literal["validation", "test", "none"]


@dataclass(frozen=True)
class Metric:
    name: str
    goal: Literal["max", "min"]
    split: Split
    seed_spread: bool = False  # report `<name>_seed_std` over the trial's seeds
    description: str = ""
    decimals: int = 2  # what MLflow shows (percentages and points: 2; a Fréchet distance: 3)


def _accuracy_pair(name: str, description: str, seed_spread: bool = True) -> list[Metric]:
    return [Metric(name, "max", "test", seed_spread, f"{description}, real test set (%)"),
            Metric(f"val_{name}", "max", "validation", seed_spread, f"{description}, validation images (%)")]


METRICS: dict[str, Metric] = {m.name: m for m in [
    *_accuracy_pair("accuracy", "classifier on the method's intended training set"),
    *_accuracy_pair("cas", "classifier on the synthetic images alone"),
    *_accuracy_pair("baseline_accuracy", "the matching real-only baseline"),
    *_accuracy_pair("repeated_accuracy", "the few-shot set repeated to the training set's size (equal SGD steps)"),
    *_accuracy_pair("classic_accuracy", "classic augmentation at the same size"),
    *_accuracy_pair("classic_alone_accuracy", "classic augmented images alone, as many as the synthetic ones"),
    Metric("gain", "max", "test", True, "accuracy - baseline_accuracy (points)"),
    Metric("val_gain", "max", "validation", True, "val_accuracy - val_baseline_accuracy (points)"),
    Metric("gain_vs_repeated", "max", "test", True, "accuracy - repeated_accuracy (points)"),
    Metric("val_gain_vs_repeated", "max", "validation", True, "val_accuracy - val_repeated_accuracy (points)"),
    Metric("gain_vs_classic", "max", "test", True, "accuracy - classic_accuracy (points)"),
    Metric("gain_vs_classic_alone", "max", "test", True, "accuracy - classic_alone_accuracy (points)"),
    Metric("fid", "min", "test", True, "Fréchet distance, synthetic vs real test images", 3),
    Metric("val_fid", "min", "validation", True, "Fréchet distance, synthetic vs validation images", 3),
    Metric("probe/val_accuracy", "max", "validation", False, "first classifier's validation accuracy during training"),
]}

# what ASHA compares while classifiers train
PROBE_METRIC = "probe/val_accuracy"
PROBE_TIME = "probe/epoch"
# where an evaluation's classifiers are (reported with every probe and five times per classifier): without
# them a trial is silent, its heartbeat stuck at the fit's last epoch, for the hours its classifiers train
EVALUATION_EPOCH = "eval/epoch"
EVALUATION_CLASSIFIER = "eval/classifier"
# which metric that classifier is for (accuracy, cas, baseline, repeated, ...: the name of its `[eval <name>]`
# log lines): a seed trains one set of classifiers per metric, so without it the epochs seem to run backwards.
# A string: Tune and the heartbeat get it, MLflow's metric history does not
EVALUATION_SET = "eval/set"


def selection_metrics() -> list[str]:
    """Metrics Optuna may optimize without ``tune.select_on_test``."""
    return [m.name for m in METRICS.values() if m.split == "validation" and not m.name.startswith("probe/")]


def validation_counterpart(name: str) -> str | None:
    """``accuracy`` -> ``val_accuracy``: what to select on instead of a test metric."""
    candidate = f"val_{name}"
    return candidate if candidate in METRICS else None


def seed_spread_metrics() -> list[str]:
    return [m.name for m in METRICS.values() if m.seed_spread]


def rounded(metrics: dict[str, float]) -> dict[str, float]:
    """Contract metrics (and their ``_seed_std``) rounded to their table's decimals, for what MLflow shows
    (a rounding of 0.005 points is far below any seed spread); Tune and the searcher get full values."""
    out = {}
    for name, value in metrics.items():
        metric = METRICS.get(name.removesuffix("_seed_std"))
        out[name] = round(value, metric.decimals) if metric is not None else value
    return out


# the feature spaces of `fid` / `val_fid` (evaluation.fid); each registers itself in evaluation/fid.py
FID_BACKENDS: Registry = Registry("FID backend").discover("raysynth.evaluation.fid", "FID_BACKENDS")
