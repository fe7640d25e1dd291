"""The method contract: ``fit(split, context, report) -> SyntheticSet``. No Ray, no MLflow here."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Protocol

from pydantic import Field

from raysynth.data.datasets import DataInfo, ImageDataset
from raysynth.params import Params
from raysynth.registry import Registry

if TYPE_CHECKING:  # the contract's declarations load without torch (raysynth validate stays fast)
    import numpy as np
    import torch

    from raysynth.checkpointing import MethodCheckpoint
    from raysynth.data.splits import Split


class Intent(str, Enum):
    """Which training set a method's ``accuracy`` is measured on (docs/design.md, metrics)."""

    EXPANSION = "expansion"  # the real few-shot set plus the synthetic images
    CONDENSATION = "condensation"  # the condensed set alone; baseline: a random real subset of its size
    GENERATION = "generation"  # the synthetic images alone


class NoParams(Params):
    """This method takes no parameters."""


class CondensationParams(Params):
    """Parameters of a method that makes a fixed number of images per class (condensation)."""

    images_per_class: int | None = Field(None, ge=1, le=100_000, description="images per class of the set; None: `dataset.images_per_class`")

    def per_class(self, split: Split) -> int:
        return self.images_per_class or split.images_per_class

    def check_for(self, data: DataInfo) -> Iterator[tuple[str, str]]:
        per_class = self.images_per_class or data.images_per_class
        if per_class > data.usable_per_class:
            yield ("images_per_class", f"{per_class} images per class, but `{data.name}`'s smallest class has "
                   f"{data.usable_per_class} outside the {data.validation_per_class} validation images; use at most "
                   f"{data.usable_per_class}")


@dataclass(frozen=True)
class FitContext:
    """What a fit gets besides the data: its epochs (``budget.epochs``; what one counts, the method's
    ``epoch_counts`` says), the device, and the seed its random streams derive from.

    Randomness comes from named streams (:meth:`torch_rng`, :meth:`numpy_rng`, :meth:`seeded_init`):
    each is a function of the seed and its name, so adding a stream never shifts another, and a method
    never touches the global random state it was called with.

    ``cache_dir`` (when given) is where a method may keep networks worth training once per machine
    (e.g. a pretrained autoencoder); ``load_dataset(name)`` returns another registered dataset (for
    pretraining on a larger similar set), resolved by the caller with the sweep's data settings.
    ``checkpoint`` (when the caller keeps checkpoints) is used through :meth:`resumable`.
    """

    epochs: int
    device: torch.device
    seed: int
    checkpoint: "MethodCheckpoint | None" = None
    cache_dir: Path | None = None
    load_dataset: "Callable[[str], ImageDataset] | None" = None

    def seed_for(self, stream: str) -> int:
        """The seed of the stream called ``stream`` (63 bits of SHA-256 of the fit's seed and the name)."""
        digest = hashlib.sha256(f"{self.seed}/{stream}".encode()).digest()
        return int.from_bytes(digest[:8], "little") >> 1

    def torch_rng(self, stream: str) -> torch.Generator:
        """A CPU ``torch.Generator`` for the named stream (e.g. ``"pairs"``, ``"batches"``)."""
        import torch

        return torch.Generator().manual_seed(self.seed_for(stream))

    def numpy_rng(self, stream: str) -> np.random.Generator:
        """A numpy ``Generator`` for the named stream."""
        import numpy as np

        return np.random.default_rng(self.seed_for(stream))

    @contextmanager
    def seeded_init(self, stream: str = "init") -> Iterator[None]:
        """Within: torch's global generator seeded from the named stream (module initialization draws from
        it); after: the caller's global state, untouched."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed_for(stream))
            yield

    def resumable(self, epochs: int, phase: str = "fit", **objects: Any) -> Iterator[int]:
        """The epochs of one training phase: ``for epoch in context.resumable(n, model=m, optimizer=o, rng=g)``.

        After a restart it restores ``objects`` (modules, optimizers, schedulers, torch generators,
        tensors trained in place) and continues after the last saved epoch; after each epoch it offers
        their state to the trial's checkpoint (saved when one is due). A fit with several phases names
        each (``phase="encoder"``, ``phase="glo"``), in the order they run."""
        from raysynth.checkpointing import resumable

        return resumable(self.checkpoint, epochs, phase, objects)


class Report(Protocol):
    def __call__(self, step: int, **metrics: float) -> None: ...


@dataclass(frozen=True)
class SyntheticSet:
    """A labelled synthetic image set, normalized like the dataset it was made from."""

    images: torch.Tensor
    labels: torch.Tensor
    info: dict[str, float] = field(default_factory=dict)  # extra scalar metrics the method measured
    # expansion methods: how many times the real few-shot set enters the training set beside these
    # images (a large synthetic pool can be balanced against the few real ones, e.g. 50/50 per batch)
    real_copies: int = 1

    def __post_init__(self):
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.real_copies < 1:
            raise ValueError(f"real_copies must be at least 1, not {self.real_copies}")

    def per_class_counts(self, num_classes: int) -> list[int]:
        import torch

        return torch.bincount(self.labels.cpu(), minlength=num_classes).tolist()


class Method(ABC):
    """A synthesis method. Subclasses set ``intent``, optionally ``Params``, and implement ``fit``."""

    name: ClassVar[str]
    Params: ClassVar[type[Params]] = NoParams
    intent: ClassVar[Intent]
    uses_remainder: ClassVar[bool] = False  # reads the training images outside the few-shot set
    labels_given: ClassVar[bool] = True  # synthetic labels are the classes asked for (False: inferred, e.g. clusters)
    smoke_params: ClassVar[dict] = {}  # parameters that make a fit take seconds (the registry-wide tests use them)
    epoch_counts: ClassVar[str] = "nothing: the method does not train"  # what one of `budget.epochs` is (validate prints it)

    def __init__(self, params: Params):
        self.params = params

    @abstractmethod
    def fit(self, split: Split, context: FitContext, report: Report) -> SyntheticSet:
        """Fits on ``split`` with what ``context`` allows (epochs, device, seed) and returns the synthetic set."""

    @classmethod
    def equal_steps_control(cls) -> bool:
        """Whether the evaluation adds ``repeated_accuracy``: the few-shot set repeated to the size of the
        set ``accuracy`` trains on, so that a gain from more SGD steps is not read as a gain from synthesis."""
        return cls.intent is Intent.EXPANSION

    def references(self, split: Split, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Extra real-derived training sets to compare against, by name: the evaluation logs
        ``<name>_accuracy`` and ``gain_vs_<name>`` for each (e.g. classic augmentation at equal size)."""
        return {}


METHODS: Registry[type[Method]] = Registry("method")


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: registers a method under ``name``."""

    def decorate(cls: type[Method]) -> type[Method]:
        cls.name = name
        return METHODS.register(name)(cls)

    return decorate


def report_due(step: int, total: int, times: int = 50) -> bool:
    """Whether ``step`` of ``total`` is one of about ``times`` evenly spaced reports (the last always is)."""
    return step == total or step % max(1, total // times) == 0
