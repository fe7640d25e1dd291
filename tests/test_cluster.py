"""Multi-node sweeps on a real Ray cluster (a head and two workers on this machine), a real
`mlflow server`, and the faults a spot cluster sees: a lost worker, a tracking server that restarts."""

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
from raysynth.secrets import redact
from raysynth.tracking import Tracker

SLOT = "trial_slot"  # custom resource only the workers have, so trials never run on the head


def space(tmp_path: Path, ablation: list[dict], epochs: int = 2, **tune) -> Path:
    data = {"experiment": "c", "method": "real", "dataset": {"name": "digits", "images_per_class": 5}, "seeds": [0],
            "budget": {"epochs": 1}, "ablation": ablation,
            "evaluation": {"classifier": "convnet", "width": 32, "epochs": epochs, "num_eval": 1, "probe_every": 2},
            "tune": {"max_concurrent": 2, "resources_per_trial": {"cpu": 1, "custom": {SLOT: 1}}, "checkpoint_interval_s": 0,
                     **tune}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def classic(ratio: int) -> dict:
    return {"name": f"x{ratio}", "method": "classic_augmentation", "params": {"expansion_ratio": ratio}}


def trial_runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("c")
    return client.search_runs([experiment.experiment_id], "tags.`raysynth.kind` = 'trial'") if experiment else []


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    head = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [head.add_node(num_cpus=1, resources={SLOT: 1}) for _ in range(2)]
    head.wait_for_nodes()
    yield head, workers
    head.shutdown()


@pytest.fixture
def start_sweep(tmp_path, cache_dir):
    """Starts `raysynth sweep` in the background; whatever a failing test leaves running is killed."""
    drivers = []

    def start(path: Path, uri: str, address: str | None) -> tuple[subprocess.Popen, Path]:
        args = [sys.executable, "-m", "raysynth.cli", "sweep", str(path), "--set", f"tracking.uri={uri}",
                "--set", f"cache_dir={cache_dir}"] + (["--address", address] if address else [])
        log = tmp_path / "driver.log"
        with open(log, "w") as stderr:
            drivers.append(subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr,
                                            start_new_session=True))
        return drivers[-1], log

    yield start
    for driver in drivers:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()


def wait_until(condition, timeout: float = 300, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_trials_run_on_both_workers_and_land_in_the_tracking_server(tmp_path, cache_dir, cluster, mlflow_server):
    head, workers = cluster
    path = space(tmp_path, [{"name": "real", "method": "real"}, classic(2), classic(3), classic(4)])
    result = run_cli("sweep", str(path), "--address", head.address, "--set", f"tracking.uri={mlflow_server.url}",
                     "--set", f"cache_dir={cache_dir}", cwd=tmp_path)
    trials = trial_runs(mlflow_server.url)
    nodes = {t.data.tags["node_id"] for t in trials}
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(trials) == 4 and all(t.info.status == "FINISHED" for t in trials) and \
        nodes == {w.node_id for w in workers}


@pytest.mark.slow
def test_a_sweep_without_address_never_joins_a_cluster_found_on_the_machine(tmp_path, cache_dir, cluster):
    head, workers = cluster
    path = space(tmp_path, [{"name": "real", "method": "real"}])
    uri = f"sqlite:///{tmp_path}/local.db"
    result = run_cli("sweep", str(path), "--set", f"tracking.uri={uri}", "--set", f"cache_dir={cache_dir}",
                     "--set", "tune.resources_per_trial.custom={}", cwd=tmp_path, env_extra={"RAY_ADDRESS": head.address})
    cluster_nodes = {head.head_node.node_id, *(w.node_id for w in workers)}
    trial, = trial_runs(uri)
    assert result.returncode == 0 and "a local instance of its own" in result.stderr, result.stderr[-3000:]
    assert trial.info.status == "FINISHED" and trial.data.tags["node_id"] not in cluster_nodes


@pytest.mark.slow
def test_a_lost_worker_resumes_its_trial_from_a_checkpoint(tmp_path, cluster, start_sweep):
    head, workers = cluster
    uri = f"sqlite:///{tmp_path}/m.db"
    path = space(tmp_path, [classic(8), classic(9)], epochs=40)
    driver, log = start_sweep(path, uri, head.address)
    client = MlflowClient(uri)
    victim = workers[0]

    def victim_trial_checkpointed():
        if "Ray:" not in log.read_text():  # the driver has created the store
            return None
        for run in trial_runs(uri):
            if run.data.tags.get("node_id") == victim.node_id:
                seeds = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
                if seeds and seeds[0].data.metrics.get("probe/epoch", 0) >= 6:
                    return run.data.tags["raysynth.key"]
        return None

    key = wait_until(victim_trial_checkpointed, what="a trial on the victim worker to checkpoint")
    head.remove_node(victim)
    head.add_node(num_cpus=1, resources={SLOT: 1})  # the autoscaler's replacement
    assert driver.wait(timeout=600) == 0, log.read_text()[-3000:]
    trials = trial_runs(uri)
    resumed = next(t for t in trials if t.data.tags["raysynth.key"] == key)
    keys = [t.data.tags["raysynth.key"] for t in trials]
    assert len(keys) == len(set(keys)) == 2 and all(t.info.status == "FINISHED" for t in trials)
    assert int(resumed.data.tags.get("restored_from_step", "0")) > 1


@pytest.mark.slow
def test_a_restarting_tracking_server_loses_no_trial_and_no_metric(tmp_path, mlflow_server, start_sweep):
    path = space(tmp_path, [classic(8), classic(9)], epochs=30, resources_per_trial={"cpu": 1})
    driver, log = start_sweep(path, mlflow_server.url, None)
    client = MlflowClient(mlflow_server.url)

    def both_training():
        trials = trial_runs(mlflow_server.url)
        seeds = [client.search_runs([t.info.experiment_id], f"tags.`mlflow.parentRunId` = '{t.info.run_id}'") for t in trials]
        return len(trials) == 2 and all(s and "probe/val_accuracy" in s[0].data.metrics for s in seeds)

    wait_until(both_training, what="both trials to be training")
    mlflow_server.stop()
    time.sleep(8)
    mlflow_server.start()
    assert driver.wait(timeout=600) == 0, log.read_text()[-3000:]
    trials = trial_runs(mlflow_server.url)
    assert len(trials) == 2 and all(t.info.status == "FINISHED" and {"accuracy", "cas", "fid"} <= set(t.data.metrics)
                                    for t in trials)


def test_a_trials_curves_reach_the_tracking_store_whole_in_one_request_per_flush_interval(tmp_path):
    """Reports made within FLUSH_INTERVAL_S of the last send wait in the buffer and go together, each with
    its own step, with the next validation probe: an authenticating server hashes a password per request."""
    from raysynth.tuning.trainable import TrialLogger

    tracker = Tracker(f"sqlite:///{tmp_path}/m.db")
    experiment = tracker.experiment_id("e")
    trial = tracker.open_run(experiment, "t", name="trial", kind="trial", tags={})
    logger = TrialLogger(tracker, experiment, trial.info.run_id, "t", {})
    for step in range(30):
        logger.record(0, step, {"train/loss": 1.0 / (step + 1)})
    sent_at_once = len(tracker.client.get_metric_history(logger.seed_run(0), "train/loss"))
    logger.record(0, 30, {"probe/val_accuracy": 50.0})  # a probe goes at once: Tune may stop the trial on it
    history = tracker.client.get_metric_history(logger.seed_run(0), "train/loss")
    logger.close()
    assert sent_at_once == 1 and sorted(m.step for m in history) == list(range(30)), (sent_at_once, len(history))


def test_cluster_yaml_passes_rays_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # raises on an invalid config
    assert config["available_node_types"]["gpu_1x"]["min_workers"] == 0


def test_secret_looking_keys_are_redacted_in_params_and_yaml(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path}/m.db")
    run = tracker.open_run(tracker.experiment_id("e"), "k", name="r", kind="trial", tags={})
    tracker.log_params(run.info.run_id, {"tracking.password": "hunter2", "params.api_key": "abc", "params.keep": 3,
                                         "params.auth_token": "t", "params.attention.rowwise_tokens": "channels"})
    params = tracker.client.get_run(run.info.run_id).data.params
    saved = yaml.safe_dump(redact({"tracking": {"token": "t0k3n", "uri": "http://alice:S3cret@h:5000/?token=abc"},
                                   "tune": {"storage": "s3://bucket/x?secret_key=k3y"}}))
    assert params == {"tracking.password": "***", "params.api_key": "***", "params.keep": "3", "params.auth_token": "***",
                      "params.attention.rowwise_tokens": "channels"} and \
        not any(secret in saved for secret in ("t0k3n", "S3cret", "alice", "abc", "k3y")) and "h:5000" in saved
