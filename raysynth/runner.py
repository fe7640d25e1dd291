"""One trial, in-process: for each seed, split -> Method.fit -> SyntheticSet -> evaluate.

Shared by ``raysynth run`` and the Ray trainable; it knows nothing of Ray or MLflow. What happens is
told to an observer (progress metrics, each seed's result), which the caller maps to its own sinks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from raysynth.checkpointing import Checkpointer, MethodCheckpoint
from raysynth.data import ImageDataset, Split, load_dataset, make_split
from raysynth.errors import NonFiniteLossError, RaysynthError
from raysynth.evaluation import Evaluator
from raysynth.methods import METHODS, FitContext, SyntheticSet
from raysynth.metrics import seed_spread_metrics
from raysynth.spec import SweepSpec


class TrialObserver(Protocol):
    def on_seed_start(self, seed: int) -> None:
        """A seed's work begins (its split, fit and evaluation follow)."""

    def on_progress(self, seed: int, step: int, metrics: dict[str, float | str]) -> None:
        """Intermediate metrics (``train/*`` from the method, ``probe/*`` and ``eval/*`` from the evaluation;
        ``eval/set`` is a label, the rest numbers)."""

    def on_seed_end(self, seed: int, metrics: dict[str, float], synthetic: SyntheticSet, split: Split) -> None:
        """The final metrics and synthetic set of one seed."""


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RaysynthError("`device: cuda` but no CUDA device is visible to this trial; use device: auto")
        return torch.device("cuda")
    return torch.device("cpu")


def load_spec_dataset(spec: SweepSpec, name: str | None = None) -> ImageDataset:
    """The space's dataset (or the dataset ``name``) with the space's data settings."""
    root = Path(spec.dataset.root) if spec.dataset.root else None
    return load_dataset(name or spec.dataset.name, data_root=root, cache_dir=Path(spec.cache_dir),
                        allow_download=spec.dataset.download)


def check_synthetic(synthetic: SyntheticSet, split: Split, method: str) -> None:
    """A method's output must look like the dataset's images; say which rule it broke."""
    expected = (split.channels, split.image_size, split.image_size)
    if synthetic.images.ndim != 4 or tuple(synthetic.images.shape[1:]) != expected:
        raise RaysynthError(f"method `{method}` returned images of shape {tuple(synthetic.images.shape)}, expected N x {expected}")
    if len(synthetic.labels) == 0:
        raise RaysynthError(f"method `{method}` returned no images")
    if int(synthetic.labels.min()) < 0 or int(synthetic.labels.max()) >= split.num_classes:
        raise RaysynthError(f"method `{method}` returned labels outside 0..{split.num_classes - 1}")
    if not torch.isfinite(synthetic.images).all():
        raise NonFiniteLossError(f"method `{method}` returned non-finite pixels")
    outside = (synthetic.images - split.dataset.in_range(synthetic.images)).abs() > 1e-4
    if outside.any():  # a classifier would train on pixels no real image has
        raise RaysynthError(f"method `{method}` returned {100 * outside.float().mean():.1f} % of pixels outside the data "
                            "range (pixels in [0, 1] before normalizing); clamp with dataset.in_range")


def aggregate(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Mean over seeds of every metric, plus ``<metric>_seed_std`` (sample std, ddof 1) for the headline metrics."""
    keys = [k for k in per_seed[0] if all(k in m for m in per_seed)]
    result = {k: float(np.mean([m[k] for m in per_seed])) for k in keys}
    for key in seed_spread_metrics():
        if key in result and len(per_seed) > 1:
            result[f"{key}_seed_std"] = float(np.std([m[key] for m in per_seed], ddof=1))
    result["seeds"] = float(len(per_seed))
    return result


class MethodReporter:
    """The ``report`` callback a method gets: checks the losses are finite, then passes them on as ``train/*``."""

    def __init__(self, method: str, seed: int, observer: TrialObserver, log: Callable[[str], None],
                 next_step: Callable[[], int]):
        self.method, self.seed, self.observer, self.log, self.next_step = method, seed, observer, log, next_step

    def __call__(self, epoch: int, **metrics: float) -> None:
        bad = {k: v for k, v in metrics.items() if not math.isfinite(float(v))}
        if bad:
            raise NonFiniteLossError(f"method `{self.method}` loss became non-finite at epoch {epoch}: {bad}")
        self.observer.on_progress(self.seed, self.next_step(),
                                  {"train/epoch": float(epoch), **{f"train/{k}": float(v) for k, v in metrics.items()}})
        self.log(f"[{self.method} seed {self.seed}] epoch {epoch}: " + ", ".join(f"{k} {float(v):.4g}" for k, v in metrics.items()))


def run_trial(spec: SweepSpec, dataset: ImageDataset, observer: TrialObserver,
              log: Callable[[str], None] = lambda message: None, checkpointer: Checkpointer | None = None) -> dict[str, float]:
    """Runs ``spec`` (one configuration) over its seeds and returns the metrics averaged over seeds.

    With a ``checkpointer`` whose state came from an interrupted run, finished seeds are not run
    again, a finished fit is not repeated, and the evaluation continues from its last snapshot.
    """
    checkpointer = checkpointer or Checkpointer()
    state = checkpointer.state
    method_cls = METHODS.get(spec.method)
    method = method_cls(spec.params)
    device = resolve_device(spec.device)
    per_seed = []

    def next_step() -> int:  # one monotonic step across seeds and restarts, for metric histories and ASHA
        state.step += 1
        return state.step

    for index, seed in enumerate(spec.seeds):
        if seed in state.seeds_done:
            log(f"[{spec.method} seed {seed}] finished before the restart")
            per_seed.append(state.seeds_done[seed])
            continue
        observer.on_seed_start(seed)
        split = make_split(dataset, spec.dataset.images_per_class, seed, spec.dataset.validation_per_class)
        if seed in state.synthetic:
            images, labels, info, *copies = state.synthetic[seed]  # checkpoints before real_copies have 3 parts
            synthetic = SyntheticSet(images, labels, info, *copies)
            log(f"[{spec.method} seed {seed}] synthetic set restored from the checkpoint")
        else:
            report = MethodReporter(spec.method, seed, observer, log, next_step)
            log(f"[{spec.method} seed {seed}] fitting on {len(split.fewshot[1])} images of {dataset.name} "
                f"({spec.budget.epochs} epochs, {device.type})")
            context = FitContext(spec.budget.epochs, device, seed, MethodCheckpoint(checkpointer, seed),
                            cache_dir=Path(spec.cache_dir), load_dataset=lambda name: load_spec_dataset(spec, name))
            synthetic = method.fit(split, context, report)
            check_synthetic(synthetic, split, spec.method)
            state.synthetic[seed] = (synthetic.images.detach().cpu(), synthetic.labels.cpu(), dict(synthetic.info),
                                     synthetic.real_copies)
            state.method.pop(seed, None)
            checkpointer.checkpoint()
        log(f"[{spec.method} seed {seed}] {len(synthetic.labels)} synthetic images; evaluating")
        evaluator = Evaluator(spec.evaluation, split, probe=index == 0, device=device,
                              cache_dir=Path(spec.cache_dir), log=log, checkpointer=checkpointer,
                              on_metrics=lambda metrics, seed=seed: observer.on_progress(seed, next_step(), metrics))
        metrics = evaluator.evaluate(synthetic, method_cls.intent, method.references(split, seed),
                                     repeated_control=method_cls.equal_steps_control())
        log(f"[{spec.method} seed {seed}] accuracy {metrics['accuracy']:.2f} % (baseline {metrics['baseline_accuracy']:.2f} %"
            + (f", repeated {metrics['repeated_accuracy']:.2f} %" if "repeated_accuracy" in metrics else "")
            + f"), cas {metrics['cas']:.2f} %, fid {metrics['fid']:.3g}"
            + (f"; validation accuracy {metrics['val_accuracy']:.2f} %" if "val_accuracy" in metrics else ""))
        observer.on_seed_end(seed, metrics, synthetic, split)
        state.seeds_done[seed] = metrics
        state.synthetic.pop(seed, None)
        state.evaluations.clear()  # keyed by content and seed: nothing of this seed is needed again
        checkpointer.checkpoint()
        per_seed.append(metrics)
    return aggregate(per_seed)
