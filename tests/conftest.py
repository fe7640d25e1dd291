"""Shared fixtures: real datasets loaded once per session, one cache folder for the session."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from raysynth.data import load_dataset
from raysynth.data.datasets import DATASETS

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("raysynth-cache")


@pytest.fixture(scope="session")
def digits(cache_dir):
    return load_dataset("digits", data_root=None, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def fashion_mnist(cache_dir):
    source = DATASETS.get("fashion-mnist")
    if source.locate(None, cache_dir) is None:
        pytest.skip("Fashion-MNIST is not installed here (apt-get install -y dataset-fashion-mnist)")
    return load_dataset("fashion-mnist", data_root=None, cache_dir=cache_dir, allow_download=False)


def run_cli(*args: str, cwd: Path, env_extra: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs the real ``raysynth`` entry point in a subprocess."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "raysynth.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 with a SQLite store; ``stop``/``start`` keep port and store."""

    def __init__(self, folder: Path, app_name: str | None = None, env: dict | None = None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.folder, self.url, self.process = folder, f"http://127.0.0.1:{self.port}", None
        self.app_name, self.env = app_name, env

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.folder}/server.db",
             "--artifacts-destination", str(self.folder / "server-artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1", *(["--app-name", self.app_name] if self.app_name else [])],
            stdout=subprocess.DEVNULL, stderr=open(self.folder / "server.log", "w"), start_new_session=True,
            env={**os.environ, **(self.env or {})})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not start: {(self.folder / 'server.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    yield server
    server.stop()
