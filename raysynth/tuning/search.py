"""Search space -> Optuna: a define-by-run function (conditional parameters sampled only when their
``when:`` holds), the sampler, and the searcher Ray Tune drives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import optuna
from ray.tune.search.optuna import OptunaSearch

from raysynth.metrics import PROBE_METRIC
from raysynth.spec import MISSING, Distribution, SweepSpec, lookup
from raysynth.tuning.sweep import FAILURE


@dataclass(frozen=True)
class DefineByRun:
    """Samples the space's distributions in file order; a top-level class so the searcher's state pickles."""

    search: Mapping[str, Distribution]
    fixed_params: Mapping[str, Any] = field(default_factory=dict)

    def condition_holds(self, when: Mapping[str, list], sampled: Mapping[str, Any]) -> bool:
        for key, allowed in when.items():
            value = sampled[key] if key in sampled else lookup(self.fixed_params, key)
            if value is MISSING or value not in allowed:
                return False
        return True

    def __call__(self, trial: optuna.Trial) -> None:
        sampled: dict[str, Any] = {}
        for key, distribution in self.search.items():
            if distribution.when and not self.condition_holds(distribution.when, sampled):
                continue
            sampled[key] = suggest(trial, key, distribution)
        return None  # only sampling happens here (ray issue 18587)


def suggest(trial: optuna.Trial, key: str, distribution: Distribution) -> Any:
    if distribution.kind == "uniform":
        return trial.suggest_float(key, *distribution.uniform)
    if distribution.kind == "loguniform":
        return trial.suggest_float(key, *distribution.loguniform, log=True)
    if distribution.kind == "int":
        return trial.suggest_int(key, *distribution.int)
    return trial.suggest_categorical(key, distribution.choice)


def make_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    """TPE for one metric, NSGA-II for several, unless ``tune.sampler`` says otherwise; seeded."""
    choice = spec.tune.sampler or ("nsga2" if len(spec.tune.metrics) > 1 else "tpe")
    seed = spec.tune.sampler_seed
    if choice == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if choice == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


class RaysynthOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch, tolerant of intermediate results that do not carry the objective (training
    losses). Where the objective is ``val_accuracy``, the validation probes (the same accuracy at an
    earlier classifier epoch) are Optuna's intermediate values: a trial ASHA stops then enters TPE
    ranked by how far it got and what it scored, not tied with every other stopped trial as the worst.
    Each Optuna trial carries its Tune trial id (user attribute ``tune_trial_id``), which also tags
    its MLflow run."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.metric == "val_accuracy" and PROBE_METRIC in result and self.metric not in result:
            result = {**result, self.metric: result[PROBE_METRIC]}
        if isinstance(self.metric, str) and self.metric not in result:
            return
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._ot_trials and trial_id not in self._completed_trials:
            self._ot_trials[trial_id].set_user_attr(TUNE_TRIAL_ATTR, trial_id)
            if result and FAILURE in result:  # a deterministic failure ends normally in Tune; Optuna hears FAIL
                self._ot_trials[trial_id].set_user_attr("failure", str(result[FAILURE])[:1000])
                result, error = None, True
        super().on_trial_complete(trial_id, result, error)


TUNE_TRIAL_ATTR = "tune_trial_id"


def study_name(experiment: str, sweep_id: str, step: str) -> str:
    """One persisted study per searched step of a sweep."""
    return f"{experiment}/{sweep_id}/{step}"


def make_searcher(spec: SweepSpec, name: str) -> RaysynthOptunaSearch:
    """The step's searcher; its study ``name`` lives in ``tune.study_storage`` (values: the validation metrics)."""
    metrics, modes = spec.tune.metrics, spec.tune.modes
    storage = optuna.storages.RDBStorage(spec.tune.study_storage) if spec.tune.study_storage else None
    return RaysynthOptunaSearch(
        space=DefineByRun(dict(spec.search), spec.params.to_data()),
        metric=metrics if len(metrics) > 1 else metrics[0],
        mode=modes if len(modes) > 1 else modes[0],
        sampler=make_sampler(spec),
        study_name=name,
        storage=storage,
    )
