"""Learned augmentation: the transformation families and the batched pair fit."""

import math

import numpy as np
import pytest
import torch

from raysynth.data import make_split
from raysynth.methods import METHODS, FitContext
from raysynth.methods.learned_augmentation import FitParams, LearnedAugmentationParams, TransformFamily, fit_pairs
from raysynth.nets.spatial import affine_exp, affine_log, affine_warp, compose_displacements, integrate_velocity


def test_exp_of_log_recovers_random_affines_near_identity():
    generator = torch.Generator().manual_seed(0)
    theta = torch.eye(2, 3).repeat(50, 1, 1) + 0.2 * torch.randn(50, 2, 3, generator=generator)
    vectors, kept = affine_log(theta)
    assert kept.all() and torch.allclose(affine_exp(vectors), theta, atol=1e-5)


def rotation(degrees: float) -> torch.Tensor:
    angle = math.radians(degrees)
    return torch.tensor([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0]])


def test_fitting_recovers_a_known_rotation(fashion_mnist):
    image = fashion_mnist.train_images[:1].float() / 255
    rotated = affine_warp(image, rotation(15.0)[None])
    family = TransformFamily(LearnedAugmentationParams(transform="affine"), 28)
    fitted, _ = fit_pairs(family, image, rotated, FitParams(steps=300, lr=0.01))
    assert torch.allclose(fitted[0], rotation(15.0), atol=0.03)


def test_diffeomorphic_warp_composed_with_its_inverse_is_close_to_identity():
    velocity = 0.15 * torch.randn(4, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    forward, backward = integrate_velocity(velocity, 28), integrate_velocity(-velocity, 28)
    composed = compose_displacements(forward, backward)[..., 4:-4, 4:-4]  # away from the frame's border
    pixel = 2 / 28  # one pixel in grid_sample's [-1, 1] units; the warp moves pixels by up to ~5
    assert forward.abs().max() > 3 * pixel and composed.abs().max() < pixel and \
        composed.abs().mean() < 0.05 * forward.abs().mean()


@pytest.mark.parametrize("transform", ["affine", "diffeomorphic"])
def test_pair_fitting_is_one_batched_optimization(digits, monkeypatch, transform):
    created = []

    class CountingAdam(torch.optim.Adam):
        def __init__(self, *args, **kwargs):
            created.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", CountingAdam)
    split = make_split(digits, 6, seed=0)
    params = LearnedAugmentationParams(transform=transform, expansion_ratio=3, fit=FitParams(steps=5))
    synthetic = METHODS.get("learned_augmentation")(params).fit(split, FitContext(1, torch.device("cpu"), 0), lambda s, **m: None)
    assert len(created) == 1 and synthetic.info["fit_pairs"] == 10 * 6 * 5 and len(synthetic.labels) == 2 * 60


@pytest.mark.parametrize("center", ["zero", "mean"])
def test_tangent_gaussian_is_centred_as_asked(center):
    from raysynth.methods.learned_augmentation import StatsParams, sample_tangents

    vectors = np.random.default_rng(0).normal(loc=3.0, size=(200, 6))
    draws = sample_tangents(vectors, StatsParams(center=center), 4000, np.random.default_rng(1))
    expected = vectors.mean(0) if center == "mean" else np.zeros(6)
    assert np.allclose(draws.mean(0), expected, atol=0.1)
