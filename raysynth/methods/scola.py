"""Method `scola`: supervised Clustered Optimization of LAtent space (seed paper 001, section 3.4).

GLO-style, non-adversarial: each few-shot image i gets a code z_i = (t_i, v_i / ||v_i||), t_i its
one-hot class, v_i a learned content code; the generator and the content codes are optimized
jointly under a Laplacian-pyramid (or perceptual, or L1) reconstruction loss. New images of a class
decode its one-hot with content codes sampled from a Gaussian fitted to the class's codes. The
classifier trains on "Mix": the real images plus synthetic ones making up `mix_ratio` of the set.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from raysynth.methods.base import (Budget, Intent, Method, Params, Report, SyntheticSet, register_method, report_due,
                                   seeded_generator)
from raysynth.nets.gan import DCGANGenerator
from raysynth.nets.glo import (InfoGANGenerator, LossKind, fit_content_gaussians, initial_content, reconstruction_criterion,
                               sample_content, train_glo)


class LatentParams(Params):
    dim: int = Field(64, ge=2, le=4096, description="d, the content part of the code (64 in the paper)")
    sigma: float = Field(1.0, gt=0, le=1e6, description="std of the content codes' initialization (before normalizing)")


class GloLossParams(Params):
    kind: LossKind = Field("laplacian", description="laplacian (GLO's Lap1), perceptual (VGG-16), or l1")
    vgg_weights: str | None = Field(None, description="local VGG-16 ImageNet weights for kind=perceptual (offline)")


class SamplingParams(Params):
    cov: Literal["full", "diag"] = Field("full", description="covariance of each class's content Gaussian")


class GloParams(Params):
    generator: Literal["infogan", "dcgan"] = Field("infogan", description="generator architecture (Table 4.2)")
    latent: LatentParams = LatentParams()
    loss: GloLossParams = GloLossParams()
    sampling: SamplingParams = SamplingParams()
    lr_generator: float = Field(1e-3, gt=0, le=10, description="Adam lr of G (halved every 50 epochs)")
    lr_codes: float = Field(1e-2, gt=0, le=10, description="Adam lr of the content codes (halved every 50 epochs)")
    batch_size: int = Field(64, ge=2, le=65536, description="images per GLO step")


class ScolaParams(GloParams):
    mix_ratio: float = Field(0.5, gt=0, lt=1, description="fraction of synthetic images in the Mix training set")


def build_generator(params: GloParams, code_dim: int, channels: int, image_size: int) -> torch.nn.Module:
    if params.generator == "dcgan":
        return DCGANGenerator(channels, image_size, noise_dim=code_dim)
    return InfoGANGenerator(code_dim, channels, image_size)


def fit_glo(params: GloParams, split, budget: Budget, report: Report, images: torch.Tensor,
            cluster_codes: torch.Tensor, seed_offset: int = 0):
    """Trains G and content codes on ``images`` (normalized) with fixed ``cluster_codes``; returns (G, content)."""
    dataset, device = split.dataset, budget.device
    generator = seeded_generator(budget, 21 + seed_offset)
    signed = dataset.denormalize(images) * 2 - 1  # G ends in tanh
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(budget.seed + seed_offset)
        model = build_generator(params, cluster_codes.shape[1] + params.latent.dim, split.channels, split.image_size).to(device)
    criterion = reconstruction_criterion(params.loss.kind, split.image_size, params.loss.vgg_weights, device)
    content = initial_content(len(images), params.latent.dim, params.latent.sigma, generator)

    def on_epoch(epoch: int, loss: float) -> None:
        if report_due(epoch, budget.epochs):
            report(epoch, loss=loss)

    content = train_glo(model, cluster_codes, content, signed, criterion=criterion, epochs=budget.epochs,
                        batch_size=params.batch_size, lr_generator=params.lr_generator, lr_codes=params.lr_codes,
                        device=device, seed_generator=generator,
                        on_epoch=on_epoch)
    return model, content


@torch.no_grad()
def decode(model: torch.nn.Module, codes: torch.Tensor, dataset, device) -> torch.Tensor:
    model.eval()
    made = torch.cat([model(codes[i:i + 512].to(device)).cpu() for i in range(0, len(codes), 512)])
    return dataset.normalize(((made + 1) / 2).clamp(0, 1))


@register_method("scola")
class SCOLA(Method):
    Params = ScolaParams
    intent = Intent.EXPANSION  # accuracy: "Mix", the real images plus the synthetic ones

    def fit(self, split, budget: Budget, report: Report) -> SyntheticSet:
        params = self.params
        images, labels = split.fewshot
        onehot = F.one_hot(labels, split.num_classes).float()
        model, content = fit_glo(params, split, budget, report, images, onehot)
        gaussians = fit_content_gaussians(content, labels, split.num_classes, params.sampling.cov)
        rng = np.random.default_rng(budget.seed * 7919 + 21)
        codes, new_labels = [], []
        for c, gaussian in enumerate(gaussians):
            members = int((labels == c).sum())
            count = max(1, round(members * params.mix_ratio / (1 - params.mix_ratio)))
            codes.append(torch.cat([onehot[labels == c][:1].expand(count, -1), sample_content(gaussian, count, rng)], dim=1))
            new_labels.append(torch.full((count,), c))
        return SyntheticSet(decode(model, torch.cat(codes), split.dataset, budget.device), torch.cat(new_labels))
