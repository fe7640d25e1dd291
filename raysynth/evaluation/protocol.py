"""The classifier training protocol of the dataset-condensation benchmarks.

SGD (momentum 0.9, weight decay 5e-4), lr 0.01 decayed x0.1 at half the epochs, batch 256,
``num_eval`` independently initialized classifiers, accuracy on the full real test set.
The training set lives as one tensor on the device: batches are index slices, no DataLoader.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

from raysynth.errors import NonFiniteLossError
from raysynth.evaluation.augment import dsa_augment
from raysynth.nets.classifiers import build_classifier
from raysynth.spec.schema import EvaluationSpec

EpochCallback = Callable[[int, float, nn.Module], None]

# channels_last: faster convolutions on CUDA and, measured here, ~3 % on CPU (oneDNN) as well
MEMORY_FORMAT = torch.channels_last


def classifier_key(protocol: EvaluationSpec, policy: tuple[str, ...] = ()) -> dict:
    """What decides a trained classifier besides its data and seed (part of the cache keys)."""
    return {"classifier": protocol.classifier, "width": protocol.width, "epochs": protocol.epochs, "lr": protocol.lr,
            "momentum": protocol.momentum, "weight_decay": protocol.weight_decay, "batch_size": protocol.batch_size,
            "augmentation": tuple(policy)}


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def build_seeded(protocol: EvaluationSpec, *, channels: int, num_classes: int, image_size: int, seed: int) -> nn.Module:
    """A classifier initialized from ``seed`` without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_classifier(protocol.classifier, channels=channels, num_classes=num_classes,
                                image_size=image_size, width=protocol.width)


def train_classifier(images: torch.Tensor, labels: torch.Tensor, *, num_classes: int, protocol: EvaluationSpec,
                     seed: int, device: torch.device, policy: tuple[str, ...] = (), on_epoch: EpochCallback | None = None,
                     resume: dict | None = None,
                     on_snapshot: Callable[[int, Callable[[], dict]], None] | None = None) -> nn.Module:
    """Trains one classifier of ``protocol`` on ``images``/``labels`` and returns it in eval mode;
    ``policy``: the differentiable augmentations applied to every batch (``evaluation.augmentation: dsa``).

    ``on_snapshot(epoch, make_snapshot)`` is called after every epoch but the last; ``make_snapshot()``
    returns the full training state, and passing it back as ``resume`` continues the run exactly.
    """
    model = build_seeded(protocol, channels=images.shape[1], num_classes=num_classes, image_size=images.shape[-1], seed=seed)
    model = model.to(device, memory_format=MEMORY_FORMAT)
    images = images.to(device, memory_format=MEMORY_FORMAT)
    labels = labels.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=protocol.lr, momentum=protocol.momentum,
                                weight_decay=protocol.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[max(1, protocol.epochs // 2)], gamma=0.1)
    generator = torch.Generator().manual_seed(seed + 1)
    first_epoch = 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        generator.set_state(resume["generator"])
        first_epoch = resume["epoch"] + 1
    n = len(labels)
    model.train()
    for epoch in range(first_epoch, protocol.epochs + 1):
        order = torch.randperm(n, generator=generator).to(device)
        total_loss = torch.zeros((), device=device)
        for start in range(0, n, protocol.batch_size):
            batch = order[start:start + protocol.batch_size]
            x, y = images[batch], labels[batch]
            if policy:
                x = dsa_augment(x, generator, policy)
            with _autocast(device):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * len(batch)  # stays on the device: no sync per batch
        scheduler.step()
        epoch_loss = float(total_loss) / n  # one synchronization per epoch
        if not math.isfinite(epoch_loss):
            raise NonFiniteLossError(f"the evaluation classifier's loss became non-finite ({epoch_loss}) at epoch {epoch} "
                                     f"(evaluation.lr={protocol.lr}); lower evaluation.lr")
        if on_epoch is not None:
            on_epoch(epoch, epoch_loss, model)
        if on_snapshot is not None and epoch < protocol.epochs:
            on_snapshot(epoch, lambda epoch=epoch: {"epoch": epoch, "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                        "generator": generator.get_state()})
    return model.eval()


@torch.no_grad()
def test_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                  batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on the given test images, in [0, 1]."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        x = images[start:start + batch_size].to(device, memory_format=MEMORY_FORMAT)
        with _autocast(device):
            predicted = model(x).argmax(dim=1)
        correct += int((predicted.cpu() == labels[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / len(labels)
