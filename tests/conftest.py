"""Shared fixtures: real datasets loaded once per session, one cache folder for the session."""

from __future__ import annotations

import os
import subprocess
import sys
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
