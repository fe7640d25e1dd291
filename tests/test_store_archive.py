"""The benchmark store's archive (benchmarks/store_archive.py): a finished search packed, its folder gone,
restored elsewhere, reports the same table with its Optuna history."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, run_cli
from test_sweep import TINY, space, sweep

pytestmark = pytest.mark.slow


def test_a_packed_store_restored_elsewhere_reports_the_same_search(tmp_path, cache_dir):
    ran = tmp_path / "ran"
    ran.mkdir()
    path = space(ran, method="classic_augmentation", params={"expansion_ratio": 2},
                 search={"expansion_ratio": {"int": [2, 4]}}, tune={**TINY["tune"], "num_samples": 2})
    assert sweep(ran, path, cache_dir).returncode == 0
    archive = tmp_path / "store.tar.xz"
    subprocess.run([sys.executable, str(REPO / "benchmarks/store_archive.py"), "pack", str(ran), "--out", str(archive)],
                   check=True)
    before = run_cli("report", "--experiment", "t", "--tracking-uri", f"sqlite:///{ran}/m.db", "--out",
                     str(tmp_path / "before"), cwd=tmp_path)
    shutil.rmtree(ran)  # the machine that ran it is gone
    restored = tmp_path / "restored"
    subprocess.run([sys.executable, str(REPO / "benchmarks/store_archive.py"), "restore", str(archive), "--into",
                    str(restored)], check=True)
    after = run_cli("report", "--experiment", "t", "--tracking-uri", f"sqlite:///{restored}/m.db", "--out",
                    str(tmp_path / "after"), "--all-sweeps", cwd=tmp_path)
    assert before.returncode == after.returncode == 0, after.stderr[-3000:]
    rows = [json.loads((tmp_path / out / "report.json").read_text())["rows"] for out in ("before", "after")]
    assert rows[0] == rows[1] and list((tmp_path / "after").glob("search_*_history_*.png")), after.stderr[-3000:]
