import pytest
import torch

from raysynth.data import load_dataset, make_split
from raysynth.errors import DatasetUnavailableError


def test_split_is_seeded(digits):
    assert torch.equal(make_split(digits, 5, seed=3).fewshot_index, make_split(digits, 5, seed=3).fewshot_index)


def test_split_changes_with_seed(digits):
    assert not torch.equal(make_split(digits, 5, seed=0).fewshot_index, make_split(digits, 5, seed=1).fewshot_index)


def test_fewshot_is_class_balanced(digits):
    _, labels = make_split(digits, 7, seed=0).fewshot
    assert torch.bincount(labels, minlength=10).tolist() == [7] * 10


def test_fewshot_and_remainder_partition_the_training_set(digits):
    split = make_split(digits, 5, seed=0)
    fewshot, remainder = set(split.fewshot_index.tolist()), set(split.remainder_index.tolist())
    assert not fewshot & remainder and len(fewshot | remainder) == len(digits.train_labels)


def test_images_are_normalized(digits):
    images = digits.normalize(digits.train_images)
    assert abs(float(images.mean())) < 0.01 and abs(float(images.std()) - 1) < 0.01


def test_fashion_mnist_reads_the_debian_files(fashion_mnist):
    assert tuple(fashion_mnist.train_images.shape) == (60000, 1, 28, 28) and len(fashion_mnist.test_labels) == 10000


def test_unavailable_dataset_names_where_it_looked(tmp_path):
    with pytest.raises(DatasetUnavailableError, match=r"cifar100.*not available.*" + str(tmp_path)):
        load_dataset("cifar100", data_root=tmp_path, cache_dir=tmp_path / "cache", allow_download=False)


@pytest.mark.parametrize("seed", range(5))
def test_a_method_never_receives_a_validation_image(digits, seed):
    split = make_split(digits, 10, seed=seed, validation_per_class=50)
    validation = set(split.validation_index.tolist())
    seen = set(split.fewshot_index.tolist()) | set(split.remainder_index.tolist())
    subset_images, _ = split.random_subset(60)  # what condensation baselines and DM draw from
    validation_images = digits.normalize(digits.train_images[split.validation_index]).flatten(1)
    leaked = (torch.cdist(subset_images.flatten(1), validation_images) == 0).any(dim=1)
    assert not validation & seen and len(validation | seen) == len(digits.train_labels) and not leaked.any()


def test_validation_set_is_seeded_and_class_balanced(digits):
    first, again = make_split(digits, 10, 4, validation_per_class=30), make_split(digits, 10, 4, validation_per_class=30)
    other = make_split(digits, 10, 5, validation_per_class=30)
    assert torch.equal(first.validation_index, again.validation_index) and \
        not torch.equal(first.validation_index, other.validation_index) and \
        torch.bincount(first.validation[1], minlength=10).tolist() == [30] * 10


def test_the_fewshot_set_of_a_seed_does_not_depend_on_the_validation_size(digits):
    assert torch.equal(make_split(digits, 10, 2).fewshot_index, make_split(digits, 10, 2, validation_per_class=50).fewshot_index)


def test_registry_smallest_class_matches_the_data(digits):
    from raysynth.data.datasets import DATASETS

    assert DATASETS.get("digits").smallest_class == int(torch.bincount(digits.train_labels).min())
