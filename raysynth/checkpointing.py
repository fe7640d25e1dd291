"""A trial's progress as plain data, so an interrupted trial continues where it stopped.

What is kept: the metrics of finished seeds, the synthetic set of the seed being evaluated, each
evaluation's finished classifier accuracies and the state of the classifier in training (model,
optimizer, schedule, batch-order generator), and whatever state a method saves between its epochs.
Saving it somewhere (a Tune checkpoint) is the caller's business: the runner only calls ``save``.
"""

from __future__ import annotations

import copy
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from raysynth.errors import RaysynthError

STATE_FILE = "trial_state.pt"


@dataclass
class TrialState:
    seeds_done: dict[int, dict[str, float]] = field(default_factory=dict)
    synthetic: dict[int, tuple[torch.Tensor, torch.Tensor, dict, int]] = field(default_factory=dict)
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
        """The state saved in ``folder``. Only tensors, state dicts and plain containers load
        (``weights_only``): a checkpoint in shared storage can never run code when a trial restores."""
        try:
            return cls(**torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True))
        except pickle.UnpicklingError as error:
            reason = " ".join(str(error).split())[:300]
            raise RaysynthError(f"refusing the checkpoint {folder / STATE_FILE}: it holds more than tensors and plain "
                                f"data ({reason})") from None


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
    """What a method gets (``context.checkpoint``) to keep its state between epochs, per phase of its fit
    (e.g. ``encoder`` then ``glo``), and find it again after a restart. Methods use it through
    :meth:`FitContext.resumable <raysynth.methods.FitContext.resumable>`."""

    def __init__(self, checkpointer: Checkpointer, seed: int):
        self._checkpointer, self._seed = checkpointer, seed

    def load(self, phase: str = "fit") -> Any | None:
        """The state the method saved last for this seed and phase, or None on a fresh start."""
        return (self._checkpointer.state.method.get(self._seed) or {}).get(phase)

    def save(self, make_state: Callable[[], Any], phase: str = "fit", final: bool = False) -> None:
        """When a trial checkpoint is due, keeps ``make_state()`` (tensors, dicts, numbers) and checkpoints.
        The state is built only then: a method may offer it every epoch at no cost. ``final``: the phase
        ended; its state is kept (copied) for the next checkpoint, since later phases do not repeat it."""
        due = self._checkpointer.due()
        if due or final:  # a phase's final state is copied: a later phase may train the same objects further
            state = make_state()
            self._checkpointer.state.method.setdefault(self._seed, {})[phase] = copy.deepcopy(state) if final else state
        if due:
            self._checkpointer.checkpoint()


def resumable(checkpoint: MethodCheckpoint | None, epochs: int, phase: str, objects: dict[str, Any]) -> Iterator[int]:
    """Epochs ``1..epochs``, or, after a restart, from the epoch after the last saved one with ``objects``
    restored; after each epoch's body, their state is offered to ``checkpoint`` (saved when one is due).

    ``objects`` by name: modules, optimizers and schedulers (``state_dict``), torch generators
    (``get_state``), tensors optimized in place (e.g. latent codes or synthetic images)."""
    saved = checkpoint.load(phase) if checkpoint is not None else None
    start = 1
    if saved is not None:
        _restore(objects, saved["state"])
        start = saved["epoch"] + 1
    for epoch in range(start, epochs + 1):
        yield epoch
        if checkpoint is not None:
            checkpoint.save(lambda epoch=epoch: {"epoch": epoch, "state": _snapshot(objects)}, phase, final=epoch == epochs)


def _snapshot(objects: dict[str, Any]) -> dict[str, Any]:
    state = {}
    for name, obj in objects.items():
        if isinstance(obj, torch.Generator):
            state[name] = obj.get_state()
        elif isinstance(obj, torch.Tensor):
            state[name] = obj.detach().cpu()
        elif obj is not None:
            state[name] = obj.state_dict()
    return state


def _restore(objects: dict[str, Any], state: dict[str, Any]) -> None:
    for name, obj in objects.items():
        if isinstance(obj, torch.Generator):
            obj.set_state(state[name])
        elif isinstance(obj, torch.Tensor):
            with torch.no_grad():
                obj.copy_(state[name])
        elif obj is not None:
            obj.load_state_dict(state[name])
