"""A trial's progress as plain data, so an interrupted trial continues where it stopped.

What is kept: the metrics of finished seeds, the synthetic set of the seed being evaluated, each
evaluation's finished classifier accuracies and the state of the classifier in training (model,
optimizer, schedule, batch-order generator), and whatever state a method saves between its epochs.
Saving it somewhere (a Tune checkpoint) is the caller's business: the runner only calls ``save``.
"""

from __future__ import annotations

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
    """Holds the state and asks ``save`` to persist it at most every ``every_epochs`` classifier epochs."""

    state: TrialState = field(default_factory=TrialState)
    save: Callable[[TrialState], None] | None = None
    every_epochs: int = 10
    restored: bool = False

    def checkpoint(self) -> None:
        if self.save is not None:
            self.save(self.state)

    def due(self, epoch: int) -> bool:
        return self.save is not None and self.every_epochs > 0 and epoch % self.every_epochs == 0


class MethodCheckpoint:
    """What a method gets (``budget.checkpoint``) to save its state between epochs and find it again."""

    def __init__(self, checkpointer: Checkpointer, seed: int):
        self._checkpointer, self._seed = checkpointer, seed

    def load(self) -> Any | None:
        """The state the method saved last for this seed, or None on a fresh start."""
        return self._checkpointer.state.method.get(self._seed)

    def save(self, state: Any) -> None:
        """Keeps ``state`` (tensors, dicts, numbers) and checkpoints the trial."""
        self._checkpointer.state.method[self._seed] = state
        self._checkpointer.checkpoint()
