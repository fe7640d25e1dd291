"""Method `expansive`: Expansive Synthesis (Jebraeeli et al.), a few-shot set grown ``expansion_ratio``-fold.

A Koopman autoencoder, pretrained on a larger similar set and fine-tuned on the few-shot set X with
per-filter scale and shift, encodes X into latent maps Y. New latents Y' are made per class by
interpolating pairs of latents and refining them with latent self-attention; with expander graph
mapping, the attention heads' cropped features of several samples of the class are recombined over
the class's learned expander graph. X' = phi^-1(Y'). Losses (Eq. 4): a0 L_re + a1 L_ce (a classifier
on X concatenated with X') + a2 L_W(Y, Y') per class + a3 L_cov(Y'). docs/methods.md has every reading.
"""

from __future__ import annotations

from typing import Iterator


import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator
from torch import nn

from raysynth.errors import RaysynthError, SpecError
from raysynth.methods.base import (Budget, Intent, Method, Params, Report, SyntheticSet, register_method, report_due,
                                   seeded_generator)
from raysynth.methods.classic_augmentation import classic_reference
from raysynth.nets.attention import MULTI_HEAD, LatentAttention, Variant
from raysynth.nets.autoencoder import Depth, FilmMode, KoopmanAutoencoder, pretrained_autoencoder, reconstruction_loss
from raysynth.nets.classifiers import build_classifier
from raysynth.nets.expander import ClassGraphs, attention_crop, propagate, similarity_graph, spectral_gap
from raysynth.nets.losses import OtKind, covariance_loss, per_class_wasserstein


class AutoencoderParams(Params):
    depth: Depth = Field("medium", description="shallow / medium / deep = 5 / 7 / 9 conv layers")
    latent_channels: int = Field(32, ge=2, le=512, description="channels C of the latent map (the feature dimension)")
    width: int = Field(64, ge=8, le=512, description="channels of the hidden convolutions")
    variational: bool = Field(False, description="a log-variance head and the KL term of L_re")
    kl_weight: float = Field(1e-3, ge=0, le=1e6, description="weight of the KL term (per pixel) when variational")
    film: FilmMode = Field("weight", description="fine-tuning shift: `weight` conv(x; gW+b) or `output` g conv(x; W)+b (Eq. 1's two sides)")


class AttentionParams(Params):
    variant: Variant = Field("mhsa_egm", description="none, rowwise, spatial, spatial_skip, mhsa, mhsa_egm")
    heads: int = Field(4, ge=1, le=64, description="heads L of the multi-head variants")
    patch: int = Field(2, ge=1, le=100, description="patch size P on the latent map (a divisor of its side)")


class ExpanderParams(Params):
    degree: int = Field(2, ge=1, le=100, description="edges per head-vertex at most (capped at heads - 1)")
    keep: float = Field(0.5, gt=0, le=1, description="fraction of each head map's activations kept by attention cropping")
    spectral_weight: float = Field(0.1, ge=0, le=1e6, description="weight of the spectrum-matching term against the similarity graph")


class LossParams(Params):
    alpha_re: float = Field(1.0, ge=0, le=1e6, description="a0: reconstruction (+ KL)")
    alpha_ce: float = Field(0.1, ge=0, le=1e6, description="a1: cross-entropy of the classifier on X + X'")
    alpha_w: float = Field(1.0, ge=0, le=1e6, description="a2: per-class Wasserstein distance between Y and Y'")
    alpha_cov: float = Field(0.01, ge=0, le=1e6, description="a3: ||Cov(Y') - I||_F^2")
    ot: OtKind = Field("exact", description="OT solver: exact (ot.emd2), sinkhorn, sliced")


class ExpansiveParams(Params):
    expansion_ratio: int = Field(10, ge=1, le=1000, description="|X'| / |X|: synthetic images per few-shot image")
    pretrain: str = Field("remainder", description="autoencoder pretraining set: remainder (unlabelled rest of the "
                                                    "training set), a dataset name, or none")
    pretrain_epochs: int = Field(5, ge=1, le=1_000_000, description="reconstruction epochs over the pretraining set")
    pretrain_images: int = Field(10000, ge=1, le=10_000_000, description="pretraining images at most (a seeded subset)")
    lr: float = Field(1e-3, gt=0, le=10, description="Adam learning rate of the fine-tuning phase")
    synth_per_class: int = Field(32, ge=2, le=100_000, description="new latents per class per fine-tuning step")
    interpolate: bool = Field(True, description="new latents start from random convex pairs of a class's latents")
    classifier_width: int = Field(32, ge=8, le=4096, description="width of the ConvNet giving L_ce")
    ae: AutoencoderParams = AutoencoderParams()
    attention: AttentionParams = AttentionParams()
    egm: ExpanderParams = ExpanderParams()
    loss: LossParams = LossParams()

    @field_validator("pretrain")
    @classmethod
    def _known_source(cls, value: str) -> str:
        from raysynth.data import DATASETS

        if value not in ("remainder", "none") and value not in DATASETS:
            raise ValueError(f"use remainder, none or a dataset ({', '.join(DATASETS.names())}), not `{value}`")
        return value

    @field_validator("attention")
    @classmethod
    def _heads_fit(cls, attention: AttentionParams, info: ValidationInfo) -> AttentionParams:
        return check_heads(attention, info)

    def check_for(self, data):
        yield from check_patch(self.attention, data)


def check_patch(attention: AttentionParams, data) -> Iterator[tuple[str, str]]:
    """The attention's patch must divide the latent map, whose side depends on the dataset's image size."""
    from raysynth.nets.autoencoder import latent_map_size

    side = latent_map_size(data.image_size)
    if attention.variant != "none" and side % attention.patch:
        divisors = [d for d in range(1, side + 1) if side % d == 0]
        yield ("attention.patch", f"patch {attention.patch} does not divide the {side} x {side} latent map of "
               f"`{data.name}` ({data.image_size} px images); use one of {divisors}")


def check_heads(attention: AttentionParams, info: ValidationInfo) -> AttentionParams:
    """Field validator of `attention` beside an `ae` field: the heads must divide the attention width."""
    autoencoder = info.data.get("ae") or AutoencoderParams()
    if attention.variant in MULTI_HEAD:
        width = autoencoder.latent_channels * attention.patch ** 2
        if width % attention.heads:
            raise ValueError(f"heads={attention.heads} must divide ae.latent_channels x patch^2 = {width}")
        if attention.variant == "mhsa_egm" and attention.heads < 2:
            raise ValueError("variant mhsa_egm needs heads >= 2 (the expander graph lives on the heads)")
    return attention


def sample_pairs(count: int, members: int, generator: torch.Generator, shape: tuple[int, ...] = ()) -> tuple:
    """``count`` (x ``shape``) random pairs (a, b) of ``members`` indices and mixing weights in [0, 1)."""
    size = (count, *shape)
    first = torch.randint(members, size, generator=generator)
    second = torch.randint(members, size, generator=generator)
    return first, second, torch.rand(size, generator=generator)


class Expander(nn.Module):
    """The trainable parts that turn a class's latents into new ones: attention, and the class graphs."""

    def __init__(self, params: ExpansiveParams, num_classes: int, latent_size: int):
        super().__init__()
        attention, egm = params.attention, params.egm
        self.params = params
        self.attention = LatentAttention(attention.variant, params.ae.latent_channels, latent_size, attention.patch,
                                         attention.heads)
        self.uses_graph = attention.variant == "mhsa_egm"
        self.graphs = ClassGraphs(num_classes, attention.heads, egm.degree, egm.spectral_weight) if self.uses_graph else None

    def new_latents(self, latents: torch.Tensor, cls: int, count: int, generator: torch.Generator,
                    codeword: bool = False) -> torch.Tensor:
        """``count`` new latents of class ``cls`` from its ``latents`` (``n_c x C x h x w``)."""
        members = len(latents)
        first, second, weight = sample_pairs(count, members, generator)
        weight = weight.to(latents.device).view(-1, 1, 1, 1)
        if self.params.interpolate:
            base = weight * latents[first] + (1 - weight) * latents[second]
        else:
            base = latents[first]
        if not self.uses_graph:
            return self.attention(base)
        # EGM (Eq. 2-3): head j's cropped features come from its own interpolated pair of samples,
        # are propagated one step over the class graph, and projected back to the latent channels
        heads = self.attention.head_outputs(latents)  # n_c x L x T x d
        vertices = heads.shape[1]
        first, second, weight = sample_pairs(count, members, generator, (vertices,))
        head_index = torch.arange(vertices).expand(count, vertices)
        weight = weight.to(latents.device)[..., None, None]
        mixed = weight * heads[first, head_index] + (1 - weight) * heads[second, head_index]
        cropped = attention_crop(mixed, self.params.egm.keep)
        graph = self.graphs.codeword(cls) if codeword else self.graphs.adjacency(cls)
        return base + self.attention.from_heads(propagate(graph, cropped), base)

    def graph_objective(self, latents: torch.Tensor, cls: int) -> torch.Tensor:
        """The objective the class graph maximizes (its own loss; the graph also keeps its best)."""
        with torch.no_grad():
            similarity = similarity_graph(self.attention.head_outputs(latents))
        objective = self.graphs.objective(cls, similarity)
        self.graphs.remember(cls, objective.item())
        return objective


def _channels_as(images: torch.Tensor, channels: int) -> torch.Tensor:
    if images.shape[1] == channels:
        return images
    if channels == 1:
        return images.mean(1, keepdim=True)
    return images.repeat(1, channels // images.shape[1], 1, 1)


@register_method("expansive")
class ExpansiveSynthesis(Method):
    Params = ExpansiveParams
    intent = Intent.GENERATION  # Table 3's "synth" classifier: trained on X' alone; baseline: X
    uses_remainder = True  # unlabelled, for pretraining only

    @classmethod
    def equal_steps_control(cls) -> bool:
        return True  # X' is expansion_ratio times the few-shot set: compare with X repeated to that size

    def references(self, split, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return classic_reference(split, self.params.expansion_ratio, seed)

    # -- pretraining -------------------------------------------------------------------------------
    def _pretraining_images(self, split, budget: Budget) -> tuple[torch.Tensor, dict]:
        params, dataset = self.params, split.dataset
        generator = seeded_generator(budget, 11)
        if params.pretrain == "remainder":
            images = split.remainder[0]  # the labels are never read
            identity = {"source": "remainder", "dataset": dataset.name, "split_seed": split.seed,
                        "images_per_class": split.images_per_class}
        else:
            if budget.load_dataset is None:
                raise RaysynthError(f"params.pretrain={params.pretrain} needs a dataset loader; run it through raysynth")
            other = budget.load_dataset(params.pretrain)
            unit = other.train_images.float() / 255
            unit = F.interpolate(unit, size=dataset.image_size, mode="bilinear", antialias=True, align_corners=False) \
                if other.image_size != dataset.image_size else unit
            images = dataset.normalize(_channels_as(unit, dataset.channels).clamp(0, 1))
            identity = {"source": params.pretrain, "into": dataset.name}
        chosen = torch.randperm(len(images), generator=generator)[: params.pretrain_images]
        return images[chosen], identity

    def _pretrained(self, split, budget: Budget, report: Report, build) -> KoopmanAutoencoder:
        params = self.params
        images, identity = self._pretraining_images(split, budget)
        return pretrained_autoencoder(build, images, settings={**identity, "ae": params.ae.model_dump()},
                                      epochs=params.pretrain_epochs, kl_weight=params.ae.kl_weight, device=budget.device,
                                      seed=budget.seed, cache_dir=budget.cache_dir,
                                      on_epoch=lambda epoch, loss: report(epoch, pretrain_re=loss))

    # -- fine-tuning and expansion ------------------------------------------------------------------
    def fit(self, split, budget: Budget, report: Report) -> SyntheticSet:
        params, device = self.params, budget.device
        images, labels = (t.to(device) for t in split.fewshot)
        num_classes = split.num_classes

        def build() -> KoopmanAutoencoder:
            return KoopmanAutoencoder(split.channels, split.image_size, params.ae.latent_channels, params.ae.depth,
                                      params.ae.variational, params.ae.width, params.ae.film)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(budget.seed)  # module initialization draws from the global generator
            if params.pretrain == "none":
                autoencoder = build()  # no larger set: every weight is trained on X
            else:
                autoencoder = self._pretrained(split, budget, report, build)
                autoencoder.freeze_for_finetuning()
            latent_size = autoencoder.latent_size
            if latent_size % params.attention.patch:
                raise SpecError("params.attention.patch", f"{params.attention.patch} does not divide the "
                                f"{latent_size} x {latent_size} latent map of {split.dataset.name}; use a divisor of {latent_size}")
            expander = Expander(params, num_classes, latent_size)
            classifier = build_classifier("convnet", channels=split.channels, num_classes=num_classes,
                                          image_size=split.image_size, width=params.classifier_width)
        modules = nn.ModuleDict({"autoencoder": autoencoder, "expander": expander, "classifier": classifier}).to(device)
        graph_parameters = list(expander.graphs.parameters()) if expander.graphs is not None else []
        graph_ids = {id(p) for p in graph_parameters}
        trainable = [p for p in modules.parameters() if p.requires_grad and id(p) not in graph_ids]
        optimizer = torch.optim.Adam(trainable, lr=params.lr)
        graph_optimizer = torch.optim.Adam(graph_parameters, lr=params.lr * 10) if graph_parameters else None
        generator = seeded_generator(budget, 1)

        start = 1
        saved = budget.checkpoint.load() if budget.checkpoint else None
        if saved is not None:
            modules.load_state_dict(saved["modules"])
            optimizer.load_state_dict(saved["optimizer"])
            if graph_optimizer is not None:
                graph_optimizer.load_state_dict(saved["graph_optimizer"])
            generator.set_state(saved["generator"])
            start = saved["epoch"] + 1

        classes = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
        loss = params.loss
        for epoch in range(start, budget.epochs + 1):
            modules.train()
            reconstruction, latents = reconstruction_loss(autoencoder, images, params.ae.kl_weight, generator)
            new, new_labels = [], []
            for cls, members in enumerate(classes):
                new.append(expander.new_latents(latents[members], cls, params.synth_per_class, generator))
                new_labels.append(torch.full((params.synth_per_class,), cls, device=device))
            new_latents, new_labels = torch.cat(new), torch.cat(new_labels)
            synthetic = autoencoder.decode(new_latents)
            logits = classifier(torch.cat([images, synthetic]))
            cross_entropy = F.cross_entropy(logits, torch.cat([labels, new_labels]))
            dims = new_latents[0].numel()  # per-dimension scale, so one alpha fits every latent size
            wasserstein = per_class_wasserstein(latents, labels, new_latents, new_labels, loss.ot) / dims
            covariance = covariance_loss(new_latents) / dims
            total = (loss.alpha_re * reconstruction + loss.alpha_ce * cross_entropy + loss.alpha_w * wasserstein
                     + loss.alpha_cov * covariance)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            metrics = {"loss": total.item(), "re": reconstruction.item(), "ce": cross_entropy.item(),
                       "w": wasserstein.item(), "cov": covariance.item()}
            if graph_optimizer is not None:
                detached = latents.detach()
                objective = torch.stack([expander.graph_objective(detached[members], cls)
                                         for cls, members in enumerate(classes)]).sum()
                graph_optimizer.zero_grad(set_to_none=True)
                (-objective).backward()
                graph_optimizer.step()
                metrics["graph_objective"] = objective.item() / num_classes
            if report_due(epoch, budget.epochs, 100):
                report(epoch, **metrics)
            if budget.checkpoint is not None:
                budget.checkpoint.save(lambda epoch=epoch: {
                    "epoch": epoch, "modules": modules.state_dict(), "optimizer": optimizer.state_dict(),
                    "graph_optimizer": graph_optimizer.state_dict() if graph_optimizer else None,
                    "generator": generator.get_state()})
        return self._expand(split, autoencoder, expander, generator, device)

    @torch.no_grad()
    def _expand(self, split, autoencoder: KoopmanAutoencoder, expander: Expander, generator: torch.Generator,
                device: torch.device) -> SyntheticSet:
        """X' = phi^-1(Y'): ``expansion_ratio`` new images per few-shot image, class by class."""
        autoencoder.eval()
        expander.eval()
        images, labels = (t.to(device) for t in split.fewshot)
        latents = autoencoder.encode(images)
        out_images, out_labels = [], []
        for cls in range(split.num_classes):
            members = torch.nonzero(labels == cls).flatten()
            count = self.params.expansion_ratio * len(members)
            for start in range(0, count, 256):
                chunk = min(256, count - start)
                new = expander.new_latents(latents[members], cls, chunk, generator, codeword=True)
                out_images.append(autoencoder.decode(new).cpu())
                out_labels.append(torch.full((chunk,), cls))
        info = {}
        if expander.graphs is not None:
            codewords = torch.stack([expander.graphs.codeword(c) for c in range(split.num_classes)])
            info["egm_spectral_gap"] = float(spectral_gap(codewords).mean())
        return SyntheticSet(torch.cat(out_images), torch.cat(out_labels), info)
