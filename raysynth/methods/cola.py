"""Method `cola`: unsupervised Clustered Optimization of LAtent space (seed paper 001, chapter 3).

Step I clusters the data without labels: an encoder maps images onto the unit sphere of R^K and is
trained to hit targets drawn from a K-component Gaussian mixture (normalized), reassigned within
each batch by the Hungarian algorithm, alternating with rotation-prediction epochs (RotNet). Steps
II-III are sCOLA's, with t_i the image's learned target. Labels exist only for evaluation: a
sample's label is its cluster's majority class among the training images (purity is reported).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from raysynth.methods.base import FitContext, Intent, Method, Report, SyntheticSet, register_method
from raysynth.methods.scola import FIT_LOSS, class_code, decode, fit_glo
from raysynth.nets.settings import GloParams

if TYPE_CHECKING:  # annotations only: the module loads without torch (raysynth validate stays fast)
    import torch


class ColaParams(GloParams):
    images: int = Field(2000, ge=10, le=10_000_000, description="training images used (a seeded subset of the whole training set)")
    encoder: Literal["resnet18", "convnet"] = Field("resnet18", description="step I encoder (the paper: ResNet-18)")
    encoder_epochs: int = Field(10, ge=1, le=1_000_000, description="step I epochs (target and rotation epochs alternate)")
    encoder_lr: float = Field(0.05, gt=0, le=10, description="SGD lr of step I (momentum 0.9, weight decay 5e-4)")
    target_std: float = Field(0.1, gt=0, le=1e6, description="std of the mixture components around their unit centres")
    rotation: bool = Field(True, description="alternate rotation-prediction epochs (RotNet)")
    samples_per_class: int = Field(100, ge=1, le=100_000, description="synthetic images per cluster")


def hungarian_assignment(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The permutation p maximizing sum_i <outputs_i, targets_p(i)> (scipy's linear_sum_assignment)."""
    import torch
    from scipy.optimize import linear_sum_assignment

    cost = -(outputs.detach() @ targets.T).cpu().numpy()
    rows, columns = linear_sum_assignment(cost)
    permutation = torch.empty(len(rows), dtype=torch.long)
    permutation[torch.as_tensor(rows)] = torch.as_tensor(columns)
    return permutation


def mixture_targets(count: int, clusters: int, std: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` unit targets from a K-component mixture with centres e_k, and their components."""
    import torch
    import torch.nn.functional as F

    components = torch.randint(clusters, (count,), generator=generator)
    centres = F.one_hot(components, clusters).float()
    return F.normalize(centres + std * torch.randn(count, clusters, generator=generator), dim=1), components


def cluster_images(params: ColaParams, images: torch.Tensor, clusters: int, context: FitContext, report: Report):
    """Step I: targets (unit, N x K) and their components after training the encoder."""
    import torch
    import torch.nn.functional as F

    from raysynth.nets.classifiers import ClusterEncoder

    device, generator = context.device, context.torch_rng("encoder batches")
    targets, components = mixture_targets(len(images), clusters, params.target_std, generator)
    with context.seeded_init("encoder init"):
        encoder = ClusterEncoder(params.encoder, images.shape[1], clusters, images.shape[-1]).to(device)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=params.encoder_lr, momentum=0.9, weight_decay=5e-4)
    for epoch in context.resumable(params.encoder_epochs, phase="encoder", encoder=encoder, optimizer=optimizer,
                                   targets=targets, components=components, rng=generator):
        order, total = torch.randperm(len(images), generator=generator), 0.0
        rotation_epoch = params.rotation and epoch % 2 == 0
        for begin in range(0, len(images), 128):
            index = order[begin: begin + 128]
            batch = images[index].to(device)
            if rotation_epoch:  # each image in all four orientations
                rotated = torch.cat([torch.rot90(batch, k, dims=(2, 3)) for k in range(4)])
                loss = F.cross_entropy(encoder.rotations(rotated), torch.arange(4, device=device).repeat_interleave(len(batch)))
            else:
                outputs = encoder(batch)
                permutation = hungarian_assignment(outputs, targets[index].to(device))
                targets[index], components[index] = targets[index][permutation], components[index][permutation]
                loss = (outputs - targets[index].to(device)).pow(2).sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        report(epoch, encoder_loss=total / len(images), rotation_epoch=float(rotation_epoch))
    return targets, components


def majority_mapping(components: torch.Tensor, labels: torch.Tensor, clusters: int, classes: int) -> tuple[list[int], float]:
    """Each cluster's majority class among its training images, and the purity of that mapping."""
    import torch

    counts = torch.zeros(clusters, classes)
    counts.index_put_((components, labels), torch.ones(len(labels)), accumulate=True)
    return counts.argmax(1).tolist(), float(counts.max(1).values.sum() / max(1, len(labels)))


@register_method("cola")
class COLA(Method):
    Params = ColaParams
    intent = Intent.GENERATION
    uses_remainder = True  # unsupervised, on the whole training set; labels only map clusters to classes
    labels_given = False  # two clusters may map to one class, leaving a class without samples
    smoke_params = {"encoder": "convnet", "encoder_epochs": 2}  # the default encoder trains for minutes
    epoch_counts = "GLO epochs over the clustered images (codes and generator)"

    def fit(self, split, context: FitContext, report: Report) -> SyntheticSet:
        import torch

        from raysynth.nets.glo import fit_content_gaussians, sample_content

        params, dataset = self.params, split.dataset
        clusters = split.num_classes
        pool, pool_labels = split.available  # never a validation image
        chosen = torch.randperm(len(pool_labels), generator=context.torch_rng("images"))[: params.images]
        images, labels = pool[chosen], pool_labels[chosen]
        targets, components = cluster_images(params, images, clusters, context, report)
        fit = fit_glo(params, split, context, report, images, targets)
        mapping, purity = majority_mapping(components, labels, clusters, split.num_classes)
        gaussians = fit_content_gaussians(fit.content, components, clusters, params.sampling.cov)
        rng = context.numpy_rng("content samples")
        codes, new_labels = [], []
        for k, gaussian in enumerate(gaussians):
            if gaussian is None:
                continue
            codes.append(torch.cat([class_code(fit.cluster_codes, components == k).expand(params.samples_per_class, -1),
                                    sample_content(gaussian, params.samples_per_class, rng, params.sampling.scale)], dim=1))
            new_labels.append(torch.full((params.samples_per_class,), mapping[k]))
        return SyntheticSet(decode(fit.model, torch.cat(codes), dataset, context.device), torch.cat(new_labels),
                            {"cluster_purity": purity, "clusters_used": float(len(codes)), FIT_LOSS: fit.final_loss})
