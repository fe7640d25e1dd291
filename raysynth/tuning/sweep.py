"""``raysynth sweep``: the space's trials on Ray Tune, with Optuna, ASHA and MLflow.

Trial groups: the ablation steps without a search run together as one grid (so they use every
concurrent slot); a step with a ``search:`` runs its own Optuna search of ``tune.num_samples``
trials, whose Optuna study persists in ``tune.study_storage``. After a search, its selected
configuration (best by the validation metric) runs again on ``tune.confirm_seeds`` as a confirmation
group. Each group is one Tune experiment under ``<tune.storage>/<experiment>/<sweep_id>/``, which
is what ``--resume`` restores (with the searcher's state).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import yaml

from raysynth.errors import RaysynthError, Terminated
from raysynth.metrics import PROBE_METRIC, PROBE_TIME
from raysynth.spec import SweepSpec, flatten
from raysynth.secrets import TRACKING_URI_ENV, has_credentials, redact, redact_text, redact_uri
from raysynth.tracking import Tracker, git_commit, one_line

MAIN_STEP = "main"  # the step name of a space without an ablation ladder
CONFIRM_SEED = "confirm_seed"  # the config key of a confirmation trial's seed
FAILURE = "failure"  # the final result key of a trial that failed deterministically: its one-line reason


@dataclass(frozen=True)
class TrialGroup:
    name: str
    step_names: list[str]
    search_spec: SweepSpec | None = None  # set when the group is one step's Optuna search
    role: str = "grid"  # grid | search | confirmation
    selected: dict | None = None  # confirmation: the sampled values of the selected trial


@dataclass
class SweepOutcome:
    sweep_id: str
    parent_run_id: str
    results: list[dict] = field(default_factory=list)  # one per trial: step, config, metrics, error

    @property
    def failures(self) -> list[dict]:
        """The trials that failed (a deterministic failure, or an infrastructure one after its retries)."""
        return [r for r in self.results if r["error"] is not None]


def plan_groups(spec: SweepSpec) -> tuple[dict[str, SweepSpec], list[TrialGroup]]:
    """The specs of every step by name, and the groups of trials that run them."""
    step_specs = {(name if name is not None else MAIN_STEP): step for name, step in spec.steps()}
    unsearched = [name for name, step in step_specs.items() if not step.search]
    groups = [TrialGroup("grid", unsearched)] if unsearched else []
    groups += [TrialGroup(f"search-{name}", [name], step, role="search") for name, step in step_specs.items() if step.search]
    return step_specs, groups


def select_best(results: list[dict], metric: str, mode: str) -> dict | None:
    """The finished trial with the best ``metric`` (a validation metric unless tune.select_on_test); of
    equal ones the first by trial id, as the report selects."""
    done = sorted((r for r in results if r["error"] is None and metric in r["metrics"]),
                  key=lambda r: str(r["metrics"].get("trial_id", "")))
    if not done:
        return None
    return (max if mode == "max" else min)(done, key=lambda r: r["metrics"][metric])


def confirmation_group(search: TrialGroup, results: list[dict]) -> TrialGroup | None:
    """The selected configuration of a finished search, to run on ``tune.confirm_seeds``."""
    spec = search.search_spec
    best = select_best(results, spec.tune.metrics[0], spec.tune.modes[0])
    if best is None or not spec.tune.confirm_seeds:
        return None
    return TrialGroup(f"confirm-{search.step_names[0]}", search.step_names, spec, role="confirmation",
                      selected=dict(best["config"]))


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
              log: Callable[[str], None] = print, verbose: bool = False, command: str = "") -> SweepOutcome:
    """Runs (or with ``resume`` continues) the sweep of ``spec`` and returns its trials' results, failures
    included. Without ``address`` it starts its own local Ray instance (never one found on the machine).

    An interrupt (Ctrl-C; SIGTERM, as :class:`raysynth.errors.Terminated`) propagates as KeyboardInterrupt
    once the sweep run is tagged interrupted and closed KILLED with its open trial runs, so ``--resume``
    continues it."""
    from raysynth.runner import load_spec_dataset

    step_specs, groups = plan_groups(spec)
    datasets = {}  # loaded once by the driver, shared with every trial through the object store
    for step in step_specs.values():
        if step.dataset.name not in datasets:
            datasets[step.dataset.name] = load_spec_dataset(step)

    if not verbose:
        _quiet_ray_logging(None)  # until the sweep's folder (and its driver.log) is known
    os.environ.update(QUIET_MLFLOW)
    tracker = Tracker(spec.tracking.uri, log=log)
    commit = git_commit(Path(__file__).resolve().parent)
    experiment_id = tracker.experiment_id(spec.experiment)
    if resume:
        sweep_id, parent_run_id = _find_interrupted_sweep(tracker, experiment_id, spec.experiment)
        tracker.client.update_run(parent_run_id, status="RUNNING")
        log(f"resuming sweep {sweep_id} of experiment `{spec.experiment}`")
    else:
        from raysynth.tuning.search import study_name

        sweep_id = _new_sweep_id()
        tags = {"sweep_id": sweep_id, "method": spec.method, "dataset": spec.dataset.name, "git_commit": commit,
                "ladder": str(bool(spec.ablation)), "selection_metric": ",".join(spec.tune.metrics),
                "select_on_test": str(spec.tune.select_on_test).lower()}
        searched = [group.step_names[0] for group in groups if group.role == "search"]
        if searched:
            tags["study_storage"] = redact_uri(spec.tune.study_storage)
            tags.update({f"optuna_study.{step}": study_name(spec.experiment, sweep_id, step) for step in searched})
        tags["mlflow.note.content"] = _sweep_description(spec, step_specs, command)
        parent = tracker.open_run(experiment_id, f"sweep:{sweep_id}", name=f"sweep {sweep_id}", kind="sweep", tags=tags)
        parent_run_id = parent.info.run_id
        tracker.describe_experiment(experiment_id, f"raysynth sweeps of `{spec.method}` on `{spec.dataset.name}`: one run "
                                    "per sweep, a run per trial under it, a run per seed under each trial. To compare "
                                    "steps: filter `tags.raysynth.kind = 'trial'` and group by the `ablation_step` tag; "
                                    "select on `val_*` metrics, report test metrics.")
        data = redact(spec.to_data())
        tracker.log_params(parent_run_id, readable_params(data))
        tracker.log_text(parent_run_id, yaml.safe_dump(data, sort_keys=False), "sweep.yaml")
        log(f"sweep {sweep_id}: experiment `{spec.experiment}`, {len(step_specs)} step(s), {len(spec.seeds)} seed(s), "
            f"tracking {redact_uri(spec.tracking.uri)}")

    from raysynth.plugins import read as read_plugins
    from raysynth.tuning.trainable import SweepContext

    if has_credentials(spec.tracking.uri):  # a local instance's workers inherit the driver's environment
        os.environ[TRACKING_URI_ENV] = spec.tracking.uri
    context = SweepContext(sweep_id=sweep_id, experiment_id=experiment_id, parent_run_id=parent_run_id,
                           tracking_uri=redact_uri(spec.tracking.uri), git_commit=commit, ladder=bool(spec.ablation),
                           step_specs={name: without_credentials(step) for name, step in step_specs.items()},
                           plugins=read_plugins(spec.plugins))
    outcome = SweepOutcome(sweep_id, parent_run_id)
    sweep_folder = _local_folder(spec, sweep_id)
    _init_ray(address, log, verbose, sweep_folder)
    try:
        # after ray.init, which installs its own SIGTERM handler (kill the node, exit 1, leave the runs RUNNING):
        # `kill` or a scheduler's preemption stops the sweep as Ctrl-C does, resumable
        with terminate_as_interrupt():
            for group in groups:
                results = _run_group(spec, group, context, datasets, resume, log, verbose)
                outcome.results += results
                confirmation = confirmation_group(group, results) if group.role == "search" else None
                if confirmation is not None:
                    log(f"[{confirmation.name}] the selected configuration {confirmation.selected} on the confirmation "
                        f"seeds {group.search_spec.tune.confirm_seeds}")
                    outcome.results += _run_group(spec, confirmation, context, datasets, resume, log, verbose)
    except BaseException as error:
        # Ray first: a trial still starting could otherwise open its run after the open runs were closed
        _shutdown_ray(address)
        _close_interrupted(tracker, experiment_id, sweep_id, parent_run_id, error)
        raise
    _shutdown_ray(address)
    _summarize(spec, outcome, tracker, log)
    try:
        from raysynth.report import write_report

        out_dir = sweep_folder / "report" if sweep_folder is not None else Path("reports") / spec.experiment
        write_report(spec.experiment, tracking_uri=spec.tracking.uri, out_dir=out_dir, sweep_id=sweep_id, log=log)
    except RaysynthError as error:
        log(f"report skipped: {error}")
    tracker.finish(parent_run_id)
    # under `uv run` the venv's raysynth is on PATH only for this process: the user's shell needs `uv run`
    direct = shutil.which("raysynth") and not os.environ.get("UV_RUN_RECURSION_DEPTH")
    command = "raysynth" if direct else "uv run raysynth"
    uri = redact_uri(spec.tracking.uri)
    runs_view = f"#/experiments/{experiment_id}/runs?searchFilter=tags.%60raysynth.kind%60%20%3D%20%27trial%27"
    log(f"\nopen the results:\n  {command} ui --tracking-uri {uri}   (then {runs_view}, group by ablation_step)\n"
        f"  {command} report --experiment {spec.experiment} --tracking-uri {uri}")
    return outcome


def readable_params(data: dict) -> dict:
    """A spec's data as MLflow params: what decides its trials, without the ladder, the search ranges
    (the sweep's own bookkeeping, in `sweep.yaml`) or empty sections."""
    flat = flatten({k: v for k, v in data.items() if k not in ("ablation", "search")})
    return {k: v for k, v in flat.items() if v not in ({}, [], None)}


def _sweep_description(spec: SweepSpec, step_specs: dict[str, SweepSpec], command: str) -> str:
    """The sweep run's description: what ran, on what budget, and the command that reproduces it."""
    lines = [f"**{spec.method}** on **{spec.dataset.name}** ({spec.dataset.images_per_class} images per class), "
             f"seeds {spec.seeds}, steps: {', '.join(step_specs)}",
             f"budget: {spec.budget.epochs} method epochs; evaluation: {spec.evaluation.num_eval} x {spec.evaluation.classifier} "
             f"for {spec.evaluation.epochs} epochs; selection on {', '.join(spec.tune.metrics)}"]
    if command:
        lines.append(f"reproduce: `{command}`")
    return "\n\n".join(lines)


def _local_folder(spec: SweepSpec, sweep_id: str) -> Path | None:
    """The sweep's folder under a local ``tune.storage`` (driver log, report); None for remote storage."""
    if "://" in spec.tune.storage:
        return None
    return Path(spec.tune.storage) / spec.experiment / sweep_id


def _close_interrupted(tracker: Tracker, experiment_id: str, sweep_id: str, parent_run_id: str, error: BaseException) -> None:
    """An interrupted sweep: its run KILLED and tagged interrupted, the trial and seed runs in flight KILLED
    (``--resume`` reopens them). A second Ctrl-C while this runs is ignored: the closing must finish."""
    with _stop_signals_ignored(), contextlib.suppress(Exception):  # the store may be what failed: the run stays resumable
        quick = replace(tracker, retry_seconds=5)
        quick.set_tags(parent_run_id, {"interrupted": "true", "interrupted_by": type(error).__name__})
        for kind in ("trial", "seed"):
            for run in quick.runs(experiment_id, kind, f"tags.sweep_id = '{sweep_id}' and attributes.status = 'RUNNING'"):
                quick.finish(run.info.run_id, "KILLED")
        quick.finish(parent_run_id, "KILLED")


@contextlib.contextmanager
def terminate_as_interrupt():
    """Within: SIGTERM raises :class:`Terminated`; after: the handler as before. Outside the main thread
    (where Python cannot set handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def stop(signum, frame):
        received.append(signum)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except KeyboardInterrupt as interrupt:
        if received and not isinstance(interrupt, Terminated):
            # Ray's core turns any exception of a signal handler during a blocking call (ray.get, a wait)
            # into a plain KeyboardInterrupt
            raise Terminated() from interrupt
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _stop_signals_ignored():
    """Within: Ctrl-C and SIGTERM are ignored (closing runs, shutting Ray down must finish); after: as before."""
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def without_credentials(spec: SweepSpec) -> SweepSpec:
    """``spec`` as it may be pickled into Tune's state and shipped to workers: its tracking URI redacted
    (the trial finds the real one in its environment, :func:`raysynth.secrets.worker_tracking_uri`)."""
    if not has_credentials(spec.tracking.uri):
        return spec
    return spec.model_copy(update={"tracking": spec.tracking.model_copy(update={"uri": redact_uri(spec.tracking.uri)})})


def _shutdown_ray(address: str | None) -> None:
    """Stops the local Ray instance this sweep started (all its processes) before the driver exits; a
    second Ctrl-C (or SIGTERM) during the shutdown is ignored so that nothing is left orphaned."""
    import ray

    if not ray.is_initialized():
        return
    with _stop_signals_ignored():
        ray.shutdown()


# MLflow prints "View run at <server URL>" on every finished run (the URL would carry the credentials)
QUIET_MLFLOW = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


def _init_ray(address: str | None, log: Callable[[str], None], verbose: bool = False,
              sweep_folder: Path | None = None) -> None:
    import ray

    # Tune saves its experiment state at most this often; short, so an interrupted sweep loses little
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")
    # intermediate results (training losses, probe accuracies) do not carry the final objective
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    # Ctrl-C is raysynth's: Tune's own handler swallows the first one and returns as if the sweep ended
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    if not verbose:  # Ray's and Tune's own logging goes to the sweep's driver.log, not the terminal
        _quiet_ray_logging(sweep_folder)
    if ray.is_initialized():
        return
    # trials retry MLflow calls themselves (and buffer metrics); the client's own long HTTP retries
    # would freeze a trial for minutes while a tracking server restarts
    env_vars = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", **QUIET_MLFLOW}
    # Tracking credentials never travel in the runtime environment (Ray's agent logs it whole): a local
    # instance's workers inherit the driver's environment; a cluster's nodes set their own (docs/cluster.md)
    runtime_env = {"env_vars": env_vars}
    level = logging.INFO if verbose else logging.WARNING
    if address:
        ray.init(address=address, log_to_driver=verbose, runtime_env=runtime_env, logging_level=level)
    else:  # "local": a new instance of its own, whatever RAY_ADDRESS or a running `ray start` says
        ray.init(address="local", include_dashboard=False, log_to_driver=verbose, runtime_env=runtime_env,
                 logging_level=level)
    if not verbose:
        _quiet_ray_logging(sweep_folder)  # ray.init configures its loggers again
    resources = ray.cluster_resources()
    shown = ", ".join(f"{k} {v:g}" for k, v in sorted(resources.items())
                      if not k.startswith(("node:", "memory", "object_store_memory")))
    where = f"cluster at {address}" if address else "a local instance of its own"
    logs = getattr(getattr(ray._private.worker, "_global_node", None), "get_logs_dir_path", lambda: None)()
    log(f"Ray: {where} ({shown})" + (f"; worker logs in {logs}" if logs and not verbose else ""))


class RedactingFormatter(logging.Formatter):
    """Log lines without the credentials of any URL they mention (MLflow and Ray print store URIs)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def _quiet_ray_logging(sweep_folder: Path | None) -> None:
    """Ray's, Tune's, MLflow's and Optuna's loggers write to ``<sweep folder>/driver.log`` instead of the
    terminal; Tune prints no tables or banners (its old reporter at verbosity 0)."""
    import warnings

    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the new output engine prints banners whatever the verbosity
    warnings.filterwarnings("ignore", module=r"(ray|optuna)(\..*)?$")
    handlers: list[logging.Handler] = [logging.NullHandler()]  # not Python's last-resort printer
    if sweep_folder is not None:
        sweep_folder.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(sweep_folder / "driver.log")
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(handler)
    import optuna

    optuna.logging.disable_default_handler()  # optuna adds its own stderr handler on first use
    for name in ("ray", "ray.tune", "ray.train", "ray.data", "mlflow", "optuna", "alembic"):
        logger = logging.getLogger(name)
        logger.handlers = list(handlers)
        logger.propagate = False


def _run_group(spec: SweepSpec, group: TrialGroup, context, datasets, resume: bool, log, verbose: bool = False) -> list[dict]:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from raysynth.tuning.search import make_searcher, study_name
    from raysynth.tuning.trainable import train_trial

    storage = f"{spec.tune.storage.rstrip('/')}/{spec.experiment}/{context.sweep_id}"
    resources = spec.tune.resources_per_trial
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, context=context, datasets=datasets, group=group.name,
                             step=group.step_names[0] if group.search_spec is not None else None, role=group.role),
        {"cpu": resources.cpu, "gpu": resources.gpu, **resources.custom},
    )
    path = f"{storage}/{group.name}"
    events = _events(spec, group, context, log, verbose)
    if resume and tune.Tuner.can_restore(path):
        log(f"[{group.name}] restoring from {path}")
        tuner = restore_tuner(path, trainable, events)
    else:
        if spec.tune.scheduler.kind == "asha" and group.role == "search":
            # only a search's trials compete: a ladder's steps and a confirmation's seeds all run to the end
            # max_t one past the last probe: ASHA stops a trial that reaches max_t, and a trial that
            # survived every rung must go on to its final evaluation
            scheduler = ASHAScheduler(time_attr=PROBE_TIME, metric=PROBE_METRIC, mode="max",
                                      max_t=spec.evaluation.epochs + 1, grace_period=spec.tune.scheduler.grace_period,
                                      reduction_factor=spec.tune.scheduler.reduction_factor)
        else:
            scheduler = FIFOScheduler()
        if group.role == "search":
            name = study_name(spec.experiment, context.sweep_id, group.step_names[0])
            search_alg, param_space, num_samples = make_searcher(group.search_spec, name), None, spec.tune.num_samples
        elif group.role == "confirmation":  # one trial per fresh seed, so the seeds use every slot
            param_space = {**group.selected, CONFIRM_SEED: tune.grid_search(list(group.search_spec.tune.confirm_seeds))}
            search_alg, num_samples = None, 1
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
                # Tune keeps every checkpoint unless told (2 MB each for expansive on CPU, one per minute per
                # trial: 200 MB per ladder); two, since its saved state may still name the one before the newest
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                callbacks=[events],
                verbose=0,  # the terminal shows raysynth's lines (TrialEvents), not Tune's tables
            ),
        )
    grid = tuner.fit()
    results = []
    for result in grid:
        config = dict(result.config or {})
        config.pop(CONFIRM_SEED, None)
        metrics = dict(result.metrics or {})
        error = metrics.get(FAILURE) or (failure_reason(result.error) if result.error else None)
        results.append({"group": group.name, "role": group.role, "step": config.pop("step", group.step_names[0]), "config": config,
                        "metrics": metrics, "error": error})
    return results


def restore_tuner(path: str, trainable, events):
    """The interrupted group's Tuner, reporting through ``events``: the resuming command's TrialEvents.
    Tune pickles the callbacks with the experiment, so a restored one would be the interrupted sweep's
    object under today's class (a resume after an upgrade then fails on an attribute its code never set)."""
    from ray import tune

    tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False, restart_errored=False)
    # Tune has no public way to replace restored callbacks (ray-project/ray#41364); the run config it
    # returns is the one fit() will use
    tuner._local_tuner.get_run_config().callbacks = [events]
    return tuner


def _events(spec: SweepSpec, group: TrialGroup, context, log, verbose: bool):
    from raysynth.tuning.callbacks import TrialEvents

    confirm_seeds = (group.search_spec or spec).tune.confirm_seeds  # a ladder step may set its own
    total = {"search": spec.tune.num_samples, "confirmation": len(confirm_seeds)}.get(group.role, len(group.step_names))
    resources = spec.tune.resources_per_trial
    need = f"{resources.cpu:g} CPU" + (f", {resources.gpu:g} GPU" if resources.gpu else "") \
        + "".join(f", {v:g} {k}" for k, v in resources.custom.items())
    waiting = f"a free slot ({need} per trial, at most {spec.tune.max_concurrent} at once)"
    if group.role == "search":
        waiting += " or the searcher"
    return TrialEvents(context, group.name, spec.tune.metrics[0], spec.tune.modes[0], total, log, verbose, waiting)


def failure_reason(error: object) -> str:
    """One line for an error Ray carried from a worker (an exception, or its text): the original
    exception, not Ray's wrapper and its traceback."""
    seen = set()
    while isinstance(error, BaseException) and id(error) not in seen:
        seen.add(id(error))
        inner = getattr(error, "cause", None) or error.__cause__
        if not isinstance(inner, BaseException):
            break
        error = inner
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 or not isinstance(error, BaseException):  # a traceback as text: its last line is the exception
        return lines[-1][:500] if lines else "unknown error"
    return one_line(error, 500)


def failure_table(failed: list[dict]) -> str:
    """The failed trials as a Markdown table: step, sampled parameters, one-line reason."""
    lines = ["| step | parameters | reason |", "|---|---|---|"]
    for result in failed:
        shown = ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                          for k, v in result["config"].items()) or "-"
        reason = str(result["error"]).replace("|", "/")[:300]
        lines.append(f"| {result['step']} | {shown} | {reason} |")
    return "\n".join(lines)


def _summarize(spec: SweepSpec, outcome: SweepOutcome, tracker: Tracker, log) -> None:
    metric, mode = spec.tune.metrics[0], spec.tune.modes[0]
    done = [r for r in outcome.results if r["error"] is None and "accuracy" in r["metrics"]]
    failed = outcome.failures
    log(f"\n{len(done)} trial(s) finished, {len(failed)} failed, "
        f"{len(outcome.results) - len(done) - len(failed)} stopped early")
    if failed:
        log(failure_table(failed))
    summary = {}
    best = select_best([r for r in outcome.results if r["role"] != "confirmation"], metric, mode)
    if best is not None:  # the sweep run's headline in MLflow's runs table
        summary[f"best/{metric}"] = best["metrics"][metric]
    for step in dict.fromkeys(r["step"] for r in outcome.results if r["role"] == "search"):
        best = select_best([r for r in outcome.results if r["step"] == step and r["role"] == "search"], metric, mode)
        if best is None:
            continue
        m = best["metrics"]
        log(f"selected ({metric}, best of the search): step `{step}` {best['config']} {metric} {m[metric]:.4g}")
        summary[f"selected/{step}/{metric}"] = m[metric]
        confirmed = [r["metrics"]["accuracy"] for r in outcome.results
                     if r["step"] == step and r["role"] == "confirmation" and "accuracy" in r["metrics"]]
        if confirmed:
            from raysynth.stats import summarize, t_interval

            low, high = t_interval(confirmed)
            log(f"confirmed on {len(confirmed)} fresh seed(s): test accuracy {summarize(confirmed).mean:.2f} %"
                + (f" [95 % CI {low:.2f}, {high:.2f}]" if len(confirmed) > 1 else ""))
            summary[f"confirmed/{step}/accuracy"] = summarize(confirmed).mean
    if summary:
        tracker.log_metrics(outcome.parent_run_id, summary)
