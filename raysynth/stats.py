"""Paired comparisons over seeds: the seed fixes the few-shot set, so two steps run on the same seeds
are compared seed by seed (a paired difference), with a t-interval and Holm-adjusted p-values."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
FEW_SEEDS = 3  # a claim on fewer seeds says so
WILCOXON_MIN_N = 6  # below this the signed-rank test cannot reach p < 0.05 two-sided


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof 1); nan for n < 2


def summarize(values: Sequence[float]) -> Summary:
    values = np.asarray(list(values), dtype=float)
    if len(values) == 0:
        return Summary(0, math.nan, math.nan)
    return Summary(len(values), float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan)


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The t confidence interval of the mean of ``values``; (nan, nan) for fewer than 2 values."""
    values = np.asarray(list(values), dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    spread = stats.sem(values)
    if not spread > 0:  # identical values: a zero-width interval (scipy would warn and return nan)
        return float(values.mean()), float(values.mean())
    low, high = stats.t.interval(confidence, len(values) - 1, loc=values.mean(), scale=spread)
    return float(low), float(high)


@dataclass(frozen=True)
class PairedDifference:
    """``candidate - reference`` over the seeds both have."""

    seeds: tuple[int, ...]
    mean: float
    low: float
    high: float
    p_t: float  # paired t-test, two-sided
    p_wilcoxon: float  # Wilcoxon signed-rank, two-sided; nan for n < WILCOXON_MIN_N

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def excludes_zero(self) -> bool:
        return math.isfinite(self.low) and (self.low > 0 or self.high < 0)


def paired_difference(candidate: Mapping[int, float], reference: Mapping[int, float]) -> PairedDifference | None:
    """The paired difference over the common seeds, or None when they share none."""
    seeds = tuple(sorted(set(candidate) & set(reference)))
    if not seeds:
        return None
    a = np.array([candidate[s] for s in seeds], dtype=float)
    b = np.array([reference[s] for s in seeds], dtype=float)
    differences = a - b
    low, high = t_interval(differences)
    p_t = p_wilcoxon = math.nan
    if len(seeds) >= 2 and np.ptp(differences) > 0:
        p_t = float(stats.ttest_rel(a, b).pvalue)
    elif len(seeds) >= 2:  # every seed moved by the same amount: the t statistic is undefined
        p_t = 0.0 if differences[0] != 0 else 1.0
    if len(seeds) >= WILCOXON_MIN_N and np.any(differences != 0):
        p_wilcoxon = float(stats.wilcoxon(a, b).pvalue)
    return PairedDifference(seeds, float(differences.mean()), low, high, p_t, p_wilcoxon)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error) of ``pvalues``; nan entries stay nan and are not
    counted in the family. (scipy.stats has Benjamini-Hochberg, not Holm.)"""
    indexed = [(p, i) for i, p in enumerate(pvalues) if not math.isnan(p)]
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (len(indexed) - rank) * p))
        adjusted[i] = running
    return adjusted
