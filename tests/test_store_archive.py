"""The benchmark store's archive (benchmarks/store_archive.py): a finished search packed, its folder gone,
restored elsewhere, reports the same table with its Optuna history; an interrupted sweep packed with
Tune's state resumes on a fresh clone."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile

import pytest

from conftest import REPO, run_cli
from test_sweep import TINY, holding_space, space, start_until_a_trial_finished, sweep

pytestmark = pytest.mark.slow


def archive_tool(*args: str) -> subprocess.CompletedProcess:
    """benchmarks/store_archive.py as a user runs it."""
    return subprocess.run([sys.executable, str(REPO / "benchmarks/store_archive.py"), *args], capture_output=True, text=True)


def test_a_packed_store_restored_elsewhere_reports_the_same_search(tmp_path, cache_dir):
    ran = tmp_path / "ran"
    ran.mkdir()
    path = space(ran, method="classic_augmentation", params={"expansion_ratio": 2},
                 search={"expansion_ratio": {"int": [2, 4]}}, tune={**TINY["tune"], "num_samples": 2})
    assert sweep(ran, path, cache_dir).returncode == 0
    archive = tmp_path / "store.tar.xz"
    assert archive_tool("pack", str(ran), "--out", str(archive)).returncode == 0
    before = run_cli("report", "--experiment", "t", "--tracking-uri", f"sqlite:///{ran}/m.db", "--out",
                     str(tmp_path / "before"), cwd=tmp_path)
    shutil.rmtree(ran)  # the machine that ran it is gone
    restored = tmp_path / "restored"
    assert archive_tool("restore", str(archive), "--into", str(restored)).returncode == 0
    after = run_cli("report", "--experiment", "t", "--tracking-uri", f"sqlite:///{restored}/m.db", "--out",
                    str(tmp_path / "after"), "--all-sweeps", cwd=tmp_path)
    assert before.returncode == after.returncode == 0, after.stderr[-3000:]
    rows = [json.loads((tmp_path / out / "report.json").read_text())["rows"] for out in ("before", "after")]
    assert rows[0] == rows[1] and list((tmp_path / "after").glob("search_*_history_*.png")), after.stderr[-3000:]


def test_an_interrupted_sweep_packed_with_its_tune_state_resumes_on_a_fresh_clone(tmp_path, cache_dir):
    """The machine that ran a sweep goes away mid-sweep: what was packed, restored into a fresh folder at
    the same path (a clone holds the code, not the store), continues with --resume without re-running."""
    ran, hold = tmp_path / "ran", tmp_path / "hold"
    ran.mkdir()
    path, steps = holding_space(ran, hold)
    uri = f"sqlite:///{ran}/m.db"
    driver, log, finished_before = start_until_a_trial_finished(ran, path, cache_dir, uri)
    driver.send_signal(signal.SIGTERM)  # the queue's `kill`: runs closed, sweep tagged interrupted
    assert driver.wait(timeout=120) == 143 and 1 <= len(finished_before) < len(steps), log.read_text()[-2000:]
    archive = tmp_path / "in_progress.tar.xz"
    packed = archive_tool("pack", str(ran), "--include", "ray_results", "--out", str(archive))
    assert packed.returncode == 0, packed.stderr
    shutil.rmtree(ran)
    ran.mkdir()  # the next machine's clone: the space and its plugin, no store
    holding_space(ran, hold)
    restored = archive_tool("restore", str(archive), "--into", str(ran))
    hold.unlink()
    result = run_cli("sweep", str(path), "--resume", "--set", f"tracking.uri={uri}", "--set", f"cache_dir={cache_dir}", cwd=ran)
    trials = trial_runs_read_afresh(uri)
    rerun = [t for t in trials if t["key"] in finished_before and t["attempts"] != "1"]
    assert restored.returncode == 0 and result.returncode == 0, (restored.stderr + result.stderr)[-3000:]
    assert len(trials) == len(steps) and all(t["status"] == "FINISHED" for t in trials) and not rerun, result.stderr[-3000:]


def trial_runs_read_afresh(uri: str) -> list[dict]:
    """The store's trial runs as a new process reads them: this one's MLflow client keeps its database
    connection open on the file the restore replaced."""
    code = ("import json, sys; from test_sweep import runs; print(json.dumps([{'key': r.data.tags['raysynth.key'], "
            "'status': r.info.status, 'attempts': r.data.tags.get('attempts')} for r in runs(sys.argv[1], 't', 'trial')]))")
    read = subprocess.run([sys.executable, "-c", code, uri], capture_output=True, text=True, cwd=REPO / "tests", check=True)
    return json.loads(read.stdout.splitlines()[-1])


def test_restoring_over_a_store_is_refused_and_writes_nothing(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    with sqlite3.connect(store / "m.db") as database:
        database.execute("CREATE TABLE runs (artifact_uri TEXT)")
    archive = tmp_path / "store.tar.xz"
    assert archive_tool("pack", str(store), "--out", str(archive)).returncode == 0
    (store / "m.db").write_bytes(b"the live store")
    refused = archive_tool("restore", str(archive), "--into", str(store))
    assert refused.returncode == 2 and "already holds m.db" in refused.stderr and \
        (store / "m.db").read_bytes() == b"the live store" and not (store / "store.json").exists(), refused.stderr


def test_packing_tune_state_drops_the_checkpoints_of_ended_trials(tmp_path):
    store = tmp_path / "store"
    grid = store / "ray_results" / "t" / "sweep" / "grid"
    for trial in ("train_trial_a_0", "train_trial_b_1"):
        for step in ("000008", "000009", "000010"):
            (grid / trial / f"checkpoint_{step}").mkdir(parents=True)
            (grid / trial / f"checkpoint_{step}" / "trial_state.pt").write_bytes(step.encode())
        (grid / trial / "result.json").write_text("{}")
    # Tune's experiment state: trial a ended (a resume never reads its checkpoints), b was running
    trial_data = [[json.dumps({"trial_id": "a", "status": "TERMINATED"}), "{}"],
                  [json.dumps({"trial_id": "b", "status": "RUNNING"}), "{}"]]
    (grid / "experiment_state-2026-11-28_00-00-00.json").write_text(json.dumps({"trial_data": trial_data}))
    with sqlite3.connect(store / "m.db") as database:
        database.execute("CREATE TABLE runs (artifact_uri TEXT)")
    archive = tmp_path / "store.tar.xz"
    assert archive_tool("pack", str(store), "--include", "ray_results", "--out", str(archive)).returncode == 0
    with tarfile.open(archive) as packed:
        kept = sorted("/".join(name.split("/")[-3:-1]) for name in packed.getnames() if name.endswith("trial_state.pt"))
        assert kept == [f"train_trial_b_1/checkpoint_{step}" for step in ("000008", "000009", "000010")] and \
            sum(name.endswith("result.json") for name in packed.getnames()) == 2
