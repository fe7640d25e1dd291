"""Method `scola`: supervised Clustered Optimization of LAtent space (seed paper 001, section 3.4).

GLO-style, non-adversarial: each few-shot image i gets a code z_i = (t_i, v_i / ||v_i||), t_i its
one-hot class, v_i a learned content code; the generator and the content codes are optimized
jointly under a Laplacian-pyramid (or perceptual, or L1) reconstruction loss. New images of a class
decode its one-hot with content codes sampled from a Gaussian fitted to the class's codes. The
classifier trains on "Mix": the real images plus synthetic ones making up `mix_ratio` of the set.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Literal, NamedTuple

from pydantic import Field

from raysynth.methods.base import (FitContext, Intent, Method, Report, SyntheticSet, register_method, report_due)
from raysynth.nets.settings import GloParams

if TYPE_CHECKING:  # annotations only: the module loads without torch (raysynth validate stays fast)
    import torch


FIT_LOSS = "fit_final_loss"  # the GLO fit's last reconstruction loss, logged so a degenerate fit shows


class ScolaParams(GloParams):
    mix_ratio: float = Field(0.5, gt=0, lt=1, description="fraction of synthetic images in the Mix training set")
    mix: Literal["counts", "pool"] = Field(
        "counts", description="counts: as many synthetic images as make up mix_ratio of the set beside the real ones "
        "(1:1 at 0.5); pool: pool_per_class synthetic images per class, the real images repeated so that mix_ratio "
        "of every batch is synthetic in expectation (a large pool mixed per batch)")
    pool_per_class: int = Field(500, ge=1, le=100_000, description="synthetic images per class when mix is pool")


def build_generator(params: GloParams, code_dim: int, channels: int, image_size: int) -> torch.nn.Module:
    from raysynth.nets.gan import DCGANGenerator
    from raysynth.nets.glo import InfoGANGenerator

    if params.generator == "dcgan":
        return DCGANGenerator(channels, image_size, noise_dim=code_dim)
    return InfoGANGenerator(code_dim, channels, image_size)


class GloFit(NamedTuple):
    model: torch.nn.Module
    content: torch.Tensor
    cluster_codes: torch.Tensor  # as given, or as learned (params.learn_class_codes)
    final_loss: float  # the last epoch's reconstruction loss: a fit that ends far above its peers' is degenerate


def fit_glo(params: GloParams, split, context: FitContext, report: Report, images: torch.Tensor,
            cluster_codes: torch.Tensor) -> GloFit:
    """Trains G and the content codes (and with ``learn_class_codes`` the cluster codes) on ``images`` (normalized)."""

    from raysynth.nets.glo import initial_content, reconstruction_criterion, train_glo

    dataset, device = split.dataset, context.device
    generator = context.torch_rng("glo batches")
    signed = dataset.denormalize(images) * 2 - 1  # G ends in tanh
    with context.seeded_init("glo init"):
        model = build_generator(params, cluster_codes.shape[1] + params.latent.dim, split.channels, split.image_size).to(device)
    criterion = reconstruction_criterion(params.loss.kind, split.image_size, params.loss.vgg_weights, device,
                                         equal_levels=params.loss.level_weights == "equal")
    content = initial_content(len(images), params.latent.dim, params.latent.sigma, generator)

    losses = []

    def on_epoch(epoch: int, loss: float) -> None:
        losses.append(loss)
        if report_due(epoch, context.epochs):
            report(epoch, loss=loss)

    content, cluster_codes = train_glo(
        model, cluster_codes, content, signed, criterion=criterion, epochs=context.epochs, batch_size=params.batch_size,
        lr_generator=params.lr_generator, lr_codes=params.lr_codes, lr_halving_steps=params.lr_halving_steps, device=device,
        learn_cluster_codes=params.learn_class_codes, seed_generator=generator, on_epoch=on_epoch,
        loop=partial(context.resumable, phase="glo"))
    return GloFit(model, content, cluster_codes, losses[-1] if losses else float("nan"))


def class_code(cluster_codes: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """The class part of a new code: the members' (fixed or learned) class codes averaged, on the unit sphere."""
    import torch.nn.functional as F

    return F.normalize(cluster_codes[members].mean(0, keepdim=True), dim=1)


def decode(model: torch.nn.Module, codes: torch.Tensor, dataset, device) -> torch.Tensor:
    import torch

    model.eval()
    with torch.no_grad():
        made = torch.cat([model(codes[i:i + 512].to(device)).cpu() for i in range(0, len(codes), 512)])
    return dataset.normalize(((made + 1) / 2).clamp(0, 1))


@register_method("scola")
class SCOLA(Method):
    Params = ScolaParams
    intent = Intent.EXPANSION  # accuracy: "Mix", the real images plus the synthetic ones
    epoch_counts = "GLO epochs over the few-shot set (codes and generator)"

    def fit(self, split, context: FitContext, report: Report) -> SyntheticSet:
        import torch
        import torch.nn.functional as F

        from raysynth.nets.glo import fit_content_gaussians, sample_content

        params = self.params
        images, labels = split.fewshot
        onehot = F.one_hot(labels, split.num_classes).float()
        fit = fit_glo(params, split, context, report, images, onehot)
        gaussians = fit_content_gaussians(fit.content, labels, split.num_classes, params.sampling.cov)
        rng = context.numpy_rng("content samples")
        codes, new_labels = [], []
        pooled = params.mix == "pool"
        for c, gaussian in enumerate(gaussians):
            members = int((labels == c).sum())
            count = params.pool_per_class if pooled else max(1, round(members * params.mix_ratio / (1 - params.mix_ratio)))
            codes.append(torch.cat([class_code(fit.cluster_codes, labels == c).expand(count, -1),
                                    sample_content(gaussian, count, rng, params.sampling.scale)], dim=1))
            new_labels.append(torch.full((count,), c))
        new_labels = torch.cat(new_labels)
        # pool: the real images repeated to (1 - mix_ratio) of the set, so batches mix in that proportion
        copies = max(1, round(len(new_labels) * (1 - params.mix_ratio) / (params.mix_ratio * len(labels)))) if pooled else 1
        return SyntheticSet(decode(fit.model, torch.cat(codes), split.dataset, context.device), new_labels,
                            {FIT_LOSS: fit.final_loss}, real_copies=copies)
