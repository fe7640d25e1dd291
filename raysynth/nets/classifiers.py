"""The classifier zoo of the dataset-condensation literature, sized for 8, 28 and 32 px inputs.

Every builder takes ``(channels, num_classes, image_size, width)``; ``width`` is the base number of
channels (``None``: the reference value). Instance norm is ``GroupNorm(C, C)`` as in the reference code.
"""

from __future__ import annotations


import torch
from torch import nn
import torch.nn.functional as F


from raysynth.nets.settings import CLASSIFIERS  # noqa: E402 (the registry lives where names resolve without torch)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm `{kind}`: use instancenorm, batchnorm or none")


from raysynth.nets.settings import padded_size  # noqa: E402,F401 (re-exported)


class PadTo32(nn.Module):
    """28 px inputs are padded to 32 px (see :func:`padded_size`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (padded_size(x.shape[-1]) - x.shape[-1]) // 2
        return F.pad(x, (pad,) * 4) if pad else x


class ConvNet(nn.Module):
    """``depth`` blocks of conv3x3 - norm - ReLU - avgpool2, then one linear layer."""

    def __init__(self, channels: int, num_classes: int, image_size: int, width: int = 128, depth: int = 3,
                 norm: str = "instancenorm"):
        super().__init__()
        layers: list[nn.Module] = [PadTo32()]
        size = padded_size(image_size)
        in_channels = channels
        for _ in range(depth):
            layers += [nn.Conv2d(in_channels, width, 3, padding=1), _norm(norm, width), nn.ReLU(inplace=True)]
            if size >= 2:
                layers.append(nn.AvgPool2d(2))
                size //= 2
            in_channels = width
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.feature_dim = width * size * size
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (used by the domain FID and by distribution matching)."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.norm1 = _norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.norm2 = _norm(norm, planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), _norm(norm, planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """Small-image ResNet: conv3x3 stem, no max-pool, stages of basic blocks, global average pool."""

    def __init__(self, channels: int, num_classes: int, blocks: list[int], widths: list[int], norm: str):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False), _norm(norm, widths[0]), nn.ReLU(inplace=True))
        stages, in_planes = [], widths[0]
        for i, (count, planes) in enumerate(zip(blocks, widths)):
            for j in range(count):
                stride = 2 if (i > 0 and j == 0) else 1
                stages.append(_BasicBlock(in_planes, planes, stride, norm))
                in_planes = planes
        self.stages = nn.Sequential(*stages)
        self.feature_dim = in_planes
        self.classifier = nn.Linear(in_planes, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class VGG11(nn.Module):
    """VGG-11 with instance norm; a max-pool is skipped once the map is 1 px (8 px inputs)."""

    def __init__(self, channels: int, num_classes: int, image_size: int, width: int = 64, norm: str = "instancenorm"):
        super().__init__()
        plan = [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"]
        layers: list[nn.Module] = [PadTo32()]
        size = padded_size(image_size)
        in_channels = channels
        for item in plan:
            if item == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            out = width * int(item)
            layers += [nn.Conv2d(in_channels, out, 3, padding=1), _norm(norm, out), nn.ReLU(inplace=True)]
            in_channels = out
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.feature_dim = in_channels * size * size
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class AlexNet(nn.Module):
    """The condensation literature's AlexNet for small images (five convs, three max-pools)."""

    def __init__(self, channels: int, num_classes: int, image_size: int, width: int = 128):
        super().__init__()
        w = width
        size = padded_size(image_size)
        pools = []
        for _ in range(3):
            pools.append(nn.MaxPool2d(2) if size >= 2 else nn.Identity())
            size = size // 2 if size >= 2 else size
        self.features = nn.Sequential(
            PadTo32(),
            nn.Conv2d(channels, w, 5, padding=2), nn.ReLU(inplace=True), pools[0],
            nn.Conv2d(w, w * 3 // 2, 5, padding=2), nn.ReLU(inplace=True), pools[1],
            nn.Conv2d(w * 3 // 2, w * 2, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w * 2, w * 3 // 2, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w * 3 // 2, w * 3 // 2, 3, padding=1), nn.ReLU(inplace=True), pools[2],
            nn.Flatten(),
        )
        self.feature_dim = (w * 3 // 2) * size * size
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@CLASSIFIERS.register("convnet")
def convnet(channels: int, num_classes: int, image_size: int, width: int | None = None, depth: int = 3,
            norm: str = "instancenorm") -> nn.Module:
    return ConvNet(channels, num_classes, image_size, width or 128, depth, norm)


@CLASSIFIERS.register("resnet18")
def resnet18(channels: int, num_classes: int, image_size: int, width: int | None = None) -> nn.Module:
    w = width or 64
    return ResNet(channels, num_classes, [2, 2, 2, 2], [w, 2 * w, 4 * w, 8 * w], "instancenorm")


@CLASSIFIERS.register("vgg11")
def vgg11(channels: int, num_classes: int, image_size: int, width: int | None = None) -> nn.Module:
    return VGG11(channels, num_classes, image_size, width or 64)


@CLASSIFIERS.register("alexnet")
def alexnet(channels: int, num_classes: int, image_size: int, width: int | None = None) -> nn.Module:
    return AlexNet(channels, num_classes, image_size, width or 128)


@CLASSIFIERS.register("resnet20")
def resnet20(channels: int, num_classes: int, image_size: int, width: int | None = None) -> nn.Module:
    """COLA's classifier: the CIFAR ResNet-20 (three stages of three blocks, batch norm)."""
    w = width or 16
    return ResNet(channels, num_classes, [3, 3, 3], [w, 2 * w, 4 * w], "batchnorm")


def build_classifier(name: str, *, channels: int, num_classes: int, image_size: int, width: int | None = None) -> nn.Module:
    """The classifier registered as ``name``, sized for the inputs."""
    return CLASSIFIERS.get(name)(channels, num_classes, image_size, width)


class ClusterEncoder(nn.Module):
    """COLA's step I: a classifier trunk whose outputs are unit vectors (cluster targets), and a rotation head."""

    def __init__(self, kind: str, channels: int, clusters: int, image_size: int):
        super().__init__()
        self.trunk = build_classifier(kind, channels=channels, num_classes=clusters, image_size=image_size)
        self.rotation = nn.Linear(self.trunk.feature_dim, 4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.trunk(images), dim=1)

    def rotations(self, images: torch.Tensor) -> torch.Tensor:
        return self.rotation(self.trunk.embed(images))
