"""Fréchet distance between synthetic and real test images, in a registered feature space.

Backends:
- ``domain`` (default): penultimate features of a ConvNet trained once on the dataset's whole real
  training set; its weights are cached on disk keyed by dataset and settings, so the network is
  trained once per machine, not per trial, and no weights are downloaded.
- ``inception``: torchmetrics' ``FrechetInceptionDistance`` (InceptionV3 pool features, 2048-d),
  which needs the ``inception`` extra and the FID Inception weights (``evaluation.inception_weights``
  for offline machines).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import scipy.linalg
import torch

from raysynth.data.datasets import ImageDataset
from raysynth.diskcache import cached_state, content_key
from raysynth.errors import RaysynthError
from raysynth.evaluation.protocol import build_seeded, classifier_key, train_classifier
from raysynth.spec.schema import EvaluationSpec


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), with scipy's matrix square root."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product: the usual regularization of the FID code
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False))


class FeatureSpace(Protocol):
    def features(self, images: torch.Tensor) -> np.ndarray: ...


@dataclass(frozen=True)
class FidContext:
    """What a backend may use: the dataset, the device, a cache folder, and backend options."""

    dataset: ImageDataset
    device: torch.device
    cache_dir: Path
    inception_weights: str | None = None
    progress: Callable[[str], None] = lambda message: None


from raysynth.metrics import FID_BACKENDS  # noqa: E402 (the registry lives where names resolve without torch)

DOMAIN_STEPS = 600  # SGD steps of the domain network: ~89 % on Fashion-MNIST, ~97 % on digits


def domain_protocol(train_size: int) -> EvaluationSpec:
    """ConvNet-64 for at least ``DOMAIN_STEPS`` steps (3 to 100 epochs), so small datasets are trained too."""
    steps_per_epoch = math.ceil(train_size / 256)
    epochs = min(100, max(3, math.ceil(DOMAIN_STEPS / steps_per_epoch)))
    return EvaluationSpec(classifier="convnet", width=64, epochs=epochs, batch_size=256)


class DomainFeatures:
    """Penultimate features of a ConvNet-64 trained on the whole real training set (cached)."""

    def __init__(self, context: FidContext, seed: int = 0):
        self.device = context.device
        dataset = context.dataset
        protocol = domain_protocol(len(dataset.train_labels))
        key = content_key({"dataset": dataset.name, "n": len(dataset.train_labels), "seed": seed, **classifier_key(protocol)})
        path = context.cache_dir / "fid" / f"domain-{dataset.name}-{key}.pt"
        build = dict(channels=dataset.channels, num_classes=dataset.num_classes, image_size=dataset.image_size)

        def train() -> dict[str, torch.Tensor]:
            context.progress(f"training the domain FID network on all {len(dataset.train_labels)} "
                             f"{dataset.name} training images ({protocol.epochs} epochs, cached at {path})")
            return train_classifier(dataset.normalize(dataset.train_images), dataset.train_labels,
                                    num_classes=dataset.num_classes, protocol=protocol, seed=seed,
                                    device=context.device).state_dict()

        model = build_seeded(protocol, seed=seed, **build)
        model.load_state_dict(cached_state(path, train))
        self.model = model.to(self.device).eval()

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> np.ndarray:
        chunks = [self.model.embed(images[i:i + 1024].to(self.device)).float().cpu() for i in range(0, len(images), 1024)]
        return torch.cat(chunks).numpy()


class InceptionFeatures:
    """InceptionV3 pool features through torchmetrics' FID feature extractor."""

    def __init__(self, context: FidContext):
        try:
            from torchmetrics.image.fid import FrechetInceptionDistance
        except ImportError:
            raise RaysynthError("`evaluation.fid: inception` needs torch-fidelity: `uv sync --extra inception`") from None
        self.dataset, self.device = context.dataset, context.device
        try:
            metric = FrechetInceptionDistance(feature=2048, normalize=True,
                                              feature_extractor_weights_path=context.inception_weights)
        except (ModuleNotFoundError, ImportError):
            raise RaysynthError("`evaluation.fid: inception` needs torch-fidelity: `uv sync --extra inception`") from None
        except Exception as error:
            raise RaysynthError(
                "`evaluation.inception_weights`: the FID Inception weights could not be loaded "
                f"({type(error).__name__}); download pt_inception-2015-12-05 once and give its path"
            ) from None
        self.extractor = metric.inception.to(self.device).eval()

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> np.ndarray:
        chunks = []
        for i in range(0, len(images), 256):
            x = self.dataset.denormalize(images[i:i + 256].to(self.device))
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            chunks.append(self.extractor((x * 255).to(torch.uint8)).double().cpu())
        return torch.cat(chunks).numpy()


FID_BACKENDS.register("domain")(DomainFeatures)
FID_BACKENDS.register("inception")(InceptionFeatures)


def fid_between(space: FeatureSpace, synthetic: torch.Tensor, real: torch.Tensor) -> float:
    """FID of ``synthetic`` against ``real`` in ``space``."""
    mu1, sigma1 = gaussian_statistics(space.features(synthetic))
    mu2, sigma2 = gaussian_statistics(space.features(real))
    return frechet_distance(mu1, sigma1, mu2, sigma2)
