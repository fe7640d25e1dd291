"""A trial's progress as plain data, so an interrupted trial continues where it stopped.

What is kept: the metrics of finished seeds, the synthetic set of the seed being evaluated, each
evaluation's finished classifier accuracies and the state of the classifier in training (model,
optimizer, schedule, batch-order generator), and whatever state a method saves between its epochs.
Saving it somewhere (a Tune checkpoint) is the caller's business: the runner only calls ``save``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

STATE_FILE = "trial_state.pt"


@dataclass
class TrialState:
    seeds_done: dict[int, dict[str, float]] = field(default_factory=dict)
    synthetic: dict[int, tuple[torch.Tensor, torch.Tensor, dict]] = field(default_factory=dict)
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)
    method: dict[int, Any] = field(default_factory=dict)
    step: int = 0

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / STATE_FILE
        torch.save(self.__dict__, path)
        return path

    @classmethod
    def read(cls, folder: Path) -> "TrialState":
        return cls(**torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False))


@dataclass
class Checkpointer:
    """Holds the state and asks ``save`` to persist it: always between phases (a finished fit, a
    finished seed), and within a phase at most once every ``interval_s`` seconds (0: at every chance)."""

    state: TrialState = field(default_factory=TrialState)
    save: Callable[[TrialState], None] | None = None
    interval_s: float = 60.0
    _last: float = field(default_factory=time.monotonic)

    def checkpoint(self) -> None:
        if self.save is not None:
            self.save(self.state)
            self._last = time.monotonic()

    def due(self) -> bool:
        return self.save is not None and time.monotonic() - self._last >= self.interval_s


class MethodCheckpoint:
    """What a method gets (``budget.checkpoint``) to save its state between epochs and find it again."""

    def __init__(self, checkpointer: Checkpointer, seed: int):
        self._checkpointer, self._seed = checkpointer, seed

    def load(self) -> Any | None:
        """The state the method saved last for this seed, or None on a fresh start."""
        return self._checkpointer.state.method.get(self._seed)

    def save(self, make_state: Callable[[], Any]) -> None:
        """When a trial checkpoint is due, keeps ``make_state()`` (tensors, dicts, numbers) and checkpoints.
        The state is built only then: a method may offer it every epoch at no cost (the state of an
        unfinished fit matters only in a persisted checkpoint; a finished fit's is dropped)."""
        if self._checkpointer.due():
            self._checkpointer.state.method[self._seed] = make_state()
            self._checkpointer.checkpoint()
