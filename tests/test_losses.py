import numpy as np
import ot
import pytest
import torch

from raysynth.nets.losses import covariance_loss, per_class_wasserstein, wasserstein


def test_exact_wasserstein_matches_ot_emd2_computed_directly():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(loc=1.0, size=(5, 3))
    direct = ot.emd2(np.full(7, 1 / 7), np.full(5, 1 / 5), ot.dist(x, y))
    assert float(wasserstein(torch.tensor(x), torch.tensor(y), "exact")) == pytest.approx(direct, rel=1e-9)


@pytest.mark.parametrize("kind", ["exact", "sinkhorn", "sliced"])
def test_wasserstein_pulls_the_target_towards_the_source(kind):
    source = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    target = (torch.randn(12, 4, generator=torch.Generator().manual_seed(1)) + 2.0).requires_grad_()
    wasserstein(source, target, kind).backward()
    assert float((target.grad * (target.detach() - source.mean(0))).sum()) > 0  # descent moves target to source


def test_per_class_wasserstein_is_zero_for_identical_classes():
    x = torch.randn(10, 3, dtype=torch.float64)
    labels = torch.arange(10) % 2
    assert float(per_class_wasserstein(x, labels, x, labels)) == pytest.approx(0.0, abs=1e-12)


def test_covariance_loss_matches_its_formula():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(20, 4)) @ rng.normal(size=(4, 4))
    z = (y - y.mean(0)) / (y.std(0, ddof=1) + 1e-5)
    direct = np.sum((np.cov(z, rowvar=False) - np.eye(4)) ** 2)
    assert float(covariance_loss(torch.tensor(y))) == pytest.approx(direct, rel=1e-6)
