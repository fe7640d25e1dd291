"""``raysynth sweep``: the space's trials on Ray Tune, with Optuna, ASHA and MLflow.

Trial groups: the ablation steps without a search run together as one grid (so they use every
concurrent slot); a step with a ``search:`` runs its own Optuna search of ``tune.num_samples``
trials. Each group is one Tune experiment under ``<tune.storage>/<experiment>/<sweep_id>/``, which
is what ``--resume`` restores (with the searcher's state).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from raysynth.errors import RaysynthError
from raysynth.spec import SweepSpec, flatten, steps
from raysynth.tracking import Tracker, git_commit, redact

MAIN_STEP = "main"  # the step name of a space without an ablation ladder


@dataclass(frozen=True)
class TrialGroup:
    name: str
    step_names: list[str]
    search_spec: SweepSpec | None = None  # set when the group is one step's Optuna search


@dataclass
class SweepOutcome:
    sweep_id: str
    parent_run_id: str
    results: list[dict] = field(default_factory=list)  # one per trial: step, config, metrics, error


def plan_groups(spec: SweepSpec) -> tuple[dict[str, SweepSpec], list[TrialGroup]]:
    """The specs of every step by name, and the groups of trials that run them."""
    step_specs = {(name if name is not None else MAIN_STEP): step for name, step in steps(spec)}
    unsearched = [name for name, step in step_specs.items() if not step.search]
    groups = [TrialGroup("grid", unsearched)] if unsearched else []
    groups += [TrialGroup(f"search-{name}", [name], step) for name, step in step_specs.items() if step.search]
    return step_specs, groups


def _new_sweep_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _find_interrupted_sweep(tracker: Tracker, experiment_id: str, experiment: str) -> tuple[str, str]:
    runs = [r for r in tracker.runs(experiment_id, "sweep") if r.info.status != "FINISHED"]
    if not runs:
        raise RaysynthError(f"`--resume`: experiment `{experiment}` has no interrupted sweep in {tracker.tracking_uri}; "
                            "run the sweep without --resume")
    latest = max(runs, key=lambda r: r.info.start_time)
    return latest.data.tags["sweep_id"], latest.info.run_id


def run_sweep(spec: SweepSpec, *, address: str | None = None, resume: bool = False,
              log: Callable[[str], None] = print) -> SweepOutcome:
    """Runs (or with ``resume`` continues) the sweep of ``spec`` and returns its trials' results."""
    from raysynth.runner import load_spec_dataset

    step_specs, groups = plan_groups(spec)
    datasets = {}  # loaded once by the driver, shared with every trial through the object store
    for step in step_specs.values():
        if step.dataset.name not in datasets:
            datasets[step.dataset.name] = load_spec_dataset(step)

    tracker = Tracker(spec.tracking.uri, log=log)
    commit = git_commit(Path(__file__).resolve().parent)
    experiment_id = tracker.experiment_id(spec.experiment)
    if resume:
        sweep_id, parent_run_id = _find_interrupted_sweep(tracker, experiment_id, spec.experiment)
        tracker.client.update_run(parent_run_id, status="RUNNING")
        log(f"resuming sweep {sweep_id} of experiment `{spec.experiment}`")
    else:
        sweep_id = _new_sweep_id()
        parent = tracker.open_run(experiment_id, f"sweep:{sweep_id}", name=f"sweep {sweep_id}", kind="sweep",
                                  tags={"sweep_id": sweep_id, "method": spec.method, "dataset": spec.dataset.name,
                                        "git_commit": commit, "ladder": str(bool(spec.ablation))})
        parent_run_id = parent.info.run_id
        data = redact(spec.to_data())
        tracker.log_params(parent_run_id, {k: v for k, v in flatten(data).items() if not k.startswith(("ablation", "search"))})
        tracker.log_text(parent_run_id, yaml.safe_dump(data, sort_keys=False), "sweep.yaml")
        log(f"sweep {sweep_id}: experiment `{spec.experiment}`, {len(step_specs)} step(s), {len(spec.seeds)} seed(s), "
            f"tracking {spec.tracking.uri}")

    from raysynth.tuning.trainable import SweepContext

    context = SweepContext(sweep_id=sweep_id, experiment_id=experiment_id, parent_run_id=parent_run_id,
                           tracking_uri=spec.tracking.uri, git_commit=commit,
                           ladder=bool(spec.ablation), step_specs=step_specs)
    outcome = SweepOutcome(sweep_id, parent_run_id)
    _init_ray(address, log)
    try:
        for group in groups:
            outcome.results += _run_group(spec, group, context, datasets, resume, log)
    except BaseException:
        tracker.set_tags(parent_run_id, {"interrupted": "true"})
        raise
    _summarize(spec, outcome, log)
    try:
        from raysynth.report import write_report

        out_dir = Path(spec.tune.storage) / spec.experiment / sweep_id / "report" if "://" not in spec.tune.storage \
            else Path("reports") / spec.experiment
        write_report(spec.experiment, tracking_uri=spec.tracking.uri, out_dir=out_dir, sweep_id=sweep_id, log=log)
    except RaysynthError as error:
        log(f"report skipped: {error}")
    tracker.finish(parent_run_id)
    uri = spec.tracking.uri
    log(f"\nopen the results:\n  raysynth ui --tracking-uri {uri}\n  raysynth report --experiment {spec.experiment} "
        f"--tracking-uri {uri}")
    return outcome


def _init_ray(address: str | None, log: Callable[[str], None]) -> None:
    import ray

    # Tune saves its experiment state at most this often; short, so an interrupted sweep loses little
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")
    # intermediate results (training losses, probe accuracies) do not carry the final objective
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    if ray.is_initialized():
        return
    # trials retry MLflow calls themselves (and buffer metrics); the client's own long HTTP retries
    # would freeze a trial for minutes while a tracking server restarts
    env_vars = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        if os.environ.get(name):  # basic auth for the tracking server, passed on to the workers, never logged
            env_vars[name] = os.environ[name]
    runtime_env = {"env_vars": env_vars}
    if address:
        ray.init(address=address, log_to_driver=True, runtime_env=runtime_env)
    else:
        ray.init(include_dashboard=False, log_to_driver=True, runtime_env=runtime_env)
    log(f"Ray: {ray.cluster_resources()}")


def _run_group(spec: SweepSpec, group: TrialGroup, context, datasets, resume: bool, log) -> list[dict]:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from raysynth.tuning.callbacks import TrialEvents
    from raysynth.tuning.search import make_searcher
    from raysynth.tuning.trainable import train_trial

    storage = f"{spec.tune.storage.rstrip('/')}/{spec.experiment}/{context.sweep_id}"
    resources = spec.tune.resources_per_trial
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, context=context, datasets=datasets, group=group.name,
                             step=group.step_names[0] if group.search_spec is not None else None),
        {"cpu": resources.cpu, "gpu": resources.gpu, **resources.custom},
    )
    path = f"{storage}/{group.name}"
    if resume and tune.Tuner.can_restore(path):
        log(f"[{group.name}] restoring from {path}")
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False, restart_errored=False)
    else:
        if spec.tune.scheduler.kind == "asha":
            # max_t one past the last probe: ASHA stops a trial that reaches max_t, and a trial that
            # survived every rung must go on to its final evaluation
            scheduler = ASHAScheduler(time_attr="probe/epoch", metric="probe/accuracy", mode="max",
                                      max_t=spec.evaluation.epochs + 1, grace_period=spec.tune.scheduler.grace_period,
                                      reduction_factor=spec.tune.scheduler.reduction_factor)
        else:
            scheduler = FIFOScheduler()
        if group.search_spec is not None:
            search_alg, param_space, num_samples = make_searcher(group.search_spec), None, spec.tune.num_samples
        else:
            search_alg, param_space, num_samples = None, {"step": tune.grid_search(group.step_names)}, 1
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            # reuse_actors: a new trial reuses a finished trial's worker process instead of paying
            # torch/mlflow imports again; trials keep no global state, so nothing leaks between them
            tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler, num_samples=num_samples,
                                        max_concurrent_trials=spec.tune.max_concurrent, reuse_actors=True),
            run_config=tune.RunConfig(
                name=group.name, storage_path=storage,
                failure_config=tune.FailureConfig(max_failures=spec.tune.max_failures),
                callbacks=[TrialEvents(context, group.name, spec.tune.metrics, log)],
                verbose=1,
            ),
        )
    grid = tuner.fit()
    results = []
    for result in grid:
        config = dict(result.config or {})
        results.append({"group": group.name, "step": config.pop("step", group.step_names[0]), "config": config,
                        "metrics": dict(result.metrics or {}), "error": str(result.error) if result.error else None})
    return results


def _summarize(spec: SweepSpec, outcome: SweepOutcome, log) -> None:
    metric, mode = spec.tune.metrics[0], spec.tune.modes[0]
    done = [r for r in outcome.results if r["error"] is None and metric in r["metrics"]]
    failed = [r for r in outcome.results if r["error"] is not None]
    log(f"\n{len(done)} trial(s) finished, {len(failed)} failed, "
        f"{len(outcome.results) - len(done) - len(failed)} stopped early")
    if done:
        best = (max if mode == "max" else min)(done, key=lambda r: r["metrics"][metric])
        m = best["metrics"]
        log(f"best: step `{best['step']}` {best['config'] or ''} {metric} {m[metric]:.4g}"
            + "".join(f", {k} {m[k]:.4g}" for k in ("accuracy", "cas", "fid", "gain") if k in m and k != metric))
