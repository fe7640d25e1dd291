"""The dataset registry: where each dataset's files live, how they are read, how they are normalized.

Importing this module loads no array library: the registry's metadata (sizes, classes) answers
``raysynth validate`` and ``raysynth datasets`` at once; numpy and torch are imported when data is read.

Images are kept as ``uint8`` tensors ``N x C x H x W`` (compact enough to share through Ray's
object store) and normalized on use with the dataset's per-channel mean and std.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from raysynth.errors import DatasetUnavailableError
from raysynth.registry import Registry

if TYPE_CHECKING:  # annotations only: the module loads without torch (raysynth validate stays fast)
    import numpy as np
    import torch

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image dataset with a fixed train/test split, as uint8 tensors."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (or floats in [0, 1]) -> floats with zero mean and unit std per channel."""
        import torch

        unit = images.float() / 255.0 if images.dtype == torch.uint8 else images
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return (unit - mean) / std

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized float images -> floats in [0, 1] for display."""
        import torch

        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return (images * std + mean).clamp(0, 1)

    def in_range(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized images clamped to what a real image can be (pixels in [0, 1] before normalizing)."""
        return self.normalize(self.denormalize(images))


@dataclass(frozen=True)
class DatasetSource:
    """How to find and read one dataset; ``roots`` are the folders searched, in order."""

    name: str
    num_classes: int
    channels: int
    image_size: int
    train_size: int
    test_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    read: Callable[[Path, bool], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    is_present: Callable[[Path], bool]
    how_to_get: str
    bundled: bool = False
    smallest_class: int = 0  # training images of the smallest class: splits are checked against it without loading

    def check_split(self, images_per_class: int, validation_per_class: int) -> str | None:
        """Why a few-shot + validation split cannot be drawn from this dataset, or None when it can."""
        needed = images_per_class + validation_per_class
        if self.smallest_class and needed > self.smallest_class:
            return (f"`{self.name}`'s smallest class has {self.smallest_class} training images, but the split needs "
                    f"{images_per_class} few-shot + {validation_per_class} validation = {needed} per class")
        return None

    def roots(self, data_root: Path | None, cache_dir: Path) -> list[Path]:
        candidates = [data_root] if data_root is not None else []
        if self.name == "fashion-mnist":
            candidates.append(DEBIAN_FASHION_MNIST)
        candidates.append(cache_dir / "datasets")
        return candidates

    def locate(self, data_root: Path | None, cache_dir: Path) -> Path | None:
        """The first root that holds this dataset's files, or None."""
        if self.bundled:
            return cache_dir
        for root in self.roots(data_root, cache_dir):
            if root.exists() and self.is_present(root):
                return root
        return None


@dataclass(frozen=True)
class DataInfo:
    """What a method's parameter checks may know of the data before any image is loaded: the
    dataset's registry metadata and the split's sizes."""

    name: str
    num_classes: int
    channels: int
    image_size: int
    smallest_class: int
    images_per_class: int
    validation_per_class: int

    @property
    def usable_per_class(self) -> int:
        """Training images per class a method may draw from (the smallest class minus validation)."""
        return self.smallest_class - self.validation_per_class

    @classmethod
    def of(cls, source: "DatasetSource", images_per_class: int, validation_per_class: int) -> "DataInfo":
        return cls(source.name, source.num_classes, source.channels, source.image_size, source.smallest_class,
                   images_per_class, validation_per_class)


DATASETS: Registry[DatasetSource] = Registry("dataset")


def _register(source: DatasetSource) -> None:
    DATASETS.register(source.name)(source)


def _as_uint8_nchw(images: np.ndarray) -> np.ndarray:
    import numpy as np

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    elif images.shape[-1] in (1, 3):  # NHWC from torchvision's CIFAR
        images = images.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(images, dtype=np.uint8)


def _read_digits(root: Path, download: bool):
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # 0..16 grey levels -> 0..255; a fixed stratified 70/30 split so every seed tests on the same images
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.3, stratify=digits.target, random_state=0
    )
    return x_train, y_train, x_test, y_test


def _torchvision_reader(cls_name: str, folder: str | None = None):
    def read(root: Path, download: bool):
        import numpy as np
        import torch
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        out = []
        for train in (True, False):
            ds = cls(str(root), train=train, download=download)
            data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else ds.data
            targets = ds.targets.numpy() if isinstance(ds.targets, torch.Tensor) else np.asarray(ds.targets)
            out += [data, targets]
        return tuple(out)

    return read


def _read_fashion_mnist(root: Path, download: bool):
    """torchvision's layout (``FashionMNIST/raw``) goes through its dataset class; a folder of bare
    IDX files (the Debian package's, recompressed so torchvision's checksums differ) is read with
    torchvision's IDX readers."""
    if (root / "FashionMNIST" / "raw").exists() or download:
        return _torchvision_reader("FashionMNIST")(root, download)
    import gzip
    import tempfile

    from torchvision.datasets.mnist import read_image_file, read_label_file

    arrays = []
    with tempfile.TemporaryDirectory(prefix="raysynth-idx-") as scratch:
        for name in _FASHION_FILES:
            path = root / name
            if not path.exists():
                path = Path(scratch) / name
                with gzip.open(root / f"{name}.gz", "rb") as packed, open(path, "wb") as plain:
                    shutil.copyfileobj(packed, plain)
            reader = read_image_file if "images" in name else read_label_file
            arrays.append(reader(str(path)).numpy())
    return tuple(arrays)


_FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _fashion_present(root: Path) -> bool:
    torchvision_layout = all((root / "FashionMNIST" / "raw" / n).exists() for n in _FASHION_FILES)
    bare = all((root / n).exists() or (root / f"{n}.gz").exists() for n in _FASHION_FILES)
    return torchvision_layout or bare


def _mnist_present(root: Path) -> bool:
    return all((root / "MNIST" / "raw" / n).exists() for n in _FASHION_FILES)


def _cifar_present(folder: str) -> Callable[[Path], bool]:
    return lambda root: (root / folder).is_dir()


_register(DatasetSource(
    name="digits", num_classes=10, channels=1, image_size=8, train_size=1257, test_size=540, smallest_class=122,
    mean=(0.3059,), std=(0.3768,), read=_read_digits, is_present=lambda root: True,
    how_to_get="bundled with scikit-learn", bundled=True,
))
_register(DatasetSource(
    name="fashion-mnist", num_classes=10, channels=1, image_size=28, train_size=60000, test_size=10000, smallest_class=6000,
    mean=(0.2861,), std=(0.3530,), read=_read_fashion_mnist, is_present=_fashion_present,
    how_to_get="`apt-get install dataset-fashion-mnist`, or set RAYSYNTH_DATA to a folder with the IDX files, "
    "or allow torchvision to download it (needs network)",
))
_register(DatasetSource(
    name="mnist", num_classes=10, channels=1, image_size=28, train_size=60000, test_size=10000, smallest_class=5421,
    mean=(0.1307,), std=(0.3081,), read=_torchvision_reader("MNIST"), is_present=_mnist_present,
    how_to_get="set RAYSYNTH_DATA to a folder holding torchvision's MNIST/raw, or run where torchvision can download it",
))
_register(DatasetSource(
    name="cifar10", num_classes=10, channels=3, image_size=32, train_size=50000, test_size=10000, smallest_class=5000,
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), read=_torchvision_reader("CIFAR10"),
    is_present=_cifar_present("cifar-10-batches-py"),
    how_to_get="set RAYSYNTH_DATA to a folder holding cifar-10-batches-py, or run where torchvision can download it",
))
_register(DatasetSource(
    name="cifar100", num_classes=100, channels=3, image_size=32, train_size=50000, test_size=10000, smallest_class=500,
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), read=_torchvision_reader("CIFAR100"),
    is_present=_cifar_present("cifar-100-python"),
    how_to_get="set RAYSYNTH_DATA to a folder holding cifar-100-python, or run where torchvision can download it",
))


def load_dataset(name: str, *, data_root: Path | None, cache_dir: Path, allow_download: bool = True) -> ImageDataset:
    """Reads dataset ``name`` from the first folder that holds it, downloading only when allowed.

    Raises :class:`DatasetUnavailableError` naming the folders searched and how to get the data.
    """
    import numpy as np
    import torch

    source = DATASETS.get(name)
    root = source.locate(data_root, cache_dir)
    download = False
    if root is None:
        if not allow_download:
            raise DatasetUnavailableError(unavailable_message(source, data_root, cache_dir))
        root, download = cache_dir / "datasets", True
        root.mkdir(parents=True, exist_ok=True)
    try:
        x_train, y_train, x_test, y_test = source.read(root, download)
    except (RuntimeError, OSError) as error:  # torchvision's download failure when offline
        raise DatasetUnavailableError(
            f"{unavailable_message(source, data_root, cache_dir)} (download failed: {str(error).splitlines()[0]})"
        ) from None
    return ImageDataset(
        name=name,
        train_images=torch.from_numpy(_as_uint8_nchw(x_train)),
        train_labels=torch.as_tensor(np.asarray(y_train), dtype=torch.int64),
        test_images=torch.from_numpy(_as_uint8_nchw(x_test)),
        test_labels=torch.as_tensor(np.asarray(y_test), dtype=torch.int64),
        num_classes=source.num_classes,
        mean=source.mean,
        std=source.std,
    )


def unavailable_message(source: DatasetSource, data_root: Path | None, cache_dir: Path) -> str:
    searched = ", ".join(str(p) for p in source.roots(data_root, cache_dir))
    return f"dataset `{source.name}` is not available here (looked in {searched}): {source.how_to_get}"
