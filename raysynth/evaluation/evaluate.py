"""From a synthetic set to the contract metrics (see :mod:`raysynth.metrics`).

Every classifier trained here is scored twice: on the split's validation images (``val_*``, what
selection may use) and on the real test set (reported, never used for a choice). The probe that ASHA
early-stops on is measured on validation images too.
"""

from __future__ import annotations

import hashlib
import math
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from raysynth.checkpointing import Checkpointer
from raysynth.errors import NonFiniteLossError
from raysynth.data.splits import Split
from raysynth.evaluation.fid import FID_BACKENDS, FidContext, fid_between
from raysynth.evaluation.augment import policy_for
from raysynth.evaluation.protocol import classifier_key, test_accuracy, train_classifier
from raysynth.methods.base import Intent, SyntheticSet
from raysynth.metrics import EVALUATION_CLASSIFIER, EVALUATION_EPOCH, EVALUATION_SET, METRICS, PROBE_METRIC, PROBE_TIME
from raysynth.spec.schema import EvaluationSpec

MetricsCallback = Callable[[dict[str, float | str]], None]


@dataclass(frozen=True)
class Scores:
    """Accuracies (%) of ``num_eval`` classifiers trained on one set, on the test and validation images."""

    test: tuple[float, ...]
    validation: tuple[float, ...]

    def metrics(self, name: str) -> dict[str, float]:
        """``name``, ``name_std`` and, with validation images, ``val_name``, ``val_name_std``."""
        out = {name: _mean(self.test), f"{name}_std": _std(self.test)}
        if self.validation:
            out.update({f"val_{name}": _mean(self.validation), f"val_{name}_std": _std(self.validation)})
        return out


def _mean(values) -> float:
    return float(np.mean(values))


def _std(values) -> float:
    """Sample standard deviation (ddof 1); 0 for a single value."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _content_key(images: torch.Tensor, labels: torch.Tensor, extra: dict) -> str:
    digest = hashlib.sha1()
    digest.update(images.detach().cpu().contiguous().numpy().tobytes())
    digest.update(labels.cpu().numpy().tobytes())
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def repeated_fewshot(split: Split, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The few-shot set tiled to ``size`` images: as many SGD steps as a training set of that size,
    with no new information (the equal-steps control of expansion methods)."""
    images, labels = split.fewshot
    index = torch.arange(size) % len(labels)
    return images[index], labels[index]


class Evaluator:
    """Trains the protocol's classifiers on training sets of one split and scores them.

    Scores of real-only sets (the baselines) are cached on disk by content, so a sweep trains the
    baseline of a (dataset, seed, protocol) once, not once per trial.
    """

    def __init__(self, settings: EvaluationSpec, split: Split, *, device: torch.device, cache_dir: Path,
                 probe: bool = False, log: Callable[[str], None] = lambda message: None,
                 on_metrics: MetricsCallback = lambda m: None, checkpointer: Checkpointer | None = None):
        """``settings``: the space's ``evaluation`` section; ``probe``: report ``probe/val_accuracy`` every
        ``settings.probe_every`` epochs of the first classifier (ASHA's signal; the first seed of a trial)."""
        self.settings, self.split, self.device, self.cache_dir = settings, split, device, cache_dir
        self.probe_every = settings.probe_every if probe and len(split.validation_index) else 0
        self.policy = policy_for(split.dataset.name) if settings.augmentation == "dsa" else ()
        self.log, self.on_metrics = log, on_metrics
        # finished scores and the classifier in training, per training set: a memo within the trial,
        # and, saved with the trial's checkpoints, the evaluation's progress
        self.checkpointer = checkpointer or Checkpointer()
        self.progress = self.checkpointer.state.evaluations
        self.validation_key = hashlib.sha1(split.validation_index.numpy().tobytes()).hexdigest()[:12]

    def scores(self, name: str, images: torch.Tensor, labels: torch.Tensor, *, persist: bool = False,
               probe: bool = False) -> Scores:
        """Test and validation accuracies of ``num_eval`` classifiers trained on ``images``."""
        settings = self.settings
        key = _content_key(images, labels, {"protocol": classifier_key(settings, self.policy), "num_eval": settings.num_eval,
                                            "seed": self.split.seed, "dataset": self.split.dataset.name,
                                            "test": len(self.split.test[1]), "validation": self.validation_key})
        record = self.progress.setdefault(key, {"runs": [], "partial": None})
        path = self.cache_dir / "accuracy" / f"{key}.json"
        if not record["runs"] and path.exists():  # content-keyed: valid whoever wrote it
            record["runs"] = list(json.loads(path.read_text())["runs"])
            self.log(f"[eval {name}] cached: {_mean([r['test'] for r in record['runs']]):.2f} %")
        for index in range(len(record["runs"]), settings.num_eval):
            partial = record["partial"] if record["partial"] and record["partial"]["index"] == index else None
            if partial is not None:
                self.log(f"[eval {name}] classifier {index + 1}/{settings.num_eval}: resuming at epoch {partial['epoch']}")

            def on_snapshot(epoch: int, make_snapshot, index: int = index) -> None:
                if self.checkpointer.due():
                    record["partial"] = {"index": index, **make_snapshot()}
                    self.checkpointer.checkpoint()

            model = train_classifier(images, labels, num_classes=self.split.num_classes, protocol=settings,
                                     seed=self.split.seed * 1000 + index, device=self.device, policy=self.policy,
                                     on_epoch=self._epoch_callback(name, index, probe and index == 0),
                                     resume=partial, on_snapshot=on_snapshot if self.checkpointer.save else None)
            run = {"test": 100.0 * test_accuracy(model, *self.split.test, self.device)}
            if len(self.split.validation_index):
                run["validation"] = 100.0 * test_accuracy(model, *self.split.validation, self.device)
            record["runs"].append(run)
            record["partial"] = None
            self.log(f"[eval {name}] classifier {index + 1}/{settings.num_eval}: test {run['test']:.2f} %"
                     + (f", validation {run['validation']:.2f} %" if "validation" in run else ""))
        runs = record["runs"]
        if persist and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{id(self)}.tmp")
            temporary.write_text(json.dumps({"runs": runs}))
            temporary.rename(path)
        return Scores(tuple(r["test"] for r in runs), tuple(r["validation"] for r in runs if "validation" in r))

    def _epoch_callback(self, name: str, index: int, probe: bool):
        epochs = self.settings.epochs
        log_every = max(1, epochs // 5)
        probe_every = self.probe_every

        def on_epoch(epoch: int, loss: float, model) -> None:
            progress = {}
            if epoch % log_every == 0 or epoch == epochs:
                self.log(f"[eval {name}] classifier {index + 1}/{self.settings.num_eval} epoch {epoch}/{epochs} loss {loss:.4f}")
                progress[EVALUATION_EPOCH] = epoch
            if probe and probe_every and (epoch % probe_every == 0 or epoch == epochs):
                progress.update({PROBE_METRIC: 100.0 * test_accuracy(model, *self.split.validation, self.device),
                                 PROBE_TIME: epoch, EVALUATION_EPOCH: epoch})
            if progress:
                self.on_metrics({**progress, EVALUATION_CLASSIFIER: index + 1, EVALUATION_SET: name})

        return on_epoch

    def fids(self, synthetic: torch.Tensor) -> dict[str, float]:
        """``fid`` against the real test images and ``val_fid`` against the validation images."""
        context = FidContext(self.split.dataset, self.device, self.cache_dir, self.settings.inception_weights, self.log)
        space = FID_BACKENDS.get(self.settings.fid)(context)
        limit = self.settings.fid_samples
        out = {"fid": fid_between(space, synthetic[:limit], self.split.test[0][:limit])}
        if len(self.split.validation_index) >= 2:
            out["val_fid"] = fid_between(space, synthetic[:limit], self.split.validation[0][:limit])
        return out

    def evaluate(self, synthetic: SyntheticSet, intent: Intent,
                 references: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                 repeated_control: bool = False) -> dict[str, float]:
        """The contract metrics of ``synthetic`` for a method of ``intent``; for each named real-derived
        reference set also ``<name>_accuracy`` and ``gain_vs_<name>``; with ``repeated_control`` the
        few-shot set repeated to the training set's size as the reference ``repeated``."""
        fewshot_images, fewshot_labels = self.split.fewshot
        if intent is Intent.EXPANSION:
            copies = synthetic.real_copies
            train_images = torch.cat([fewshot_images.repeat(copies, 1, 1, 1), synthetic.images.cpu()])
            train_labels = torch.cat([fewshot_labels.repeat(copies), synthetic.labels.cpu()])
        else:
            train_images, train_labels = synthetic.images.cpu(), synthetic.labels.cpu()
        metrics = self.scores("accuracy", train_images, train_labels, probe=True).metrics("accuracy")
        metrics.update(self.scores("cas", synthetic.images.cpu(), synthetic.labels.cpu()).metrics("cas"))
        if intent is Intent.CONDENSATION:
            per_class = max(1, len(synthetic.labels) // self.split.num_classes)
            baseline_images, baseline_labels = self.split.random_subset(per_class)
        else:
            baseline_images, baseline_labels = fewshot_images, fewshot_labels
        references = dict(references or {})
        if repeated_control and len(train_labels) > len(fewshot_labels):
            references["repeated"] = repeated_fewshot(self.split, len(train_labels))
        compared = {"baseline_accuracy": self.scores("baseline", baseline_images, baseline_labels, persist=True)}
        for name, (images, labels) in references.items():
            compared[f"{name}_accuracy"] = self.scores(name, images, labels, persist=True)
        for metric, scores in compared.items():
            metrics.update(scores.metrics(metric))
            gain = "gain" if metric == "baseline_accuracy" else f"gain_vs_{metric.removesuffix('_accuracy')}"
            for prefix in ("", "val_"):
                if f"{prefix}{metric}" in metrics and f"{prefix}accuracy" in metrics:
                    metrics[f"{prefix}{gain}"] = metrics[f"{prefix}accuracy"] - metrics[f"{prefix}{metric}"]
        metrics.update(self.fids(synthetic.images.cpu()))
        metrics["synthetic_images"] = float(len(synthetic.labels))
        metrics["training_images"] = float(len(train_labels))
        # a method's extra measurements never overwrite a contract metric
        metrics.update({f"info/{k}": v for k, v in synthetic.info.items() if f"info/{k}" not in METRICS})
        bad = {k: v for k, v in metrics.items() if k in METRICS and not math.isfinite(float(v))}
        if bad:
            raise NonFiniteLossError(f"the evaluation produced non-finite metrics {bad}")
        return {k: float(v) for k, v in metrics.items()}
