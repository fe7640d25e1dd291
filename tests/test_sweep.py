"""Sweeps on real local Ray with a real MLflow store (and a real `mlflow server`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import REPO, run_cli

pytestmark = pytest.mark.slow

TINY = {"budget": {"epochs": 1}, "evaluation": {"classifier": "convnet", "width": 16, "epochs": 2, "num_eval": 1,
                                                 "probe_every": 1},
        "tune": {"max_concurrent": 2, "resources_per_trial": {"cpu": 1}}}


def space(tmp_path: Path, **keys) -> Path:
    data = {"experiment": "t", "method": "real", "dataset": {"name": "digits", "images_per_class": 5}, "seeds": [0],
            **TINY, **keys}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def sweep(tmp_path: Path, path: Path, cache_dir: Path, *sets: str, uri: str | None = None, timeout: float = 600,
          only: tuple[str, ...] = ()):
    uri = uri or f"sqlite:///{tmp_path}/m.db"
    args = ["sweep", str(path), "--set", f"tracking.uri={uri}", "--set", f"cache_dir={cache_dir}"]
    args += [a for s in sets for a in ("--set", s)] + [a for step in only for a in ("--only", step)]
    return run_cli(*args, cwd=tmp_path, timeout=timeout)


def runs(uri: str, experiment: str, kind: str) -> list:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], f"tags.`raysynth.kind` = '{kind}'") if found else []


def test_quickstart_sweep_selects_on_validation_and_reports_paired_statistics(tmp_path, cache_dir):
    import optuna

    uri = f"sqlite:///{tmp_path}/q.db"
    result = sweep(tmp_path, REPO / "search_spaces/quickstart.yaml", cache_dir, "tune.num_samples=3",
                   "evaluation.epochs=2", "evaluation.num_eval=1", "evaluation.width=16", uri=uri)
    assert result.returncode == 0, result.stderr[-3000:]
    terminal = (result.stdout + result.stderr).splitlines()
    ray_noise = [line for line in terminal if any(mark in line for mark in ("(pid=", "INFO", "WARNING", "╭", "│", "Trial status"))]
    assert len(terminal) < 60 and not ray_noise, "\n".join(terminal)
    client = MlflowClient(uri)
    parent, = runs(uri, "quickstart", "sweep")
    trials = runs(uri, "quickstart", "trial")
    complete = [t for t in trials if t.info.status == "FINISHED" and {"val_accuracy", "val_fid", "accuracy", "cas", "fid"}
                <= set(t.data.metrics) and "samples.png" in [a.path for a in client.list_artifacts(t.info.run_id)]]
    searched = {t.data.tags["trial_id"]: t.data.metrics["val_accuracy"] for t in trials
                if t.data.tags["raysynth.role"] == "search"}
    confirmed = sorted(t.data.params["seeds"] for t in trials if t.data.tags["raysynth.role"] == "confirmation")
    assert len(complete) == len(trials) == 3 + 3 + 3 and confirmed == ["[10]", "[11]", "[12]"]
    study = optuna.load_study(study_name=parent.data.tags["optuna_study.classic_searched"],
                              storage=f"sqlite:///{tmp_path}/optuna.db")
    assert {t.user_attrs["tune_trial_id"]: t.value for t in study.trials} == searched  # values are val_accuracy
    report = run_cli("report", "--experiment", "quickstart", "--tracking-uri", uri, "--out", str(tmp_path / "r"), cwd=tmp_path)
    header = next(line for line in report.stdout.splitlines() if line.startswith("| step |"))
    assert report.returncode == 0 and all(c in header for c in ("95 % CI", "Holm", "repeated")), report.stderr
    assert "Confirmation on fresh seeds [10, 11, 12]" in report.stdout and (tmp_path / "r" / "report.png").exists()
    searched_row = next(line for line in report.stdout.splitlines() if line.startswith("| classic_searched"))
    assert "on the confirmation seeds" in searched_row and "| 3 |" in searched_row  # the quoted row: 3 fresh seeds


def test_expansive_ladder_sweeps_end_to_end_on_digits(tmp_path, cache_dir):
    uri = f"sqlite:///{tmp_path}/e.db"
    result = sweep(tmp_path, REPO / "search_spaces/ablation_expansive.yaml", cache_dir, "dataset.name=digits",
                   "seeds=[0]", "dataset.validation_per_class=20", "budget.epochs=2", "params.pretrain_epochs=1",
                   "evaluation.epochs=2", "evaluation.probe_every=1",
                   # ASHA never stops a ladder's step: the steps are compared, not raced
                   "tune.scheduler.kind=asha", "tune.scheduler.grace_period=1",
                   "evaluation.num_eval=1", "evaluation.width=16", uri=uri)
    trials = runs(uri, "ablation_expansive", "trial")
    finished = {t.data.tags["ablation_step"] for t in trials if t.info.status == "FINISHED"}
    steps = [step["name"] for step in yaml.safe_load((REPO / "search_spaces/ablation_expansive.yaml").read_text())["ablation"]]
    report = run_cli("report", "--experiment", "ablation_expansive", "--tracking-uri", uri, "--out", str(tmp_path / "r"),
                     cwd=tmp_path)
    assert result.returncode == 0 and finished == set(steps), result.stderr[-3000:]
    # Table 3 both ways: against augmentation with the originals and against augmentation alone
    assert all(f"| {step} |" in report.stdout for step in steps) and "classic alone (%)" in report.stdout and \
        all({"gain_vs_classic", "gain_vs_classic_alone"} <= set(t.data.metrics)
            for t in trials if t.data.tags["method"] == "expansive") and \
        all("accuracy" in t.data.metrics for t in trials)


def test_a_trial_keeps_only_its_two_latest_checkpoints(tmp_path, cache_dir):
    """Checkpoints at every chance (each classifier epoch, each phase): a trial's folder holds the latest two."""
    path = space(tmp_path)
    result = sweep(tmp_path, path, cache_dir, "tune.checkpoint_interval_s=0")
    trial_folders = list((tmp_path / "ray_results").glob("t/*/grid/train_trial_*"))
    kept = [len(list(folder.glob("checkpoint_*"))) for folder in trial_folders]
    assert result.returncode == 0 and kept == [2], (kept, result.stderr[-3000:])


def test_multi_objective_search_reports_its_pareto_front(tmp_path, cache_dir):
    path = space(tmp_path, method="classic_augmentation", params={"expansion_ratio": 2},
                 search={"expansion_ratio": {"int": [2, 4]}},
                 tune={**TINY["tune"], "num_samples": 3, "metric": ["val_accuracy", "val_fid"], "mode": ["max", "min"]})
    result = sweep(tmp_path, path, cache_dir)
    finished = [r for r in runs(f"sqlite:///{tmp_path}/m.db", "t", "trial") if r.info.status == "FINISHED"]
    report = run_cli("report", "--experiment", "t", "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--out",
                     str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 0 and len(finished) == 3, result.stderr[-3000:]
    assert "Pareto front" in report.stdout and (tmp_path / "r" / "search_main_pareto.png").exists(), report.stderr


FAILING_PLUGIN = """
from pydantic import Field
from raysynth.methods import Intent, Method, Params, SyntheticSet, register_method

from raysynth.errors import NonFiniteLossError

class BreakableParams(Params):
    fail: str = Field("no", description="no | bug (an unknown error: retried) | nonfinite (deterministic: not retried)")

@register_method("breakable")
class Breakable(Method):
    Params = BreakableParams
    intent = Intent.GENERATION

    def fit(self, split, context, report):
        if self.params.fail == "bug":
            raise RuntimeError("the method broke on purpose")
        if self.params.fail == "nonfinite":
            raise NonFiniteLossError("the loss became non-finite on purpose")
        return SyntheticSet(*split.fewshot)
"""


def test_failing_trials_are_recorded_retried_only_when_a_retry_can_help_and_fail_the_sweep(tmp_path, cache_dir):
    (tmp_path / "breakable.py").write_text(FAILING_PLUGIN)
    path = space(tmp_path, method="breakable", plugins=["breakable.py"], ablation=[
        {"name": "ok"}, {"name": "bug", "params": {"fail": "bug"}}, {"name": "nonfinite", "params": {"fail": "nonfinite"}}],
        tune={**TINY["tune"], "max_concurrent": 3, "resources_per_trial": {"cpu": 0.5}})
    result = sweep(tmp_path, path, cache_dir, "tune.max_failures=1")
    by_step = {r.data.tags["ablation_step"]: r for r in runs(f"sqlite:///{tmp_path}/m.db", "t", "trial")}
    table = [line for line in result.stderr.splitlines() if line.startswith("| ") and "on purpose" in line]
    assert result.returncode == 1 and by_step["ok"].info.status == "FINISHED", result.stderr[-3000:]
    assert by_step["nonfinite"].info.status == "FAILED" and by_step["nonfinite"].data.tags["attempts"] == "1" and \
        "non-finite on purpose" in by_step["nonfinite"].data.tags["error"]
    assert by_step["bug"].info.status == "FAILED" and by_step["bug"].data.tags["attempts"] == "2"
    assert len(table) == 2 and result.stderr.count("Traceback") <= 1, result.stderr[-3000:]


HOLDING_PLUGIN = """
import time
from pathlib import Path
from pydantic import Field
from raysynth.methods import Intent, Method, Params, SyntheticSet, register_method

class HoldingParams(Params):
    hold_file: str | None = Field(None, description="while this file exists, the fit waits (the test's interrupt lands here)")

@register_method("holding")
class Holding(Method):
    Params = HoldingParams
    intent = Intent.GENERATION

    def fit(self, split, context, report):
        waited = 0
        while self.params.hold_file and Path(self.params.hold_file).exists() and waited < 600:
            time.sleep(0.2)
            waited += 1
        report(1, waited=waited)
        return SyntheticSet(*split.fewshot)
"""


def holding_space(folder: Path, hold: Path) -> tuple[Path, list[dict]]:
    """A three-step space whose first step finishes and whose other two wait while ``hold`` exists."""
    (folder / "holding.py").write_text(HOLDING_PLUGIN)
    hold.touch()
    steps = [{"name": "free"}] + [{"name": f"held{i}", "params": {"hold_file": str(hold)}} for i in range(2)]
    return space(folder, method="holding", plugins=["holding.py"], ablation=steps,
                 tune={**TINY["tune"], "max_concurrent": 1}), steps


def start_until_a_trial_finished(folder: Path, path: Path, cache_dir: Path, uri: str):
    """Starts the sweep of ``path`` in its own session and returns (process, its stderr log, the trial keys
    finished) once one trial has finished."""
    args = [sys.executable, "-m", "raysynth.cli", "sweep", str(path), "--set", f"tracking.uri={uri}", "--set", f"cache_dir={cache_dir}"]
    log = folder / "driver.log"
    with open(log, "w") as stderr:  # SIGINT as a terminal's foreground job has it, even if this test runs in the background
        driver = subprocess.Popen(args, cwd=folder, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    finished: set[str] = set()
    while time.monotonic() < deadline and not finished:
        time.sleep(0.25)
        if "Ray:" in log.read_text():  # the driver has created the store; reading it now cannot race its creation
            finished = {r.data.tags["raysynth.key"] for r in runs(uri, "t", "trial") if r.info.status == "FINISHED"}
    return driver, log, finished


@pytest.mark.parametrize("interrupt", ["kill -9", "ctrl-c", "ctrl-c twice", "kill (SIGTERM)"])
def test_an_interrupted_sweep_resumes_without_rerunning_or_duplicating(tmp_path, cache_dir, interrupt):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) ends the sweep with 130, tags it
    interrupted and closes its trials in flight; a second Ctrl-C during the shutdown leaves no process.
    SIGTERM to the driver alone (`kill PID`, a batch scheduler's preemption) does the same, with 143.
    The first step finishes; the others wait on a file, so the interrupt always lands mid-sweep."""
    hold = tmp_path / "hold"
    path, steps = holding_space(tmp_path, hold)
    uri = f"sqlite:///{tmp_path}/m.db"
    driver, log, finished_before = start_until_a_trial_finished(tmp_path, path, cache_dir, uri)
    if interrupt == "kill -9":
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
        driver.wait()
    else:
        if interrupt == "kill (SIGTERM)":
            os.kill(driver.pid, signal.SIGTERM)
        else:
            os.killpg(driver.pid, signal.SIGINT)
        if interrupt == "ctrl-c twice":
            time.sleep(0.5)
            os.killpg(driver.pid, signal.SIGINT)
        code = driver.wait(timeout=60)
        time.sleep(2)
        left = subprocess.run(["pgrep", "-s", str(driver.pid)], capture_output=True, text=True).stdout.split()
        sweep_run, = runs(uri, "t", "sweep")
        in_flight = [r for r in runs(uri, "t", "trial") + runs(uri, "t", "seed") if r.info.status == "RUNNING"]
        assert code == (143 if interrupt == "kill (SIGTERM)" else 130) and not left and sweep_run.data.tags.get("interrupted") == "true" and not in_flight, \
            (code, left, log.read_text()[-2000:])
    assert 1 <= len(finished_before) < len(steps), "the sweep must be interrupted mid-run"
    hold.unlink()  # the held steps finish at once when the sweep resumes

    result = run_cli("sweep", str(path), "--resume", "--set", f"tracking.uri={uri}", "--set", f"cache_dir={cache_dir}", cwd=tmp_path)
    trials = runs(uri, "t", "trial")
    keys = [t.data.tags["raysynth.key"] for t in trials]
    rerun = [t for t in trials if t.data.tags["raysynth.key"] in finished_before and t.data.tags["attempts"] != "1"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(keys) == len(set(keys)) == len(steps) and all(t.info.status == "FINISHED" for t in trials) and not rerun
    assert len(runs(uri, "t", "sweep")) == 1


def test_a_plugin_method_runs_in_ray_workers_and_report_pools_sweeps(tmp_path, cache_dir):
    """The example plugin runs in Ray workers; `report --all-sweeps` pools a second sweep, counting its
    re-run of seed 0 once (the later run)."""
    import json

    uri = f"sqlite:///{tmp_path}/p.db"
    tiny, steps = ("evaluation.epochs=2", "evaluation.width=16"), ("real", "noisy_x4")
    first = sweep(tmp_path, REPO / "examples/noisy_copy.yaml", cache_dir, "seeds=[0]", *tiny, uri=uri, only=steps)
    second = sweep(tmp_path, REPO / "examples/noisy_copy.yaml", cache_dir, "seeds=[0, 1]", *tiny, uri=uri, only=steps)
    out = tmp_path / "r"
    report = run_cli("report", "--experiment", "noisy_copy", "--tracking-uri", uri, "--out", str(out), "--all-sweeps",
                     cwd=tmp_path)
    assert first.returncode == second.returncode == report.returncode == 0, (first.stderr + report.stderr)[-3000:]
    finished = [t for t in runs(uri, "noisy_copy", "trial") if t.info.status == "FINISHED"]
    rows = {r["label"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    latest = {r.data.tags["seed"]: r.data.metrics["accuracy"] for r in
              sorted(runs(uri, "noisy_copy", "seed"), key=lambda r: r.info.start_time) if r.data.tags["ablation_step"] == "noisy_x4"}
    assert {t.data.tags["method"] for t in finished} == {"real", "noisy_copy"} and len(finished) == 4
    assert rows["noisy_x4"]["difference"]["seeds"] == [0, 1] and \
        {s: m["accuracy"] for s, m in rows["noisy_x4"]["per_seed"].items()} == latest


def test_the_progress_line_counts_the_trials_a_resumed_sweep_finished_before():
    """After --resume Tune lists the trials that ended before the interruption as ended from the start:
    they count as done, and the best among them stays the best until beaten."""
    from ray.tune.experiment import Trial

    from raysynth.tuning.callbacks import TrialEvents

    said: list[str] = []
    events = TrialEvents(None, "search", "val_accuracy", "max", total=3, log=said.append)
    before, new = Trial("__fake", trial_id="before", stub=True), Trial("__fake", trial_id="new", stub=True)
    before.set_status(Trial.TERMINATED)
    before.run_metadata.last_result = {"val_accuracy": 76.6, "accuracy": 76.0}
    new.set_status(Trial.RUNNING)
    new.run_metadata.last_result = {"val_accuracy": 70.0, "accuracy": 69.0}
    events.on_step_end(0, [before, new])
    events.on_trial_complete(1, [before, new], new)
    assert said[-1] == "[search] 2/3 trials done, 0 running, best val_accuracy 76.6 (before)"


def test_a_resumed_group_reports_through_the_resuming_commands_events(tmp_path):
    """Tune pickles callbacks with the experiment; an interrupted sweep's TrialEvents from before an upgrade
    (here: one without the heartbeat's clock) must not be what the resumed sweep calls."""
    from ray import tune
    from ray.tune.experiment import Trial

    from raysynth.tuning.callbacks import TrialEvents
    from raysynth.tuning.sweep import restore_tuner

    def trainable(config):
        return {"accuracy": 1.0}

    old = TrialEvents(None, "grid", "accuracy", "max", total=1, log=print)
    del old.clock
    tune.Tuner(trainable, run_config=tune.RunConfig(name="grid", storage_path=str(tmp_path), callbacks=[old]))
    said: list[str] = []
    fresh = TrialEvents(None, "grid", "accuracy", "max", total=1, log=said.append)
    callbacks = restore_tuner(str(tmp_path / "grid"), trainable, fresh)._local_tuner.get_run_config().callbacks
    trial = Trial("__fake", trial_id="t", stub=True)
    for callback in callbacks:
        callback.on_trial_start(0, [trial], trial)
    assert said == ["[grid] trial t started"]


def test_sigterm_during_a_blocking_ray_call_still_reads_as_sigterm():
    """Ray's core raises a plain KeyboardInterrupt when a signal handler fails inside ray.get: the sweep
    must still exit 143 (terminated), not 130 (Ctrl-C)."""
    import threading

    import ray

    from raysynth.errors import Terminated
    from raysynth.tuning.sweep import terminate_as_interrupt

    @ray.remote
    def sleep():
        time.sleep(120)

    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        task = sleep.remote()
        threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
        caught = None
        try:  # not pytest.raises: a plain KeyboardInterrupt escaping it would end the whole test session
            with terminate_as_interrupt():
                ray.get(task, timeout=60)
        except KeyboardInterrupt as interrupt:
            caught = interrupt
    finally:
        ray.shutdown()
    assert isinstance(caught, Terminated), repr(caught)


def test_a_long_trial_says_where_it_is_every_heartbeat():
    from ray.tune.experiment import Trial

    from raysynth.tuning.callbacks import HEARTBEAT_S, TrialEvents

    said: list[str] = []
    now = [0.0]
    events = TrialEvents(None, "grid", "val_accuracy", "max", total=1, log=said.append, clock=lambda: now[0])
    trial = Trial("__fake", trial_id="long", stub=True)
    events.on_trial_start(0, [trial], trial)
    for minute in range(1, 45):  # a fit reporting once a minute for 24 minutes, then the classifier for each metric
        now[0] = 60.0 * minute   # (accuracy, then cas from minute 35: its epochs start again); a checkpoint every other
        if minute % 2 == 0:
            progress = {"checkpoint/step": minute}
        elif minute < 25:
            progress = {"seed": 0, "train/epoch": 20.0 * minute}
        else:
            metric, start = ("accuracy", 24) if minute < 35 else ("cas", 34)
            progress = {"seed": 0, "eval/epoch": 10.0 * (minute - start), "eval/classifier": 1.0, "eval/set": metric}
        events.on_trial_result(minute, [trial], trial, progress)
    beats = [line for line in said if "running for" in line]
    assert HEARTBEAT_S == 600 and beats == [
        "[grid] trial long running for 10 min: seed 0, fit epoch 180",
        "[grid] trial long running for 20 min: seed 0, fit epoch 380",
        "[grid] trial long running for 30 min: seed 0, evaluation for accuracy, classifier 1 epoch 50",
        "[grid] trial long running for 40 min: seed 0, evaluation for cas, classifier 1 epoch 50"]
