import json
import math

from conftest import REPO, run_cli


def test_run_prints_finite_metrics_as_the_last_line(tmp_path, cache_dir):
    result = run_cli("run", str(REPO / "search_spaces/quickstart.yaml"), "--set", "evaluation.epochs=2",
                     "--set", "evaluation.num_eval=1", "--set", f"cache_dir={cache_dir}", cwd=tmp_path)
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(math.isfinite(metrics[k]) for k in ("accuracy", "cas", "baseline_accuracy", "gain", "fid")), result.stderr


def test_run_with_an_unavailable_dataset_exits_2_with_one_line(tmp_path):
    result = run_cli("run", str(REPO / "search_spaces/quickstart.yaml"), "--set", "dataset.name=cifar100",
                     "--set", "dataset.download=false", "--set", f"dataset.root={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "cifar100" in result.stderr
