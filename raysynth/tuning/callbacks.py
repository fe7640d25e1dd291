"""Driver-side Tune callback: a one-line summary per finished trial, and MLflow runs closed for trials
that ended without closing them themselves (stopped early by ASHA, or lost with their worker)."""

from __future__ import annotations

from typing import Callable

from ray.tune import Callback

from raysynth.metrics import PROBE_METRIC
from raysynth.tuning.trainable import SweepContext, trial_key


class TrialEvents(Callback):
    def __init__(self, context: SweepContext, group: str, metrics: list[str], log: Callable[[str], None]):
        self.context, self.group, self.metrics, self.log = context, group, metrics, log

    def _label(self, trial) -> str:
        config = {k: v for k, v in (trial.config or {}).items()}
        step = config.pop("step", None)
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items())
        return " ".join(p for p in (trial.trial_id, f"[{step}]" if step else "", shown) if p)

    def _close_run(self, trial, status: str, tags: dict[str, str]) -> None:
        tracker = self.context.tracker()
        run = tracker.find_run(self.context.experiment_id, trial_key(self.context.sweep_id, self.group, trial.trial_id))
        if run is not None and run.info.status == "RUNNING":
            tracker.set_tags(run.info.run_id, tags)
            tracker.finish(run.info.run_id, status)

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        if "accuracy" in result:  # the final metrics arrive together (a trial without validation has no val_*)
            shown = ", ".join(f"{k} {result[k]:.4g}" for k in ("val_accuracy", "accuracy", "cas", "fid", "gain") if k in result)
            self.log(f"trial {self._label(trial)} finished: {shown}")
            return
        probe = result.get(PROBE_METRIC)
        self.log(f"trial {self._label(trial)} stopped early by the scheduler"
                 + (f" (validation probe {probe:.2f} % at epoch {result.get('probe/epoch'):.0f})" if probe is not None else ""))
        self._close_run(trial, "KILLED", {"stopped_early": "true"})

    def on_trial_error(self, iteration, trials, trial, **info):
        error = trial.get_error()
        reason = " ".join(str(error).split())[-300:] if error else "unknown error"
        self.log(f"trial {self._label(trial)} FAILED: {reason}")
        self._close_run(trial, "FAILED", {"error": reason})
