"""Baseline `dm`: Distribution Matching (Zhao & Bilen, WACV 2023), condensation's published peer.

Synthetic images, initialized from real ones, are learned directly: at each iteration a randomly
initialized ConvNet embeds a real batch and the synthetic images of every class, both through the
same differentiable siamese augmentation, and the squared distance between the per-class mean
embeddings is minimized (SGD on the pixels, momentum 0.5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from raysynth.methods.base import (CondensationParams, FitContext, Intent, Method, Report, SyntheticSet,
                                    register_method, report_due)

if TYPE_CHECKING:  # annotations only: the module loads without torch (raysynth validate stays fast)
    import torch


class DmParams(CondensationParams):
    iterations: int | None = Field(None, ge=1, le=1_000_000, description="updates of the synthetic images (DM: 20,000); None: budget.epochs")
    lr_img: float = Field(1.0, gt=0, le=10, description="SGD learning rate on the pixels (DM: 1.0)")
    batch_real: int = Field(256, ge=1, le=65536, description="real images per class per iteration")
    width: int = Field(128, ge=8, le=4096, description="width of the random ConvNet embedder")
    augment: bool = Field(True, description="differentiable siamese augmentation (DSA)")


def distribution_matching_loss(embed, real: list[torch.Tensor], synthetic: list[torch.Tensor],
                               generator: torch.Generator | None, policy: tuple[str, ...]) -> torch.Tensor:
    """sum over classes of ||mean embed(real_c) - mean embed(synthetic_c)||^2, both through one
    augmentation draw per class (siamese: the generator state is replayed)."""
    import torch

    from raysynth.evaluation.augment import dsa_augment

    loss = torch.zeros((), device=synthetic[0].device)
    for real_c, synthetic_c in zip(real, synthetic):
        if generator is not None:
            state = generator.get_state()
            real_c = dsa_augment(real_c, generator, policy, shared=True)
            generator.set_state(state)
            synthetic_c = dsa_augment(synthetic_c, generator, policy, shared=True)
        loss = loss + (embed(real_c).mean(0) - embed(synthetic_c).mean(0)).pow(2).sum()
    return loss


@register_method("dm")
class DistributionMatching(Method):
    Params = DmParams
    intent = Intent.CONDENSATION
    uses_remainder = True  # condenses the whole labelled training set
    epoch_counts = "synthetic-set updates, each on one real batch per class (params.iterations overrides)"

    def fit(self, split, context: FitContext, report: Report) -> SyntheticSet:
        import torch

        from raysynth.evaluation.augment import policy_for
        from raysynth.nets.classifiers import build_classifier

        params, device, dataset = self.params, context.device, split.dataset
        per_class = params.per_class(split)
        generator = context.torch_rng("batches")
        all_images, all_labels = split.available  # never a validation image
        by_class = [torch.nonzero(all_labels == c).flatten() for c in range(split.num_classes)]
        start_images, labels = split.random_subset(per_class, seed_offset=2)  # DM initializes from real samples
        synthetic = start_images.clone().to(device).requires_grad_()
        optimizer = torch.optim.SGD([synthetic], lr=params.lr_img, momentum=0.5)
        policy = policy_for(dataset.name) if params.augment else ()
        class_masks = [labels.to(device) == c for c in range(split.num_classes)]
        iterations = params.iterations or context.epochs
        for iteration in context.resumable(iterations, images=synthetic, optimizer=optimizer, generator=generator):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=generator)))
                net = build_classifier("convnet", channels=split.channels, num_classes=split.num_classes,
                                       image_size=split.image_size, width=params.width).to(device)
            for parameter in net.parameters():
                parameter.requires_grad_(False)
            real = [all_images[members[torch.randint(len(members), (params.batch_real,), generator=generator)]].to(device)
                    for members in by_class]
            synthetic_by_class = [synthetic[mask] for mask in class_masks]
            loss = distribution_matching_loss(net.embed, real, synthetic_by_class, generator if policy else None, policy)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if report_due(iteration, iterations):
                report(iteration, loss=loss.item())
        # the learned pixels are unconstrained: what a classifier trains on is clamped to real images' range
        return SyntheticSet(dataset.in_range(synthetic.detach()).cpu(), labels.clone())
