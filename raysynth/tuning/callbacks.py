"""Driver-side Tune callback: what the terminal shows of a trial group (one line per trial event and a
progress line), and MLflow runs closed for trials that ended without closing them themselves
(stopped early by ASHA, or lost with their worker)."""

from __future__ import annotations

import time
from typing import Callable

from ray.tune import Callback

from raysynth.metrics import EVALUATION_CLASSIFIER, EVALUATION_EPOCH, EVALUATION_SET, PROBE_METRIC, PROBE_TIME
from raysynth.tuning.sweep import FAILURE, failure_reason
from raysynth.tuning.trainable import SweepContext, trial_key

PENDING_NOTICE_S = 15  # a trial waiting longer than this is announced, with why
HEARTBEAT_S = 600  # a running trial says where it is this often: a fit of hours is otherwise silent
FIT_POSITION = ("train/epoch",)
CLASSIFIER_POSITION = (EVALUATION_EPOCH, EVALUATION_CLASSIFIER)  # and EVALUATION_SET where reported


class TrialEvents(Callback):
    """Trial started / probe (verbose) / still running (every ``HEARTBEAT_S``) / finished / failed /
    stopped early, then ``k/N trials done``."""

    def __init__(self, context: SweepContext, group: str, metric: str, mode: str, total: int,
                 log: Callable[[str], None], verbose: bool = False, waiting_for: str = "resources",
                 clock: Callable[[], float] = time.monotonic):
        self.context, self.group, self.metric, self.mode, self.total = context, group, metric, mode, total
        self.log, self.verbose, self.waiting_for, self.clock = log, verbose, waiting_for, clock
        self.started_at: dict[str, float] = {}
        self.last_said: dict[str, float] = {}
        self.position: dict[str, dict[str, float]] = {}  # per trial: its last reported seed and epoch
        self.ended, self.failed, self.stopped = 0, 0, 0
        self.best: tuple[float, str] | None = None
        self.pending_since: dict[str, float] = {}
        self.announced: set[str] = set()
        self.restored_counted = False

    def _count_restored(self, trials) -> None:
        """Trials of a resumed sweep that ended before the interruption count as done (once, at the first
        event: Tune lists them as ended from the start)."""
        if self.restored_counted:
            return
        self.restored_counted = True
        before = [t for t in trials if t.status in ("TERMINATED", "ERROR")]
        for trial in before:
            result = trial.last_result or {}
            self.ended += 1
            if trial.status == "ERROR" or FAILURE in result:
                self.failed += 1
            else:
                self._consider(result, trial.trial_id)
        if before:
            self._say(f"{len(before)} trial(s) ended before the restart")

    def _consider(self, result: dict, trial_id: str) -> None:
        value = result.get(self.metric)
        if value is not None and (self.best is None or (value > self.best[0] if self.mode == "max" else value < self.best[0])):
            self.best = (float(value), trial_id)

    def _label(self, trial) -> str:
        config = {k: v for k, v in (trial.config or {}).items()}
        step = config.pop("step", None)
        shown = ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                          for k, v in config.items())
        return " ".join(p for p in (trial.trial_id, f"[{step}]" if step else "", shown) if p)

    def _say(self, text: str) -> None:
        self.log(f"[{self.group}] {text}")

    def _close_run(self, trial, status: str, tags: dict[str, str]) -> None:
        tracker = self.context.tracker()
        run = tracker.find_run(self.context.experiment_id, trial_key(self.context.sweep_id, self.group, trial.trial_id))
        if run is not None and run.info.status == "RUNNING":
            tracker.set_tags(run.info.run_id, tags)
            tracker.finish_with_children(self.context.experiment_id, run.info.run_id, status)

    def _progress(self, trials, ended) -> None:
        running = sum(1 for t in trials if t.status == "RUNNING" and t is not ended)  # `ended` is still RUNNING here
        best = ""
        if self.best is not None:
            best = f", best {self.metric} {self.best[0]:.4g} ({self.best[1]})"
        failed = f", {self.failed} failed" if self.failed else ""
        self._say(f"{self.ended}/{self.total} trials done{failed}, {running} running{best}")

    def on_step_end(self, iteration, trials, **info):
        self._count_restored(trials)
        now = self.clock()
        for trial in trials:
            if trial.status != "PENDING":
                self.pending_since.pop(trial.trial_id, None)
                continue
            since = self.pending_since.setdefault(trial.trial_id, now)
            if now - since > PENDING_NOTICE_S and trial.trial_id not in self.announced:
                self.announced.add(trial.trial_id)
                self._say(f"trial {trial.trial_id} waiting for {self.waiting_for}")

    def on_trial_start(self, iteration, trials, trial, **info):
        self._count_restored(trials)
        self.started_at[trial.trial_id] = self.last_said[trial.trial_id] = self.clock()
        self._say(f"trial {self._label(trial)} started")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.verbose and PROBE_METRIC in result:
            self._say(f"trial {trial.trial_id} probe {PROBE_METRIC} {result[PROBE_METRIC]:.2f} % at epoch "
                      f"{result.get(PROBE_TIME, 0):.0f}")
        position = self._track(trial.trial_id, result)
        now = self.clock()
        started = self.started_at.setdefault(trial.trial_id, now)
        if now - self.last_said.setdefault(trial.trial_id, now) >= HEARTBEAT_S:
            self.last_said[trial.trial_id] = now
            where = [f"seed {position['seed']:.0f}"] if "seed" in position else []
            if "train/epoch" in position:
                where.append(f"fit epoch {position['train/epoch']:.0f}")
            elif EVALUATION_EPOCH in position:
                metric = f" for {position[EVALUATION_SET]}," if EVALUATION_SET in position else ""
                where.append(f"evaluation{metric} classifier {position[EVALUATION_CLASSIFIER]:.0f} "
                             f"epoch {position[EVALUATION_EPOCH]:.0f}")
            step = (trial.config or {}).get("step")
            self._say(f"trial {trial.trial_id}" + (f" [{step}]" if step else "") + f" running for {(now - started) / 60:.0f} min"
                      + (f": {', '.join(where)}" if where else ""))

    def _track(self, trial_id: str, result: dict) -> dict[str, float]:
        """The trial's last known seed and epoch: a result may carry neither (a checkpoint's), and the
        heartbeat must not then lose where the trial is."""
        position = self.position.setdefault(trial_id, {})
        if "seed" in result and result["seed"] != position.get("seed"):
            position.clear()
        for now, before in ((FIT_POSITION, CLASSIFIER_POSITION), (CLASSIFIER_POSITION, FIT_POSITION)):  # fit, then classifiers
            if all(key in result for key in now):
                for key in (*before, EVALUATION_SET):
                    position.pop(key, None)
                position.update({key: result[key] for key in (*now, EVALUATION_SET) if key in result})
        if "seed" in result:
            position["seed"] = result["seed"]
        return position

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        self.ended += 1
        if FAILURE in result:  # failed deterministically; the trial closed its own run
            self.failed += 1
            self._say(f"trial {self._label(trial)} FAILED: {result[FAILURE]}")
        elif "accuracy" in result:  # the final metrics arrive together (a trial without validation has no val_*)
            shown = ", ".join(f"{k} {result[k]:.4g}" for k in ("val_accuracy", "accuracy", "cas", "fid", "gain") if k in result)
            self._say(f"trial {self._label(trial)} finished: {shown}")
            self._consider(result, trial.trial_id)
        else:
            self.stopped += 1
            probe = result.get(PROBE_METRIC)
            self._say(f"trial {self._label(trial)} stopped early by the scheduler"
                      + (f" (validation probe {probe:.2f} % at epoch {result.get(PROBE_TIME, 0):.0f})" if probe is not None else ""))
            self._close_run(trial, "KILLED", {"stopped_early": "true"})
        self._progress(trials, trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        error = trial.get_error()
        reason = failure_reason(error) if error else "unknown error"
        self.ended += 1
        self.failed += 1
        self._say(f"trial {self._label(trial)} FAILED after its retries: {reason}")
        self._close_run(trial, "FAILED", {"error": reason})
        self._progress(trials, trial)
