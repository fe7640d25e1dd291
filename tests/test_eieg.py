"""EIEG: the elastic interaction kernel and energy behave as the paper's reading says."""

from dataclasses import replace

import pytest
import torch

from raysynth.errors import NonFiniteLossError
from raysynth.evaluation.toy import GRID, STD, TOY_EIEG, mode_coverage, train_toy_gan, twenty_five_gaussians
from raysynth.nets.gan import (DCGANDiscriminator, DCGANGenerator, GanSettings, discriminator_loss, eie_energy, eie_kernel,
                              generator_loss, self_interaction, train_gan)


@pytest.mark.parametrize("dimension", [2, 16, 32])
def test_kernel_and_its_derivative_are_continuous_at_the_cutoff(dimension):
    cutoff, h = 0.1, 1e-7
    r = torch.tensor([cutoff - h, cutoff + h], dtype=torch.float64, requires_grad=True)
    values = eie_kernel(r, dimension, cutoff)
    (slopes,) = torch.autograd.grad(values.sum(), r)
    assert float(values[1].detach()) == pytest.approx(float(values[0].detach()), rel=1e-3) and \
        float(slopes[0]) == pytest.approx(float(slopes[1]), rel=1e-4)


def test_the_kernel_is_in_the_papers_units():
    r = torch.tensor([0.5, 2.0], dtype=torch.float64)
    assert torch.allclose(eie_kernel(r, 16, 0.1), r.pow(-15)) and float(eie_kernel(torch.zeros(1), 2, 0.1)) == pytest.approx(15.0)


def test_the_stabilizer_weighs_lambda_times_the_energy_in_the_papers_units():
    """D's loss is -E + lambda S with S the literal mean r^-(d-1) over real pairs: nothing multiplies lambda."""
    real = torch.tensor([[0.0, 0.0], [1.0, 0.0]])  # one pair at r = 1, beyond both cut-offs: K = 1
    fake = torch.tensor([[10.0, 10.0], [11.0, 10.0]])
    settings = GanSettings(loss="eie", stab_lambda=2.0)
    with_stabilizer = discriminator_loss(settings, real, fake)
    without = discriminator_loss(replace(settings, stab_lambda=0.0), real, fake)
    assert float(with_stabilizer - without) == pytest.approx(2.0 * 1.0, rel=1e-6)


def test_energy_is_near_zero_for_one_distribution_and_positive_for_two():
    generator = torch.Generator().manual_seed(0)
    first, second = torch.randn(400, 2, generator=generator), torch.randn(400, 2, generator=generator)
    shifted = torch.randn(400, 2, generator=generator) + torch.tensor([2.0, 0.0])
    same, different = float(eie_energy(first, second, 0.1)), float(eie_energy(first, shifted, 0.1))
    assert different > 0 and abs(same) < 0.05 * different


def test_self_interaction_pushes_two_nearby_generated_points_apart():
    points = torch.tensor([[0.0, 0.0], [0.05, 0.0]], requires_grad=True)
    (gradient,) = torch.autograd.grad(self_interaction(points, 0.1), points)
    # descending the energy moves point 0 to -x and point 1 to +x: apart
    assert float(-gradient[0, 0]) < 0 < float(-gradient[1, 0])


def test_mode_coverage_counts_modes_and_quality():
    generator = torch.Generator().manual_seed(0)
    assert mode_coverage(twenty_five_gaussians(2500, generator)) [0] == 25
    one_mode = GRID[0] + STD * torch.randn(1000, 2, generator=generator)
    covered, quality = mode_coverage(one_mode)
    assert covered == 1 and quality > 0.95


def test_the_literal_reading_gives_the_generator_a_gradient_in_the_papers_units(fashion_mnist):
    # Table 3's settings on 10 real images of one class, d = 16, D's raw outputs: in the paper's units
    # G's gradient is of order 1-100 at initialization; divided by K(eps) = 1e15 it fell below Adam's
    # epsilon (1e-8) and G learned nothing
    real = fashion_mnist.train_images[fashion_mnist.train_labels == 0][:10].float()
    real = real / 127.5 - 1  # uint8 -> the generator's tanh range
    torch.manual_seed(0)
    g, d = DCGANGenerator(1, 28, 100, 32), DCGANDiscriminator(1, 28, 16, 32)
    noise = torch.randn(64, 100)

    def gradient_norm(scale: float) -> float:
        g.zero_grad()
        settings = GanSettings(loss="eie", feature_scale=scale)
        generator_loss(settings, d(real), d(g(noise))).backward()
        return float(torch.cat([p.grad.flatten() for p in g.parameters()]).norm())

    literal = gradient_norm(1.0)
    assert 1e-2 < literal < 1e6


def test_without_self_interaction_the_generator_collapses():
    # the paper's Fig. 4 on the 25 Gaussians, with G alone under the energy (section 2.3): the
    # generated samples' mutual repulsion is what spreads them over the data
    spread = {}
    for generated_self in (True, False):
        samples, _ = train_toy_gan(replace(TOY_EIEG, generated_self=generated_self), 100, 0, feature_network=False)
        spread[generated_self] = float(samples.std(0).mean())
    assert spread[False] < 0.05 * spread[True]


def _one_digits_class(digits) -> torch.Tensor:
    images = digits.train_images[digits.train_labels == 3][:10].float()
    return images / images.max() * 2 - 1  # the generator's tanh range


def _train_literal(real: torch.Tensor, dimension: int, settings: GanSettings, steps: int) -> list[torch.optim.Adam]:
    """``steps`` of EIEG on ``real`` (networks in its dtype); returns the two optimizers (Adam's moments)."""
    torch.manual_seed(0)
    g = DCGANGenerator(1, 8, 100, 32).to(real.dtype)
    d = DCGANDiscriminator(1, 8, dimension, 32).to(real.dtype)
    stream, optimizers = torch.Generator().manual_seed(0), []

    def loop(steps, **state):
        optimizers.extend([state["g_optimizer"], state["d_optimizer"]])
        return range(1, steps + 1)

    train_gan(g, d, lambda n: real[torch.randint(len(real), (n,), generator=stream)],
              lambda n: torch.randn(n, 100, generator=stream).to(real.dtype), settings, steps, loop=loop)
    return optimizers


def test_literal_gradients_beyond_float32_squares_still_train_every_weight(digits):
    # d = 16 at a cut-off of 0.02: K(eps) = 3e25 and G's gradients reach 1e23, whose squares (Adam's
    # second moment, float32) were inf, freezing 51,777 of G's weights (step m / sqrt(inf) = 0)
    settings = GanSettings(loss="eie", cutoff=0.02, feature_scale=1e-3)
    optimizers = _train_literal(_one_digits_class(digits), 16, settings, 5)
    moments = [state["exp_avg_sq"] for optimizer in optimizers for state in optimizer.state.values()]
    assert all(bool(torch.isfinite(moment).all()) for moment in moments)


def test_a_gradient_beyond_the_scaled_range_stops_the_fit_naming_the_keys_to_change(digits):
    # d = 32 at a cut-off of 0.032: K(eps) = 1e46, gradients of 1e44 from the first step
    settings = GanSettings(loss="eie", cutoff=0.032, feature_scale=1e-3)
    with pytest.raises(NonFiniteLossError, match=r"params\.eie\.cutoff, .*params\.feature_dim.*params\.eie\.precision: float64"):
        _train_literal(_one_digits_class(digits), 32, settings, 3)


def test_float64_networks_hold_the_gradients_float32_cannot_square(digits):
    settings = GanSettings(loss="eie", cutoff=0.032, feature_scale=1e-3)
    optimizers = _train_literal(_one_digits_class(digits).double(), 32, settings, 3)
    assert all(bool(torch.isfinite(state["exp_avg_sq"]).all()) for optimizer in optimizers
               for state in optimizer.state.values())


def test_eieg_in_float64_fits_where_float32_stops_and_returns_float32_images(digits):
    from raysynth.data import make_split
    from raysynth.methods import METHODS, FitContext
    from raysynth.runner import check_synthetic

    cls = METHODS.get("eieg")
    params = {**cls.smoke_params, "feature_dim": 32, "eie": {"cutoff": 0.032, "feature_scale": 1e-3, "precision": "float64"}}
    split = make_split(digits, 5, seed=0)
    synthetic = cls(cls.Params.model_validate(params)).fit(split, FitContext(epochs=2, device=torch.device("cpu"), seed=0),
                                                            lambda step, **m: None)
    check_synthetic(synthetic, split, "eieg")
    assert synthetic.images.dtype == torch.float32
