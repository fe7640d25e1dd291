"""The Ray Tune trainable: the one place where Ray, MLflow and a method meet.

A trial is one configuration over all of the space's seeds. It logs its own MLflow runs (a trial run
under the sweep's parent run, a run per seed under it) because Tune's MLflow callback logs from the
driver, which cannot upload the sample grids a trial draws.
"""

from __future__ import annotations

import pickle
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

import ray
import torch
import yaml
from ray import tune

from raysynth.checkpointing import Checkpointer, TrialState
from raysynth.plugins import Plugin
from raysynth.plugins import load as load_plugins
from raysynth.tuning.sweep import CONFIRM_SEED, FAILURE, readable_params
from raysynth.data import ImageDataset, Split
from raysynth.methods import SyntheticSet
from raysynth.runner import run_trial
from raysynth.spec import SweepSpec
from raysynth.errors import RaysynthError
from raysynth.metrics import PROBE_METRIC, rounded
from raysynth.secrets import redact, worker_tracking_uri
from raysynth.tracking import Tracker, one_line
from raysynth.visualize import save_sample_grid


@dataclass(frozen=True)
class SweepContext:
    """What every trial of a sweep needs to know; shipped once through Ray's object store."""

    sweep_id: str
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    git_commit: str
    ladder: bool
    step_specs: Mapping[str, SweepSpec]
    plugins: tuple[Plugin, ...] = ()

    def tracker(self) -> Tracker:
        return Tracker(worker_tracking_uri(self.tracking_uri))

    def __reduce__(self):
        # A step spec's params may be a plugin's model, pickled by reference to the plugin's module: a
        # worker imports the plugins first, then reads the rest (which is why they travel apart).
        rest = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "plugins"}
        return _restore_context, (self.plugins, pickle.dumps(rest))


def _restore_context(plugins: tuple[Plugin, ...], rest: bytes) -> SweepContext:
    load_plugins(plugins)
    return SweepContext(plugins=plugins, **pickle.loads(rest))


def trial_key(sweep_id: str, group: str, trial_id: str) -> str:
    return f"{sweep_id}:{group}:{trial_id}"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# Training curves reach MLflow at most this often: each request costs an authenticating tracking server
# a password hash (0.165 s of CPU, docs/cluster.md), and a GPU trial reports about once a second.
FLUSH_INTERVAL_S = 10.0


class TrialLogger:
    """Maps the runner's events to Tune reports and MLflow runs (one per seed).

    Training curves are buffered and sent together, every FLUSH_INTERVAL_S at most; while the tracking
    server is unreachable the trial keeps training and the buffer grows; it is flushed at the next
    chance, and patiently at the end of each seed.
    """

    def __init__(self, tracker: Tracker, experiment_id: str, trial_run_id: str, key: str, tags: dict[str, str]):
        self.tracker, self.experiment_id, self.trial_run_id, self.key, self.tags = tracker, experiment_id, trial_run_id, key, tags
        self.impatient = replace(tracker, retry_seconds=0, log=lambda message: None)
        self.pending: list[tuple[int, dict[str, float], int, int]] = []  # seed, metrics, step, time (ms)
        self.next_flush = 0.0
        self.seed_runs: dict[int, str] = {}
        self.grids: dict[int, Path] = {}
        self.folder = Path(tempfile.mkdtemp(prefix="raysynth-trial-"))

    def record(self, seed: int, step: int, metrics: dict[str, float]) -> None:
        """Buffers one report; sends the buffer when FLUSH_INTERVAL_S has passed since the last send, and
        with every validation probe, which Tune may answer by stopping the trial (the report reads a
        stopped trial's last probe from its seed run)."""
        self.pending.append((seed, metrics, step, int(time.time() * 1000)))
        if PROBE_METRIC in metrics or time.monotonic() >= self.next_flush:
            self.flush(patient=False)

    def flush(self, patient: bool) -> None:
        self.next_flush = time.monotonic() + FLUSH_INTERVAL_S
        while self.pending:
            seed = self.pending[0][0]
            count = next((i for i, entry in enumerate(self.pending) if entry[0] != seed), len(self.pending))
            try:
                tracker = self.tracker if patient else self.impatient
                tracker.log_metric_history(self.seed_run(seed, tracker),
                                           [(metrics, step, at) for _, metrics, step, at in self.pending[:count]])
            except Exception:
                if patient:
                    raise
                return
            del self.pending[:count]

    def seed_run(self, seed: int, tracker: Tracker | None = None) -> str:
        if seed not in self.seed_runs:
            run = (tracker or self.tracker).open_run(self.experiment_id, f"{self.key}:seed{seed}", name=f"seed {seed}", kind="seed",
                                        tags={**self.tags, "seed": str(seed)}, parent_run_id=self.trial_run_id)
            self.seed_runs[seed] = run.info.run_id
        return self.seed_runs[seed]

    def on_seed_start(self, seed: int) -> None:
        self.seed_run(seed)  # opened now, so its duration in MLflow is the seed's

    def on_progress(self, seed: int, step: int, metrics: dict[str, float | str]) -> None:
        self.record(seed, step, {k: v for k, v in metrics.items() if not isinstance(v, str)})  # labels are not curves
        tune.report({**metrics, "seed": seed})

    def on_seed_end(self, seed: int, metrics: dict[str, float], synthetic: SyntheticSet, split: Split) -> None:
        self.flush(patient=True)
        run_id = self.seed_run(seed)
        self.tracker.log_metrics(run_id, rounded(metrics))
        grid = save_sample_grid(synthetic, split, self.folder / f"samples_seed{seed}.png")
        self.grids[seed] = grid
        self.tracker.log_artifact(run_id, grid)
        self.tracker.log_image(self.trial_run_id, grid, key="samples", step=seed)  # the trial's image view, per seed
        self.tracker.finish(run_id)

    def close(self) -> None:
        """Removes the trial's temporary folder (sample grids already uploaded)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def fail_open_seed_runs(self, error: BaseException) -> None:
        self.flush(patient=False)  # best effort: the curves up to the failure
        for run_id in self.seed_runs.values():
            if self.tracker.client.get_run(run_id).info.status == "RUNNING":
                self.tracker.fail(run_id, error)


def train_trial(config: dict[str, Any], *, context: SweepContext, datasets: Mapping[str, ImageDataset],
                group: str, step: str | None = None, role: str = "grid") -> None:
    """Runs one trial: ``config`` holds the sampled params (dotted keys) and, in a ladder grid, the step;
    a confirmation trial's config also holds the one fresh seed it runs instead of ``seeds``.

    A :class:`RaysynthError` (a bad sampled value, a non-finite loss or output) fails the trial at once:
    its run is closed FAILED with the reason and the traceback, and Tune gets a final result carrying
    :data:`FAILURE` instead of an exception, so the deterministic failure is not retried. Any other
    exception (a lost node, a killed worker, an unknown bug) is raised for Tune to retry from the
    trial's checkpoint (``tune.max_failures``)."""
    sampled = {k: v for k, v in config.items() if k not in ("step", CONFIRM_SEED)}
    step_name = config.get("step", step)
    base = context.step_specs[step_name]
    tracker = context.tracker()
    trial_id = tune.get_context().get_trial_id()
    key = trial_key(context.sweep_id, group, trial_id)
    tags = {"method": base.method, "dataset": base.dataset.name, "sweep_id": context.sweep_id,
            "git_commit": context.git_commit, "trial_id": trial_id, "raysynth.role": role}
    if context.ladder:
        tags["ablation_step"] = str(step_name)
    name = _run_name(step_name, sampled, context.ladder)
    if CONFIRM_SEED in config:
        name = f"{name} (confirmation, seed {config[CONFIRM_SEED]})"
    tags["mlflow.note.content"] = _description(step_name, sampled, config.get(CONFIRM_SEED), role)
    run = tracker.open_run(context.experiment_id, key, name=name, kind="trial", tags=tags, parent_run_id=context.parent_run_id)
    run_id = run.info.run_id
    if run.info.status == "FINISHED":  # finished before an interruption: report, do not train again
        tune.report(dict(run.data.metrics))
        return
    if run.data.tags.get("deterministic_failure") == "true":  # failed deterministically before: it would again
        tracker.finish(run_id, "FAILED")
        tune.report({FAILURE: run.data.tags.get("error", "failed")})
        return
    attempts = int(run.data.tags.get("attempts", "0")) + 1
    node_id = ray.get_runtime_context().get_node_id()
    history = run.data.tags.get("node_history", "")
    tracker.set_tags(run_id, {"attempts": str(attempts), "node_id": node_id, "node_history": f"{history} {node_id}".strip()})
    logger = None
    try:
        spec = base.with_params(sampled)
        if CONFIRM_SEED in config:
            spec = spec.with_seeds([config[CONFIRM_SEED]])
        data = redact(spec.to_data())
        tracker.log_params(run_id, {**readable_params(data), "seeds": spec.seeds})
        if attempts == 1:
            tracker.log_text(run_id, yaml.safe_dump(data, sort_keys=False), "config.yaml")
        resources = tune.get_context().get_trial_resources()
        torch.set_num_threads(max(1, int(resources.required_resources.get("CPU", 1))) if resources else 1)
        checkpointer = Checkpointer(_restored_state(), _save_to_tune, spec.tune.checkpoint_interval_s)
        if checkpointer.state.step > 0:
            _log(f"[trial] restored from a checkpoint at step {checkpointer.state.step}")
            tracker.set_tags(run_id, {"restored_from_step": str(checkpointer.state.step)})
        logger = TrialLogger(tracker, context.experiment_id, run_id, key, tags)
        metrics = run_trial(spec, datasets[spec.dataset.name], logger, log=_log, checkpointer=checkpointer)
        logger.flush(patient=True)
        tracker.log_metrics(run_id, rounded(metrics))
        if logger.grids:  # empty when every seed finished before a restart: their grids are in the seed runs
            first_grid = logger.grids[min(logger.grids)]
            tracker.log_artifact(run_id, first_grid.rename(first_grid.with_name("samples.png")))
        tracker.finish(run_id)
    except RaysynthError as error:  # deterministic: a retry under the same seed fails the same way
        if logger is not None:
            logger.fail_open_seed_runs(error)
        tracker.set_tags(run_id, {"deterministic_failure": "true"})
        tracker.fail(run_id, error, traceback.format_exc())
        _log(f"[trial] failed, not retried: {one_line(error)}")
        tune.report({FAILURE: one_line(error)})
        return
    except Exception as error:  # not BaseException: Ray stops a trial (ASHA) with SystemExit; the driver closes it
        if logger is not None:
            logger.fail_open_seed_runs(error)
        tracker.fail(run_id, error, traceback.format_exc())
        raise
    finally:
        if logger is not None:
            logger.flush(patient=False)  # best effort: a stopped trial's last curves (Tune stops it with SystemExit)
            logger.close()
    tune.report(metrics)


def _description(step: str | None, sampled: Mapping[str, Any], confirm_seed: int | None, role: str) -> str:
    """The trial run's description (MLflow shows it on the run page)."""
    lines = [f"**{role}** trial" + (f" of ablation step `{step}`" if step and step != "main" else "")]
    if sampled:
        lines.append("sampled: " + ", ".join(f"`{k}` = {v:.4g}" if isinstance(v, float) else f"`{k}` = {v}"
                                             for k, v in sampled.items()))
    if confirm_seed is not None:
        lines.append(f"confirmation of the selected configuration on the fresh seed {confirm_seed}")
    return "\n\n".join(lines)


def _restored_state() -> TrialState:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return TrialState()
    with checkpoint.as_directory() as folder:
        return TrialState.read(Path(folder))


def _save_to_tune(state: TrialState) -> None:
    with tempfile.TemporaryDirectory(prefix="raysynth-checkpoint-") as folder:
        state.write(Path(folder))
        tune.report({"checkpoint/step": state.step}, checkpoint=tune.Checkpoint.from_directory(folder))


def _run_name(step: str | None, sampled: Mapping[str, Any], ladder: bool) -> str:
    parts = [str(step)] if ladder else []
    parts += [f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}" for k, v in sampled.items()]
    return " ".join(parts)[:200] or "trial"
