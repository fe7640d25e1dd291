"""Credentials and stores, tried as an adversarial user would: a real basic-auth `mlflow server`, credentials
in the URI and the environment, read-only and full filesystems (real mounts), and Ray's own launcher code
on the shipped cluster.yaml."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import REPO, MlflowServer, run_cli
from raysynth.cluster_auth import ADMIN, add_user, main as cluster_auth, server_environment, write_credentials, write_server_config

PASSWORD = "Alice-S3cret-0d8f1c2b7e"  # what must never appear anywhere but the server's user store


def tiny_space(tmp_path: Path, searched: bool = False) -> Path:
    """One real step; ``searched``: and a 2-trial Optuna search confirmed on one seed (Tune pickles its searcher)."""
    ablation = [{"name": "real", "method": "real"}]
    if searched:
        ablation.append({"name": "searched", "method": "classic_augmentation", "params": {"expansion_ratio": 2},
                         "set": {"search.expansion_ratio": {"int": [2, 4]}}})
    data = {"experiment": tmp_path.name, "method": "real", "dataset": {"name": "digits", "images_per_class": 5},
            "seeds": [0], "budget": {"epochs": 1}, "ablation": ablation,
            "evaluation": {"classifier": "convnet", "width": 16, "epochs": 2, "num_eval": 1, "probe_every": 1},
            "tune": {"num_samples": 2, "confirm_seeds": [1], "max_concurrent": 2, "resources_per_trial": {"cpu": 1},
                     "scheduler": {"kind": "fifo"}, "storage": str(tmp_path / "ray_results")}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """`mlflow server --app-name basic-auth` configured as the cluster's head configures it, with user alice."""
    folder = tmp_path_factory.mktemp("auth")
    write_server_config(folder)
    server = MlflowServer(folder, app_name="basic-auth", env=server_environment(folder))
    server.start()
    server.admin_password = (folder / "mlflow-admin-password").read_text().strip()
    add_user(server.url, "alice", PASSWORD, server.admin_password)
    yield server
    server.stop()


def clean_env(home: Path) -> dict:
    """No tracking credentials from the caller's environment; HOME (and its ~/.mlflow) is the test's."""
    return {"HOME": str(home), "MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": "", "MLFLOW_TRACKING_URI": ""}


def files_containing(root: Path, secret: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and secret in p.read_bytes()]


@pytest.mark.slow
def test_no_credential_reaches_a_param_artifact_console_line_tune_state_or_ray_log(tmp_path, cache_dir, auth_server,
                                                                                    monkeypatch):
    ray_tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # short: Ray's socket paths have a length limit
    host = auth_server.url.removeprefix("http://")
    uri = f"http://alice:{PASSWORD}@{host}"
    result = run_cli("sweep", str(tiny_space(tmp_path, searched=True)), "--set", f"tracking.uri={uri}",
                     "--set", f"cache_dir={cache_dir}", cwd=tmp_path,
                     env_extra={**clean_env(tmp_path), "MLFLOW_TRACKING_USERNAME": "alice",
                                "MLFLOW_TRACKING_PASSWORD": PASSWORD, "RAY_TMPDIR": str(ray_tmp)})
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    client = MlflowClient(auth_server.url)
    experiment = client.get_experiment_by_name(tmp_path.name)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    logged = json.dumps([{"params": r.data.params, "tags": r.data.tags} for r in runs])
    artifacts = tmp_path / "downloaded"
    for run in runs:
        client.download_artifacts(run.info.run_id, "", str(artifacts / run.info.run_id))
    leaks = files_containing(tmp_path, PASSWORD.encode()) + files_containing(ray_tmp, PASSWORD.encode())
    searched = [p for p in (tmp_path / "ray_results").rglob("searcher-state-*.pkl")] and any(ray_tmp.rglob("*.log"))
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert result.returncode == 0 and len(runs) >= 8 and searched, result.stderr[-3000:]
    assert PASSWORD not in result.stdout + result.stderr and PASSWORD not in logged and not leaks, leaks


@pytest.mark.slow
def test_a_sweep_logs_to_a_basic_auth_server_with_the_credentials_file_the_cluster_mounts(tmp_path, cache_dir,
                                                                                          auth_server):
    home = tmp_path / "home"
    credentials = home / ".mlflow" / "credentials"
    write_credentials(credentials, "trials")
    assert cluster_auth(["add-user", auth_server.url, "trials", "--from", str(credentials),
                         "--config", str(auth_server.folder)]) == 0
    result = run_cli("sweep", str(tiny_space(tmp_path)), "--set", f"tracking.uri={auth_server.url}",
                     "--set", f"cache_dir={cache_dir}", cwd=tmp_path, env_extra=clean_env(home))
    client = MlflowClient(auth_server.url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        experiment = client.get_experiment_by_name(tmp_path.name)
        trials = client.search_runs([experiment.experiment_id], "tags.`raysynth.kind` = 'trial'")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(trials) == 1 and trials[0].info.status == "FINISHED"


def test_a_negative_credential_cache_is_bad_input(tmp_path, capsys):
    code = cluster_auth(["server-config", str(tmp_path / "head"), "--credential-cache-s", "-1"])
    assert code == 2 and "--credential-cache-s" in capsys.readouterr().err and not (tmp_path / "head").exists()


def test_the_server_trusts_a_checked_password_for_its_cache_window(auth_server):
    """The head's server caches a password it has checked (each check is a deliberately slow hash): a
    password changed behind the server's back still gets in; a user deleted through the server does not."""
    import sqlite3

    from mlflow.server.auth.client import AuthServiceClient
    from werkzeug.security import generate_password_hash

    from raysynth.secrets import scoped_environment

    add_user(auth_server.url, "bob", PASSWORD, auth_server.admin_password)
    request = urllib.request.Request(f"{auth_server.url}/api/2.0/mlflow/experiments/search?max_results=1", headers={
        "Authorization": "Basic " + base64.b64encode(f"bob:{PASSWORD}".encode()).decode()})

    def status() -> int:
        try:
            return urllib.request.urlopen(request).status
        except urllib.error.HTTPError as error:
            return error.code

    statuses = [status()]
    with sqlite3.connect(auth_server.folder / "mlflow-auth.db") as store:
        store.execute("UPDATE users SET password_hash = ? WHERE username = 'bob'", (generate_password_hash("other"),))
    statuses.append(status())
    with scoped_environment(MLFLOW_TRACKING_USERNAME=ADMIN, MLFLOW_TRACKING_PASSWORD=auth_server.admin_password):
        AuthServiceClient(auth_server.url).delete_user("bob")
    assert statuses + [status()] == [200, 200, 401]


@pytest.mark.slow
def test_a_server_that_refuses_the_credentials_is_bad_input(tmp_path, cache_dir, auth_server):
    started = time.monotonic()
    result = run_cli("sweep", str(tiny_space(tmp_path)), "--set", f"tracking.uri={auth_server.url}",
                     "--set", f"cache_dir={cache_dir}", cwd=tmp_path, env_extra=clean_env(tmp_path))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "refused the credentials" in lines[0], result.stderr[-2000:]
    assert time.monotonic() - started < 30 and not (tmp_path / "ray_results").exists()


def test_credentials_in_the_uri_never_go_to_a_cluster(tmp_path):
    result = run_cli("sweep", str(tiny_space(tmp_path)), "--address", "127.0.0.1:1",
                     "--set", "tracking.uri=http://alice:pw@127.0.0.1:1", cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "~/.mlflow/credentials" in result.stderr and "pw" not in result.stderr


# --------------------------------------------------------------------------- stores on real filesystems

@pytest.fixture
def mount(tmp_path):
    """Mounts a tmpfs with the given options (root only; skipped where mounting is not allowed)."""
    mounted = []

    def make(options: str) -> Path:
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(target)
        return target

    yield make
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.mark.parametrize("options, fill", [("size=1m,ro", False), ("size=2m", True)], ids=["read-only", "full"])
def test_a_store_on_a_read_only_or_full_filesystem_stops_the_sweep_in_seconds(tmp_path, mount, options, fill):
    folder = mount(options)
    if fill:
        subprocess.run(["dd", "if=/dev/zero", f"of={folder}/filler", "bs=64k"], capture_output=True)
    started = time.monotonic()
    result = run_cli("sweep", str(tiny_space(tmp_path)), "--set", f"tracking.uri=sqlite:///{folder}/mlflow.db",
                     cwd=tmp_path, timeout=120)
    elapsed = time.monotonic() - started
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "tracking.uri" in lines[0], result.stderr[-2000:]
    assert elapsed < 10 and not (tmp_path / "ray_results").exists() and not (folder / "mlflow.db").exists()


# --------------------------------------------------------------------------- the cluster as Ray launches it

def cluster_config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_rays_launcher_adds_no_inbound_rule_to_the_shipped_cluster():
    """Ray's AWS launcher creates and opens a security group only for node types without SecurityGroupIds
    (its default rules include SSH from 0.0.0.0/0); the shipped config names the runbook's group on every
    node type, so the launcher's own code leaves it alone, and nothing in it opens to the world."""
    import copy

    from ray.autoscaler._private.aws.config import _configure_security_group, _create_default_inbound_rules

    config = cluster_config()
    configured = _configure_security_group(copy.deepcopy(config))  # would call AWS if it had a group to create
    groups = {tuple(t["node_config"]["SecurityGroupIds"]) for t in configured["available_node_types"].values()}
    extra_rules = config["provider"].get("security_group", {}).get("IpPermissions", [])
    ray_rules = _create_default_inbound_rules(["sg-anything"], extra_rules)
    assert configured == config and len(groups) == 1 and "security_group" not in config["provider"]
    assert "0.0.0.0/0" not in json.dumps(configured) and \
        any("0.0.0.0/0" in json.dumps(rule) for rule in ray_rules)  # what Ray would have added


def test_the_head_role_reaches_only_the_artifact_bucket():
    policy = json.loads((REPO / "cluster" / "head-policy.json").read_text())
    s3 = [s for s in policy["Statement"] if any(a.startswith("s3:") for a in _list(s["Action"]))]
    resources = {r for s in s3 for r in _list(s["Resource"])}
    bucket = "raysynth-artifacts"
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"} and \
        bucket in (REPO / "cluster.yaml").read_text() and \
        not any(a in ("*", "s3:*", "ec2:*", "iam:*") for s in policy["Statement"] for a in _list(s["Action"]))
    head = cluster_config()["available_node_types"]["head"]["node_config"]
    assert head["IamInstanceProfile"]["Name"] == "raysynth-head"  # given, so the launcher creates no role


def _list(value) -> list:
    return value if isinstance(value, list) else [value]
