"""Method `koopcon`: Koopman-space dataset condensation (seed paper 004, Algorithm 1).

An autoencoder phi / phi^-1 is trained on the whole training set by reconstruction. Per class, the
latents Y = phi(X_c) of a minibatch pass the latent self-attention SA; an attention pooling with
IPC learned queries per class reduces them to IPC latents, and a learned linear (Koopman) operator
T acts on each latent vector: Y' = T(pool(SA(Y))). X' = phi^-1(Y'). Losses as `expansive`:
a0 L_re + a1 L_ce (classifier on X + X') + a2 W(Y, Y') per class + a3 ||Cov(Y') - I||_F^2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from raysynth.methods.base import (CondensationParams, FitContext, Intent, Method, Report, SyntheticSet,
                                    register_method, report_due)
from raysynth.nets.settings import AttentionParams, AutoencoderParams, LossParams, check_heads, check_patch

if TYPE_CHECKING:  # annotations only: the module loads without torch (raysynth validate stays fast)
    import torch
    from torch import nn


class KoopconParams(CondensationParams):
    ae_epochs: int = Field(5, ge=1, le=1_000_000, description="reconstruction epochs of the autoencoder over the training set")
    ae_images: int = Field(60000, ge=1, le=10_000_000, description="training images the autoencoder sees at most (a seeded subset)")
    batch_per_class: int = Field(64, ge=2, le=100_000, description="real images per class per condensation step")
    key_dim: int = Field(64, ge=1, le=4096, description="width of the pooling's queries and keys")
    pooling_scores: Literal["dot", "cosine"] = Field("dot", description="how the IPC learned queries score a class's "
                                                     "latents: scaled dot products (near uniform: condensed latents near "
                                                     "the class mean), or cosine similarities with a learned inverse "
                                                     "temperature")
    lr: float = Field(1e-3, gt=0, le=10, description="Adam learning rate of the condensation phase")
    operator_lr: float | None = Field(None, gt=0, le=10, description="Adam learning rate of T; default lr / d (d: the "
                                      "latent dimension), so that a step moves T·y by about lr relative to y, as every "
                                      "other parameter moves (at lr, Adam's sign-like steps on d x d entries move each "
                                      "coordinate of T·y by about lr·|y|_1)")
    classifier_width: int = Field(32, ge=8, le=4096, description="width of the ConvNet giving L_ce")
    ceiling: bool = Field(False, description="no condensation: the `random_subset` baseline's images passed through "
                          "the autoencoder, phi^-1(phi(X)); the accuracy any set decoded from it can reach")
    ae: AutoencoderParams = AutoencoderParams()
    attention: AttentionParams = AttentionParams(variant="mhsa")
    loss: LossParams = LossParams()

    _heads_fit = field_validator("attention")(check_heads)

    def check_for(self, data):
        yield from super().check_for(data)
        yield from check_patch(self.attention, data)


@register_method("koopcon")
class Koopcon(Method):
    Params = KoopconParams
    intent = Intent.CONDENSATION
    uses_remainder = True  # condenses the whole labelled training set
    epoch_counts = "condensation steps, each on params.batch_per_class real images per class"

    def fit(self, split, context: FitContext, report: Report) -> SyntheticSet:
        import torch
        import torch.nn.functional as F
        from torch import nn

        from raysynth.nets.attention import LatentAttention
        from raysynth.nets.autoencoder import KoopmanAutoencoder, pretrained_autoencoder, reconstruction_loss
        from raysynth.nets.classifiers import build_classifier
        from raysynth.nets.koopman import AttentionPooling, KoopmanOperator
        from raysynth.nets.losses import covariance_loss, per_class_wasserstein

        params, device, dataset = self.params, context.device, split.dataset
        per_class = params.per_class(split)
        num_classes = split.num_classes
        generator = context.torch_rng("batches")
        all_images, all_labels = split.available  # never a validation image

        def build() -> KoopmanAutoencoder:
            ae = params.ae
            return KoopmanAutoencoder(split.channels, split.image_size, ae.latent_channels, ae.depth, ae.variational,
                                      ae.width, ae.film)

        subset = torch.randperm(len(all_images), generator=generator)[: params.ae_images]
        # each module from its own stream: a cached autoencoder (no draws) cannot change how the others start
        with context.seeded_init("autoencoder"):
            autoencoder = pretrained_autoencoder(build, all_images[subset], settings={"dataset": dataset.name, "ae": params.ae.model_dump(exclude={"latent_scale"}),
                                                 "whole_training_set": True}, epochs=params.ae_epochs,
                                                 kl_weight=params.ae.kl_weight, device=device, seed=context.seed_for("pretraining"),
                                                 cache_dir=context.cache_dir, on_epoch=lambda e, loss: report(e, ae_re=loss))
        if params.ae.latent_scale == "fixed":
            autoencoder.to(device).fix_latent_scale(all_images[subset[:1024]].to(device))
        if params.ceiling:  # the same subset as the random_subset baseline, so the two pair seed by seed
            from raysynth.methods.random_subset import baseline_subset

            real, real_labels = baseline_subset(split, per_class)
            with torch.no_grad():
                decoded = autoencoder.to(device).eval().decode(autoencoder.encode(real.to(device)))
            return SyntheticSet(dataset.in_range(decoded).cpu(), real_labels)
        size = autoencoder.latent_size
        dimension = params.ae.latent_channels * size * size
        with context.seeded_init("attention"):
            attention = LatentAttention.from_params(params.attention, params.ae.latent_channels, size)
        with context.seeded_init("pooling"):
            pooling = AttentionPooling(num_classes, per_class, dimension, params.key_dim, params.pooling_scores)
        operator = KoopmanOperator(dimension)
        with context.seeded_init("classifier"):
            classifier = build_classifier("convnet", channels=split.channels, num_classes=num_classes,
                                          image_size=split.image_size, width=params.classifier_width)
        modules = nn.ModuleDict({"autoencoder": autoencoder, "attention": attention, "pooling": pooling,
                                 "operator": operator, "classifier": classifier}).to(device)
        others = [p for name, p in modules.named_parameters() if not name.startswith("operator.")]
        optimizer = torch.optim.Adam([{"params": others},
                                      {"params": operator.parameters(), "lr": params.operator_lr or params.lr / dimension}],
                                     lr=params.lr)
        by_class = [torch.nonzero(all_labels == c).flatten() for c in range(num_classes)]
        new_labels = torch.arange(num_classes).repeat_interleave(per_class).to(device)
        loss = params.loss
        for epoch in context.resumable(context.epochs, modules=modules, optimizer=optimizer, generator=generator):
            batch = torch.cat([members[torch.randint(len(members), (params.batch_per_class,), generator=generator)]
                               for members in by_class])
            images, labels = all_images[batch].to(device), all_labels[batch].to(device)
            reconstruction, latents = reconstruction_loss(autoencoder, images, params.ae.kl_weight, generator)
            condensed = self.condense(modules, latents, labels, num_classes)
            synthetic = autoencoder.decode(condensed)
            cross_entropy = F.cross_entropy(classifier(torch.cat([images, synthetic])), torch.cat([labels, new_labels]))
            dims = condensed[0].numel()
            real_latents = latents.detach() if loss.detach_real else latents
            wasserstein = per_class_wasserstein(real_latents, labels, condensed, new_labels, loss.ot) / dims
            covariance = covariance_loss(condensed) / dims if len(condensed) > 1 else condensed.new_zeros(())
            total = (loss.alpha_re * reconstruction + loss.alpha_ce * cross_entropy + loss.alpha_w * wasserstein
                     + loss.alpha_cov * covariance)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            if report_due(epoch, context.epochs, 100):
                report(epoch, loss=total.item(), re=reconstruction.item(), ce=cross_entropy.item(), w=wasserstein.item(),
                       cov=covariance.item())
        with torch.no_grad():
            modules.eval()
            batch = torch.cat([members[torch.randperm(len(members), generator=generator)[: 4 * params.batch_per_class]]
                               for members in by_class])
            latents = autoencoder.encode(all_images[batch].to(device))
            condensed = self.condense(modules, latents, all_labels[batch].to(device), num_classes)
            identity = torch.eye(dimension, device=device)
            deviation = float(torch.linalg.matrix_norm(operator.weight - identity, ord=2))
            images = dataset.in_range(autoencoder.decode(condensed))  # the decoder is unbounded
            return SyntheticSet(images.cpu(), new_labels.cpu(), {"koopman_t_deviation": deviation})

    @staticmethod
    def condense(modules: nn.ModuleDict, latents: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Y' = T(pool_c(SA(Y_c))) for every class, class by class (IPC latents each)."""
        import torch

        attended = modules["attention"](latents)
        pooled = torch.cat([modules["pooling"](attended[labels == c], c) for c in range(num_classes)])
        return modules["operator"](pooled)
