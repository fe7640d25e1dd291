"""Networks trained once per machine and reused by later trials: a state dict on disk, keyed by content."""

from __future__ import annotations

import fcntl
import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import torch


@contextmanager
def file_lock(path: Path):
    """An exclusive lock on ``path`` (concurrent trials on one node train a cached network once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def content_key(settings: dict[str, Any]) -> str:
    """A short stable hash of JSON-able ``settings``."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached_state(path: Path, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The state dict stored at ``path``, or ``compute()``'s, stored there atomically; one trial computes
    it while the others on the node wait for it."""
    with file_lock(path.with_suffix(".lock")):
        if path.exists():
            return torch.load(path, map_location="cpu", weights_only=True)  # state dicts only: a cache file runs no code
        state = {k: v.detach().cpu() for k, v in compute().items()}
        temporary = path.with_suffix(".tmp")
        torch.save(state, temporary)
        temporary.rename(path)
        return state
