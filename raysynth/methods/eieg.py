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
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from raysynth.errors import RaysynthError
from raysynth.methods.base import (FitContext, Intent, Method, Report, SyntheticSet, register_method, report_due)
from raysynth.nets.settings import EieParams, GanLoss, GanParams

if TYPE_CHECKING:  # annotations only: the module loads without torch (raysynth validate stays fast)
    import torch

    from raysynth.nets.gan import GanSettings


class EiegParams(GanParams):
    feature_dim: int = Field(16, ge=1, le=4096, description="output size of the feature transformation network (2 / 16 / 32)")
    eie: EieParams = EieParams()


class ImageGan(Method):
    """Trains DCGAN-shaped G and D per class (or once) for ``budget.epochs`` generator steps, then samples."""

    epoch_counts = "generator steps of each class's GAN (each after params.d_steps discriminator steps)"
    intent = Intent.GENERATION
    loss: ClassVar[GanLoss] = "eie"

    def settings(self) -> GanSettings:
        from raysynth.nets.gan import GanSettings

        params = self.params
        return GanSettings(loss=self.loss, lr_generator=params.lr_generator, lr_discriminator=params.lr_discriminator,
                           d_steps=params.d_steps, batch_size=params.batch_size)

    def discriminator_outputs(self) -> int:
        """One logit (a classic GAN discriminator); EIEG's feature network overrides it."""
        return 1

    def network_dtype(self) -> torch.dtype:
        """G's and D's dtype: float32 (EIEG's ``eie.precision`` may say float64)."""
        import torch

        return torch.float32

    def networks(self, channels: int, image_size: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        """A fresh generator and discriminator (feature network) for ``channels`` x ``image_size`` images."""
        from raysynth.nets.gan import DCGANDiscriminator, DCGANGenerator

        params, dtype = self.params, self.network_dtype()
        return (DCGANGenerator(channels, image_size, params.noise_dim, params.width).to(dtype),
                DCGANDiscriminator(channels, image_size, self.discriminator_outputs(), params.width).to(dtype))

    def fit(self, split, context: FitContext, report: Report) -> SyntheticSet:
        import torch

        params, device, dataset = self.params, context.device, split.dataset
        images, labels = split.fewshot
        dtype = self.network_dtype()
        signed = (dataset.denormalize(images) * 2 - 1).to(device, dtype)  # G ends in tanh: train in [-1, 1]
        groups = ([(c, torch.nonzero(labels == c).flatten()) for c in range(split.num_classes)]
                  if params.conditional == "per_class" else [(None, torch.arange(len(labels)))])
        generator = context.torch_rng("batches")
        # one GAN per group, trained in turn: a restart keeps the groups already made (their images and
        # the random stream after them) and continues with the next
        done = (context.checkpoint.load("groups") if context.checkpoint else None) or {"images": [], "labels": []}
        out_images, out_labels = list(done["images"]), list(done["labels"])
        if out_images:
            generator.set_state(done["generator"])
        for index, (cls, members) in enumerate(groups):
            if index < len(out_images):
                continue
            with context.seeded_init(f"networks {index}"):
                g, d = (net.to(device) for net in self.networks(split.channels, split.image_size))
            self._train(g, d, signed[members], context, report, index, generator)
            count = params.samples_per_class * (1 if cls is not None else split.num_classes)
            g.eval()
            with torch.no_grad():
                noise = torch.randn(count, params.noise_dim, generator=generator).to(device, dtype)
                made = torch.cat([g(noise[i:i + 512]) for i in range(0, count, 512)]).float().cpu()
            out_images.append(dataset.normalize(((made + 1) / 2).clamp(0, 1)))
            out_labels.append(torch.full((count,), cls) if cls is not None else self._label(out_images[-1], split, context))
            if context.checkpoint is not None:
                context.checkpoint.save(lambda: {"images": out_images, "labels": out_labels,
                                                 "generator": generator.get_state()}, "groups", final=True)
        return SyntheticSet(torch.cat(out_images), torch.cat(out_labels),
                            {"labels_from_domain_classifier": float(params.conditional == "none")})

    def _train(self, g, d, real: torch.Tensor, context: FitContext, report: Report, index: int, generator) -> None:
        from functools import partial

        import torch

        from raysynth.nets.gan import train_gan

        params = self.params

        def real_batch(size: int) -> torch.Tensor:
            return real[torch.randint(len(real), (size,), generator=generator).to(real.device)]

        def noise(size: int) -> torch.Tensor:
            return torch.randn(size, params.noise_dim, generator=generator).to(real.device, real.dtype)

        def on_step(step: int, g_loss: float, d_loss: float) -> None:
            if report_due(step, context.epochs, 20):
                report(index * context.epochs + step, g_loss=g_loss, d_loss=d_loss)

        train_gan(g, d, real_batch, noise, self.settings(), context.epochs, on_step=on_step,
                  loop=partial(context.resumable, phase=f"group {index}", rng=generator))

    def _label(self, images: torch.Tensor, split, context: FitContext) -> torch.Tensor:
        """Labels of an unconditional model's samples: the domain classifier (the FID network)."""
        import torch

        from raysynth.evaluation.fid import DomainFeatures, FidContext

        if context.cache_dir is None:
            raise RaysynthError("conditional: none labels samples with the domain classifier, which needs a cache_dir")
        model = DomainFeatures(FidContext(split.dataset, context.device, context.cache_dir)).model
        with torch.no_grad():
            return torch.cat([model(images[i:i + 1024].to(context.device)).argmax(1).cpu() for i in range(0, len(images), 1024)])


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

    def network_dtype(self) -> torch.dtype:
        import torch

        return torch.float64 if self.params.eie.precision == "float64" else torch.float32
