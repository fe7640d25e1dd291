"""Method `expansive`: Expansive Synthesis (Jebraeeli et al.), a few-shot set grown ``expansion_ratio``-fold.

A Koopman autoencoder, pretrained on a larger similar set and fine-tuned on the few-shot set X with
per-filter scale and shift, encodes X into latent maps Y. New latents Y' are made per class by
interpolating pairs of latents and refining them with latent self-attention; with expander graph
mapping, the attention heads' cropped features of several samples of the class are recombined over
the class's learned expander graph. X' = phi^-1(Y'). Losses (Eq. 4): a0 L_re + a1 L_ce (a classifier
on X concatenated with X') + a2 L_W(Y, Y') per class + a3 L_cov(Y'). docs/methods.md has every reading.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationInfo, field_validator

from raysynth.errors import RaysynthError, SpecError
from raysynth.methods.base import (FitContext, Intent, Method, Params, Report, SyntheticSet, register_method,
                                   report_due)
from raysynth.methods.classic_augmentation import classic_reference
from raysynth.nets.settings import (AttentionParams, AutoencoderParams, ExpanderParams, LossParams, check_heads,
                                    check_patch)

if TYPE_CHECKING:  # annotations only: the module loads without torch (raysynth validate stays fast)
    import torch

    from raysynth.nets.autoencoder import KoopmanAutoencoder
    from raysynth.nets.expander import Expander


class ExpansiveAutoencoderParams(AutoencoderParams):
    variational: bool = Field(True, description="a log-variance head and the KL term of L_re (Eq. 5 is a VAE's "
                              "objective; false: a plain autoencoder, L_re the MSE of Algorithm 1 line 18)")


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
    ae: ExpansiveAutoencoderParams = ExpansiveAutoencoderParams()
    attention: AttentionParams = AttentionParams()
    egm: ExpanderParams = ExpanderParams()
    loss: LossParams = LossParams()
    reconstruction: Literal["through_expander", "autoencoder"] = Field(
        "through_expander", description="L_re of X decoded through the attention and EGM, one output per image "
        "(Algorithm 1 lines 14-18) or through the autoencoder alone")
    updates_per_epoch: Literal["per_class", "one"] = Field(
        "per_class", description="per_class: one update per class per epoch (Algorithm 1 updates inside its loop "
        "over the M classes, whose body reads all of X, so M updates of the whole objective); one: one update per epoch")
    classic_alone: bool = Field(True, description="also train on the classic augmented images alone, as many as X' "
                                "(`classic_alone_accuracy`): X' alone against augmentation alone, beside Table 3's "
                                "comparison with augmentation that includes the originals (`classic_accuracy`)")

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
    epoch_counts = ("fine-tuning epochs: params.updates_per_epoch updates each (one per class by default) of the whole "
                    "objective, params.synth_per_class new latents per class per update")

    @classmethod
    def equal_steps_control(cls) -> bool:
        return True  # X' is expansion_ratio times the few-shot set: compare with X repeated to that size

    def references(self, split, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return classic_reference(split, self.params.expansion_ratio, seed, alone=self.params.classic_alone)

    # -- pretraining -------------------------------------------------------------------------------
    def _pretraining_images(self, split, context: FitContext) -> tuple[torch.Tensor, dict]:
        import torch
        import torch.nn.functional as F

        params, dataset = self.params, split.dataset
        generator = context.torch_rng("pretraining images")
        if params.pretrain == "remainder":
            images = split.remainder[0]  # the labels are never read
            identity = {"source": "remainder", "dataset": dataset.name, "split_seed": split.seed,
                        "images_per_class": split.images_per_class}
        else:
            if context.load_dataset is None:
                raise RaysynthError(f"params.pretrain={params.pretrain} needs a dataset loader; run it through raysynth")
            other = context.load_dataset(params.pretrain)
            unit = other.train_images.float() / 255
            unit = F.interpolate(unit, size=dataset.image_size, mode="bilinear", antialias=True, align_corners=False) \
                if other.image_size != dataset.image_size else unit
            images = dataset.normalize(_channels_as(unit, dataset.channels).clamp(0, 1))
            identity = {"source": params.pretrain, "into": dataset.name}
        chosen = torch.randperm(len(images), generator=generator)[: params.pretrain_images]
        return images[chosen], identity

    def _pretrained(self, split, context: FitContext, report: Report, build) -> KoopmanAutoencoder:
        from raysynth.nets.autoencoder import pretrained_autoencoder

        params = self.params
        images, identity = self._pretraining_images(split, context)
        return pretrained_autoencoder(build, images, settings={**identity, "ae": params.ae.model_dump(exclude={"latent_scale"})},
                                      epochs=params.pretrain_epochs, kl_weight=params.ae.kl_weight, device=context.device,
                                      seed=context.seed_for("pretraining"), cache_dir=context.cache_dir,
                                      on_epoch=lambda epoch, loss: report(epoch, pretrain_re=loss))

    # -- fine-tuning and expansion ------------------------------------------------------------------
    def fit(self, split, context: FitContext, report: Report) -> SyntheticSet:
        import torch
        import torch.nn.functional as F
        from torch import nn

        from raysynth.nets.autoencoder import KoopmanAutoencoder, reconstruction_loss
        from raysynth.nets.classifiers import build_classifier
        from raysynth.nets.expander import Expander
        from raysynth.nets.losses import class_covariance_loss, covariance_loss, per_class_wasserstein

        params, device = self.params, context.device
        images, labels = (t.to(device) for t in split.fewshot)
        num_classes = split.num_classes

        def build() -> KoopmanAutoencoder:
            return KoopmanAutoencoder(split.channels, split.image_size, params.ae.latent_channels, params.ae.depth,
                                      params.ae.variational, params.ae.width, params.ae.film)

        # each module from its own stream: whether the autoencoder came from the cache (no draws) or was
        # trained here cannot change how the others start
        with context.seeded_init("autoencoder"):
            if params.pretrain == "none":
                autoencoder = build()  # no larger set: every weight is trained on X
            else:
                autoencoder = self._pretrained(split, context, report, build)
                autoencoder.freeze_for_finetuning()
        if params.ae.latent_scale == "fixed":
            autoencoder.to(device).fix_latent_scale(images)
        latent_size = autoencoder.latent_size
        if latent_size % params.attention.patch:
            raise SpecError("params.attention.patch", f"{params.attention.patch} does not divide the "
                            f"{latent_size} x {latent_size} latent map of {split.dataset.name}; use a divisor of {latent_size}")
        with context.seeded_init("expander"):
            expander = Expander(params, num_classes, latent_size)
        with context.seeded_init("classifier"):
            classifier = build_classifier("convnet", channels=split.channels, num_classes=num_classes,
                                          image_size=split.image_size, width=params.classifier_width)
        modules = nn.ModuleDict({"autoencoder": autoencoder, "expander": expander, "classifier": classifier}).to(device)
        graph_parameters = list(expander.graphs.parameters()) if expander.graphs is not None else []
        graph_ids = {id(p) for p in graph_parameters}
        trainable = [p for p in modules.parameters() if p.requires_grad and id(p) not in graph_ids]
        optimizer = torch.optim.Adam(trainable, lr=params.lr)
        graph_optimizer = torch.optim.Adam(graph_parameters, lr=params.lr * 10) if graph_parameters else None
        generator = context.torch_rng("fine-tuning")

        classes = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
        loss = params.loss
        with torch.no_grad():
            start_rms = float(autoencoder.encode(images).pow(2).mean().sqrt())  # modules are on the device
        through = (lambda codes: expander.mapped(codes, labels)) if params.reconstruction == "through_expander" else None
        updates = num_classes if params.updates_per_epoch == "per_class" else 1

        def update() -> dict[str, float]:
            reconstruction, latents = reconstruction_loss(autoencoder, images, params.ae.kl_weight, generator, through)
            new, new_labels = [], []
            for cls, members in enumerate(classes):
                new.append(expander.new_latents(latents[members], cls, params.synth_per_class, generator))
                new_labels.append(torch.full((params.synth_per_class,), cls, device=device))
            new_latents, new_labels = torch.cat(new), torch.cat(new_labels)
            synthetic = autoencoder.decode(new_latents)
            logits = classifier(torch.cat([images, synthetic]))
            cross_entropy = F.cross_entropy(logits, torch.cat([labels, new_labels]))
            dims = new_latents[0].numel()  # per-dimension scale, so one alpha fits every latent size
            real_latents = latents.detach() if loss.detach_real else latents
            wasserstein = per_class_wasserstein(real_latents, labels, new_latents, new_labels, loss.ot) / dims
            covariance = (class_covariance_loss(new_latents, new_labels) if loss.covariance == "per_class"
                          else covariance_loss(new_latents)) / dims
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
            return metrics

        for epoch in context.resumable(context.epochs, modules=modules, optimizer=optimizer,
                                       graph_optimizer=graph_optimizer, generator=generator):
            modules.train()
            for _ in range(updates):
                metrics = update()
            if report_due(epoch, context.epochs, 100):
                report(epoch, **metrics)
        synthetic = self._expand(split, autoencoder, expander, generator, device)
        with torch.no_grad():  # 1 when the scale is fixed; with it free, W and Cov shrink the latents
            synthetic.info["latent_rms_change"] = float(autoencoder.encode(images).pow(2).mean().sqrt()) / start_rms
        synthetic.info["fine_tuning_updates"] = float(context.epochs * updates)
        return synthetic

    def _expand(self, split, autoencoder: KoopmanAutoencoder, expander: Expander, generator: torch.Generator,
                device: torch.device) -> SyntheticSet:
        """X' = phi^-1(Y'): ``expansion_ratio`` new images per few-shot image, class by class."""
        import torch

        from raysynth.nets.expander import spectral_gap

        with torch.no_grad():
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
                    out_images.append(split.dataset.in_range(autoencoder.decode(new)).cpu())
                    out_labels.append(torch.full((chunk,), cls))
            info = {}
            if expander.graphs is not None:
                codewords = torch.stack([expander.graphs.codeword(c) for c in range(split.num_classes)])
                info["egm_spectral_gap"] = float(spectral_gap(codewords).mean())
            return SyntheticSet(torch.cat(out_images), torch.cat(out_labels), info)
