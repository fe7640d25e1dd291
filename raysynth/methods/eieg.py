"""Method `eieg`: the Elastic Interaction Energy GAN (seed paper 002), here per class on a few-shot set.

A feature transformation network D (the DCGAN discriminator ending in a ``feature_dim``-vector)
and a DCGAN generator G from 100-d noise. G minimizes the elastic interaction energy between D's
features of real and generated images; D maximizes it plus a repulsive stabilizing term on the real
features. ``conditional: per_class`` trains one generator per class so the synthetic set is
labelled; ``none`` trains one on all classes and labels its samples with the domain classifier.
The `dcgan` baseline (its own file) is this class with the non-saturating loss.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar, Literal

import torch
from pydantic import ConfigDict, Field

from raysynth.errors import RaysynthError
from raysynth.methods.base import (Budget, Intent, Method, Params, Report, SyntheticSet, register_method, report_due,
                                   seeded_generator)
from raysynth.nets.gan import DCGANDiscriminator, DCGANGenerator, FeatureBound, GanLoss, GanSettings, train_gan


class EieParams(Params):
    model_config = ConfigDict(populate_by_name=True)

    cutoff: float = Field(0.1, gt=0, le=1e6, description="eps of the EIE kernel (Table 3: 0.1)")
    stab_cutoff: float = Field(0.8, gt=0, le=1e6, description="cut-off of the stabilizing term (Table 3: 0.8)")
    stabilizer: float = Field(1.0, ge=0, alias="lambda", le=1e6, description="lambda, weight of the stabilizing term (Table 3: 1)")
    self_interaction: bool = Field(True, description="the generated samples' self-interaction (off: Fig. 4's collapse)")
    feature_scale: float = Field(
        0.001, gt=0, le=1e6, description="multiplies D's outputs before the kernels; 1 is the literal reading, where G gets no "
        "gradient (features 10-30 cut-offs apart at initialization; docs/methods.md)")
    feature_bound: FeatureBound = Field(
        "none", description="tanh: D's outputs in [-1, 1]^d before the scale (the finite feature domain of the paper's "
        "stability analysis); none: unbounded")


class GanParams(Params):
    conditional: Literal["per_class", "none"] = Field("per_class", description="one generator per class, or one for all")
    samples_per_class: int = Field(100, ge=1, le=100_000, description="synthetic images per class")
    noise_dim: int = Field(100, ge=1, le=4096, description="dimension of the Gaussian noise")
    width: int = Field(64, ge=4, le=4096, description="base width of G and D (DCGAN: 64)")
    batch_size: int = Field(64, ge=2, le=65536, description="batch size (Table 3: 64)")
    lr_generator: float = Field(1e-4, gt=0, le=10, description="Adam lr of G (Table 3: 1e-4)")
    lr_discriminator: float = Field(1e-5, gt=0, le=10, description="Adam lr of D (Table 3: 1e-5)")
    d_steps: int = Field(3, ge=1, le=100, description="D updates per G update (Table 3: 3)")


class EiegParams(GanParams):
    feature_dim: int = Field(16, ge=1, le=4096, description="output size of the feature transformation network (2 / 16 / 32)")
    eie: EieParams = EieParams()


class ImageGan(Method):
    """Trains DCGAN-shaped G and D per class (or once) for ``budget.epochs`` generator steps, then samples."""

    intent = Intent.GENERATION
    loss: ClassVar[GanLoss] = "eie"

    def settings(self) -> GanSettings:
        params = self.params
        return GanSettings(loss=self.loss, lr_generator=params.lr_generator, lr_discriminator=params.lr_discriminator,
                           d_steps=params.d_steps, batch_size=params.batch_size)

    def discriminator_outputs(self) -> int:
        """One logit (a classic GAN discriminator); EIEG's feature network overrides it."""
        return 1

    def fit(self, split, budget: Budget, report: Report) -> SyntheticSet:
        params, device, dataset = self.params, budget.device, split.dataset
        images, labels = split.fewshot
        signed = (dataset.denormalize(images) * 2 - 1).to(device)  # G ends in tanh: train in [-1, 1]
        groups = ([(c, torch.nonzero(labels == c).flatten()) for c in range(split.num_classes)]
                  if params.conditional == "per_class" else [(None, torch.arange(len(labels)))])
        generator = seeded_generator(budget, 3)
        saved = (budget.checkpoint.load() if budget.checkpoint else None) or {}
        out_images, out_labels = [], []
        for index, (cls, members) in enumerate(groups):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(budget.seed * 1000 + index)
                g = DCGANGenerator(split.channels, split.image_size, params.noise_dim, params.width).to(device)
                d = DCGANDiscriminator(split.channels, split.image_size, self.discriminator_outputs(), params.width).to(device)
            if index in saved.get("done", {}):
                g.load_state_dict(saved["done"][index])
            else:
                self._train(g, d, signed[members], budget, report, index, generator)
                saved.setdefault("done", {})[index] = {k: v.detach().cpu() for k, v in g.state_dict().items()}
                if budget.checkpoint is not None:
                    budget.checkpoint.save(lambda: saved)
            count = params.samples_per_class * (1 if cls is not None else split.num_classes)
            g.eval()
            with torch.no_grad():
                noise = torch.randn(count, params.noise_dim, generator=generator).to(device)
                made = torch.cat([g(noise[i:i + 512]) for i in range(0, count, 512)]).cpu()
            out_images.append(dataset.normalize(((made + 1) / 2).clamp(0, 1)))
            out_labels.append(torch.full((count,), cls) if cls is not None else self._label(out_images[-1], split, budget))
        return SyntheticSet(torch.cat(out_images), torch.cat(out_labels),
                            {"labels_from_domain_classifier": float(params.conditional == "none")})

    def _train(self, g, d, real: torch.Tensor, budget: Budget, report: Report, index: int, generator) -> None:
        params = self.params

        def real_batch(size: int) -> torch.Tensor:
            return real[torch.randint(len(real), (size,), generator=generator).to(real.device)]

        def noise(size: int) -> torch.Tensor:
            return torch.randn(size, params.noise_dim, generator=generator).to(real.device)

        def on_step(step: int, g_loss: float, d_loss: float) -> None:
            if report_due(step, budget.epochs, 20):
                report(index * budget.epochs + step, g_loss=g_loss, d_loss=d_loss)

        train_gan(g, d, real_batch, noise, self.settings(), budget.epochs, on_step=on_step)

    def _label(self, images: torch.Tensor, split, budget: Budget) -> torch.Tensor:
        """Labels of an unconditional model's samples: the domain classifier (the FID network)."""
        from raysynth.evaluation.fid import DomainFeatures, FidContext

        if budget.cache_dir is None:
            raise RaysynthError("conditional: none labels samples with the domain classifier, which needs a cache_dir")
        model = DomainFeatures(FidContext(split.dataset, budget.device, budget.cache_dir)).model
        with torch.no_grad():
            return torch.cat([model(images[i:i + 1024].to(budget.device)).argmax(1).cpu() for i in range(0, len(images), 1024)])


@register_method("eieg")
class EIEG(ImageGan):
    Params = EiegParams
    loss = "eie"

    def settings(self) -> GanSettings:
        eie = self.params.eie
        return replace(super().settings(), cutoff=eie.cutoff, stab_cutoff=eie.stab_cutoff, stab_lambda=eie.stabilizer,
                       generated_self=eie.self_interaction, feature_scale=eie.feature_scale,
                       feature_bound=eie.feature_bound)

    def discriminator_outputs(self) -> int:
        return self.params.feature_dim
