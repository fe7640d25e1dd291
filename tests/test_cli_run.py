import json
import math

import pytest

from conftest import REPO, run_cli
from raysynth.cli import main


# every method's space, shrunk to seconds on digits (the smoke command of each method's issue)
SMOKE = {
    "quickstart": ("search_spaces/quickstart.yaml", []),
    "expansive": ("search_spaces/expansive.yaml", ["dataset.name=digits", "budget.epochs=1", "params.pretrain_epochs=1"]),
    "eieg": ("search_spaces/eieg.yaml", ["dataset.name=digits", "budget.epochs=1"]),
    "dcgan": ("search_spaces/gan_comparison.yaml", ["dataset.name=digits", "budget.epochs=1"], "dcgan"),
    "koopcon": ("search_spaces/koopcon.yaml", ["dataset.name=digits", "budget.epochs=1", "params.ae_epochs=1"]),
    "dm": ("search_spaces/condensation_table.yaml", ["dataset.name=digits", "budget.epochs=1"], "dm_10"),
    "scola": ("search_spaces/scola.yaml", ["dataset.name=digits", "budget.epochs=1"]),
    "cola": ("search_spaces/cola.yaml", ["dataset.name=digits", "budget.epochs=1", "params.encoder=convnet",
                                         "params.encoder_epochs=1", "params.images=300"]),
    "learned_augmentation": ("search_spaces/learned_augmentation.yaml", ["dataset.name=digits", "budget.epochs=1"]),
}


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_run_prints_finite_metrics_as_the_last_line(name, tmp_path, cache_dir, capsys, monkeypatch):
    space, assignments, *step = SMOKE[name]
    sets = ["--step", *step] if step else []
    sets += [arg for value in [*assignments, "evaluation.epochs=2", "evaluation.num_eval=1", "tune.scheduler.kind=fifo",
                               f"cache_dir={cache_dir}"]
            for arg in ("--set", value)]
    monkeypatch.chdir(tmp_path)
    code = main(["run", str(REPO / space), *sets])  # in-process; the entry point's own subprocess test is below
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    metrics = json.loads(out.strip().splitlines()[-1])
    assert all(math.isfinite(metrics[k]) for k in ("accuracy", "val_accuracy", "cas", "baseline_accuracy", "gain", "fid")), err


def test_run_with_an_unavailable_dataset_exits_2_with_one_line(tmp_path):
    result = run_cli("run", str(REPO / "search_spaces/quickstart.yaml"), "--set", "dataset.name=cifar100",
                     "--set", "dataset.download=false", "--set", f"dataset.root={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "cifar100" in result.stderr


def test_a_defect_exits_3_with_its_traceback_not_1_as_for_failed_trials(monkeypatch, capsys):
    """A queue reads 1 as "the sweep finished, some trials failed"; a crash of raysynth itself must not."""
    import raysynth.cli as cli

    def broken(args):
        raise AttributeError("'TrialEvents' object has no attribute 'clock'")

    monkeypatch.setattr(cli, "cmd_datasets", broken)
    code = main(["datasets"])
    assert code == cli.INTERNAL_ERROR == 3 and "Traceback" in capsys.readouterr().err


HEAVY = ("torch", "numpy", "ot", "scipy.optimize", "ray", "mlflow")


@pytest.mark.parametrize("argv", [["validate", "search_spaces/ablation_expansive.yaml"], ["validate", "examples/noisy_copy.yaml"],
                                  ["validate", "search_spaces/quickstart.yaml", "--set", "evaluation.epoch=2"],
                                  ["datasets"], ["--help"]])
def test_the_fast_verbs_import_no_torch_ray_or_mlflow(argv):
    """`validate`, `datasets`, `--help` and their error paths answer without loading the heavy libraries."""
    import subprocess
    import sys

    code = ("import sys\nfrom raysynth.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.stderr.strip().splitlines()[-1] == "[]", result.stderr[-2000:]


@pytest.mark.slow
def test_ui_prints_its_url_once_the_server_answers_and_sigterm_stops_it_whole(tmp_path):
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/m.db"
    MlflowClient(uri).create_experiment("browse")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ui = subprocess.Popen([sys.executable, "-m", "raysynth.cli", "ui", "--tracking-uri", uri, "--port", str(port)],
                          stderr=subprocess.PIPE, text=True)
    try:
        line = ui.stderr.readline()  # printed only once the server answers
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            status = answer.status
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=60)
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", f"--port {port}"], capture_output=True, text=True).stdout.split()
    assert f"http://127.0.0.1:{port}" in line and status == 200 and not left, (line, left)
