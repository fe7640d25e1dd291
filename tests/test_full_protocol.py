"""benchmarks/full_protocol.py's summary reads a run stopped after its last classifier (the GPU call's
time limit can fall between the last classifier and the metrics file) from the run's own log."""

from __future__ import annotations

import importlib.util
import json

from conftest import REPO, run_cli


def load_full_protocol():
    spec = importlib.util.spec_from_file_location("full_protocol", REPO / "benchmarks" / "full_protocol.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_accuracies_read_from_a_runs_log_are_those_of_its_metrics(tmp_path, cache_dir):
    result = run_cli("run", str(REPO / "search_spaces/quickstart.yaml"), "--step", "classic_x5", "--set", "evaluation.epochs=10",
                     "--set", "evaluation.num_eval=2", "--set", "tune.scheduler.kind=fifo", "--set", "seeds=[0]",
                     "--set", f"cache_dir={cache_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    log = tmp_path / "log.txt"
    log.write_text(result.stdout + result.stderr)
    from_log = load_full_protocol().accuracies_from_log(log)
    # the log prints each classifier to 2 decimals; the metrics average the unrounded values
    assert all(abs(from_log[k] - metrics[k]) <= 0.0051 for k in ("accuracy", "baseline_accuracy", "repeated_accuracy")),\
        (from_log, metrics)
