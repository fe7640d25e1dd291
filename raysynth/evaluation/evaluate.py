"""From a synthetic set to the contract metrics: accuracy, accuracy_std, cas, baseline_accuracy, gain, fid."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from raysynth.checkpointing import Checkpointer
from raysynth.data.splits import Split
from raysynth.evaluation.fid import FID_BACKENDS, FidContext, fid_between
from raysynth.evaluation.protocol import ClassifierProtocol, test_accuracy, train_classifier
from raysynth.methods.base import Intent, SyntheticSet

MetricsCallback = Callable[[dict[str, float]], None]


@dataclass(frozen=True)
class EvaluationSettings:
    """The evaluation of one trial (``evaluation.*`` of the space)."""

    protocol: ClassifierProtocol
    num_eval: int = 3
    fid: str = "domain"
    fid_samples: int = 10000
    inception_weights: str | None = None
    probe_every: int = 0  # report `probe/accuracy` every this many epochs of the first classifier; 0: never
    probe_samples: int = 1000


def _content_key(images: torch.Tensor, labels: torch.Tensor, extra: dict) -> str:
    digest = hashlib.sha1()
    digest.update(images.detach().cpu().contiguous().numpy().tobytes())
    digest.update(labels.cpu().numpy().tobytes())
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


class Evaluator:
    """Trains the protocol's classifiers on training sets of one split and tests them on its test set.

    Accuracies of real-only sets (the baselines) are cached on disk by content, so a sweep trains the
    baseline of a (dataset, seed, protocol) once, not once per trial.
    """

    def __init__(self, settings: EvaluationSettings, split: Split, *, device: torch.device, cache_dir: Path,
                 log: Callable[[str], None] = lambda message: None, on_metrics: MetricsCallback = lambda m: None,
                 checkpointer: Checkpointer | None = None):
        self.settings, self.split, self.device, self.cache_dir = settings, split, device, cache_dir
        self.log, self.on_metrics = log, on_metrics
        # finished accuracies and the classifier in training, per training set: a memo within the
        # trial, and, saved with the trial's checkpoints, the evaluation's progress
        self.checkpointer = checkpointer or Checkpointer()
        self.progress = self.checkpointer.state.evaluations

    def accuracy(self, name: str, images: torch.Tensor, labels: torch.Tensor, *, persist: bool = False,
                 probe: bool = False) -> tuple[float, float]:
        """Mean and std test accuracy (in %) of ``num_eval`` classifiers trained on ``images``."""
        settings = self.settings
        key = _content_key(images, labels, {"protocol": settings.protocol.cache_key(), "num_eval": settings.num_eval,
                                            "seed": self.split.seed, "dataset": self.split.dataset.name,
                                            "test": len(self.split.test[1])})
        record = self.progress.setdefault(key, {"accuracies": [], "partial": None})
        path = self.cache_dir / "accuracy" / f"{key}.json"
        if not record["accuracies"] and path.exists():  # content-keyed: valid whoever wrote it
            cached = json.loads(path.read_text())
            self.log(f"[eval {name}] cached: {cached['mean']:.2f} ± {cached['std']:.2f} %")
            record["accuracies"] = list(cached["runs"])
        test_images, test_labels = self.split.test
        for index in range(len(record["accuracies"]), settings.num_eval):
            partial = record["partial"] if record["partial"] and record["partial"]["index"] == index else None
            if partial is not None:
                self.log(f"[eval {name}] classifier {index + 1}/{settings.num_eval}: resuming at epoch {partial['epoch']}")

            def on_snapshot(epoch: int, make_snapshot, index: int = index) -> None:
                if self.checkpointer.due():
                    record["partial"] = {"index": index, **make_snapshot()}
                    self.checkpointer.checkpoint()

            model = train_classifier(images, labels, num_classes=self.split.num_classes, protocol=settings.protocol,
                                     seed=self.split.seed * 1000 + index, device=self.device,
                                     on_epoch=self._epoch_callback(name, index, probe and index == 0),
                                     resume=partial, on_snapshot=on_snapshot if self.checkpointer.save else None)
            record["accuracies"].append(100.0 * test_accuracy(model, test_images, test_labels, self.device))
            record["partial"] = None
            self.log(f"[eval {name}] classifier {index + 1}/{settings.num_eval}: {record['accuracies'][-1]:.2f} %")
        accuracies = record["accuracies"]
        result = (float(np.mean(accuracies)), float(np.std(accuracies)))
        if persist and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{id(self)}.tmp")
            temporary.write_text(json.dumps({"mean": result[0], "std": result[1], "runs": accuracies}))
            temporary.rename(path)
        return result

    def _epoch_callback(self, name: str, index: int, probe: bool):
        epochs = self.settings.protocol.epochs
        log_every = max(1, epochs // 5)
        probe_every = self.settings.probe_every
        test_images, test_labels = self.split.test
        probe_images, probe_labels = test_images[: self.settings.probe_samples], test_labels[: self.settings.probe_samples]

        def on_epoch(epoch: int, loss: float, model) -> None:
            if epoch % log_every == 0 or epoch == epochs:
                self.log(f"[eval {name}] classifier {index + 1}/{self.settings.num_eval} epoch {epoch}/{epochs} loss {loss:.4f}")
            if probe and probe_every and (epoch % probe_every == 0 or epoch == epochs):
                accuracy = 100.0 * test_accuracy(model, probe_images, probe_labels, self.device)
                self.on_metrics({"probe/accuracy": accuracy, "probe/epoch": epoch})

        return on_epoch

    def fid(self, synthetic: torch.Tensor) -> float:
        context = FidContext(self.split.dataset, self.device, self.cache_dir, self.settings.inception_weights, self.log)
        space = FID_BACKENDS.get(self.settings.fid)(context)
        real = self.split.test[0][: self.settings.fid_samples]
        return fid_between(space, synthetic[: self.settings.fid_samples], real)

    def evaluate(self, synthetic: SyntheticSet, intent: Intent,
                 references: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> dict[str, float]:
        """The contract metrics of ``synthetic`` for a method of ``intent``; for each named real-derived
        reference set also ``<name>_accuracy`` and ``gain_vs_<name>``."""
        fewshot_images, fewshot_labels = self.split.fewshot
        if intent is Intent.EXPANSION:
            train_images = torch.cat([fewshot_images, synthetic.images.cpu()])
            train_labels = torch.cat([fewshot_labels, synthetic.labels.cpu()])
        else:
            train_images, train_labels = synthetic.images.cpu(), synthetic.labels.cpu()
        accuracy, accuracy_std = self.accuracy("accuracy", train_images, train_labels, probe=True)
        cas, cas_std = self.accuracy("cas", synthetic.images.cpu(), synthetic.labels.cpu())
        if intent is Intent.CONDENSATION:
            per_class = max(1, len(synthetic.labels) // self.split.num_classes)
            baseline_images, baseline_labels = self.split.random_subset(per_class)
        else:
            baseline_images, baseline_labels = fewshot_images, fewshot_labels
        baseline, baseline_std = self.accuracy("baseline", baseline_images, baseline_labels, persist=True)
        compared = {}
        for name, (images, labels) in (references or {}).items():
            reference, reference_std = self.accuracy(name, images, labels, persist=True)
            compared.update({f"{name}_accuracy": reference, f"{name}_accuracy_std": reference_std,
                             f"gain_vs_{name}": accuracy - reference})
        fid = self.fid(synthetic.images.cpu())
        metrics = {**compared, "accuracy": accuracy, "accuracy_std": accuracy_std, "cas": cas, "cas_std": cas_std,
                   "baseline_accuracy": baseline, "baseline_accuracy_std": baseline_std,
                   "gain": accuracy - baseline, "fid": fid, "synthetic_images": float(len(synthetic.labels))}
        metrics.update(synthetic.info)
        return {k: float(v) for k, v in metrics.items()}
