import numpy as np
import pytest
import torch

from raysynth.data import make_split
from raysynth.evaluation import Evaluator
from raysynth.spec.schema import EvaluationSpec
from raysynth.evaluation.augment import dsa_augment
from raysynth.evaluation.fid import frechet_distance, gaussian_statistics
from raysynth.methods import Intent, SyntheticSet

CPU = torch.device("cpu")


def test_protocol_learns_digits_from_ten_images_per_class(digits, cache_dir):
    split = make_split(digits, 10, seed=0)
    settings = EvaluationSpec(width=32, epochs=150, num_eval=1)
    scores = Evaluator(settings, split, device=CPU, cache_dir=cache_dir).scores("real", *split.fewshot)
    assert np.mean(scores.test) > 60.0  # chance is 10 %; 150 SGD steps reach ~77 %


def test_protocol_is_reproducible_from_its_seed(digits, cache_dir):
    split = make_split(digits, 5, seed=0)
    settings = EvaluationSpec(width=8, epochs=3, num_eval=2)
    first = Evaluator(settings, split, device=CPU, cache_dir=cache_dir).scores("a", *split.fewshot)
    second = Evaluator(settings, split, device=CPU, cache_dir=cache_dir).scores("b", *split.fewshot)
    assert first == second


def test_condensation_baseline_is_a_random_subset_of_the_same_size(digits, cache_dir):
    split = make_split(digits, 3, seed=0)
    settings = EvaluationSpec(width=8, epochs=1, num_eval=1)
    images, labels = split.random_subset(2)
    metrics = Evaluator(settings, split, device=CPU, cache_dir=cache_dir).evaluate(SyntheticSet(images, labels), Intent.CONDENSATION)
    assert metrics["accuracy"] == metrics["baseline_accuracy"]  # the same 2-per-class subset, the same seeds


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    var1, var2 = rng.uniform(0.5, 2, size=4), rng.uniform(0.5, 2, size=4)
    direct = float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2))
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(direct, rel=1e-6)


def test_frechet_distance_of_a_sample_with_itself_is_zero():
    features = np.random.default_rng(1).normal(size=(200, 5))
    mu, sigma = gaussian_statistics(features)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)


def test_dsa_is_siamese():
    x = torch.randn(6, 1, 16, 16)
    a = dsa_augment(x, torch.Generator().manual_seed(5))
    b = dsa_augment(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("op", ["color", "crop", "cutout", "flip", "scale", "rotate"])
def test_distribution_matching_gives_a_real_and_a_synthetic_batch_one_shared_transform(digits, op):
    """DM's real batch (many images) and synthetic batch (few) see the identical transformation, as the
    reference code's batch mode: the same image comes out the same wherever it sits in either batch."""
    from raysynth.methods.dm import distribution_matching_loss

    image = digits.normalize(digits.train_images[:1]).float()
    seen = []
    distribution_matching_loss(lambda batch: seen.append(batch) or batch.flatten(1), [image.repeat(9, 1, 1, 1)],
                               [image.repeat(2, 1, 1, 1)], torch.Generator().manual_seed(3), (op,))
    real, synthetic = seen
    assert all(torch.equal(out, real[0]) for out in [*real, *synthetic]) and not torch.equal(real[0], image[0])


def test_dsa_is_differentiable():
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    generator = torch.Generator().manual_seed(0)
    for _ in range(6):
        dsa_augment(x, generator, ("color", "crop", "scale", "rotate")).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_inception_fid_without_its_extra_or_weights_says_how_to_get_them(digits, cache_dir):
    from raysynth.errors import RaysynthError
    from raysynth.evaluation.fid import FID_BACKENDS, FidContext

    context = FidContext(digits, CPU, cache_dir, inception_weights=str(cache_dir / "missing-weights.pth"))
    with pytest.raises(RaysynthError, match=r"uv sync --extra inception|inception_weights"):
        FID_BACKENDS.get("inception")(context)


def test_every_accuracy_is_scored_on_validation_too_and_probes_use_validation_images(digits, cache_dir):
    split = make_split(digits, 3, seed=0, validation_per_class=20)
    settings = EvaluationSpec(width=8, epochs=2, num_eval=1, probe_every=1)
    reports = []
    metrics = Evaluator(settings, split, device=CPU, cache_dir=cache_dir, probe=True, on_metrics=reports.append).evaluate(
        SyntheticSet(*split.fewshot), Intent.EXPANSION, repeated_control=True)
    expected = {"val_accuracy", "val_cas", "val_baseline_accuracy", "val_gain", "val_fid", "repeated_accuracy",
                "val_repeated_accuracy", "gain_vs_repeated", "accuracy", "fid"}
    probes = [set(r) for r in reports if "probe/val_accuracy" in r]
    assert expected <= set(metrics) and probes == [{"probe/val_accuracy", "probe/epoch", "eval/epoch", "eval/classifier", "eval/set"}] * 2


def test_every_classifier_an_evaluation_trains_reports_where_it_is(digits, cache_dir):
    """Without a probe too: the heartbeat's position while classifiers train, and which metric they are for."""
    split = make_split(digits, 3, seed=0)
    settings = EvaluationSpec(width=8, epochs=10, num_eval=2)
    reports = []
    Evaluator(settings, split, device=CPU, cache_dir=cache_dir, on_metrics=reports.append).scores("cas", *split.fewshot)
    assert [(r["eval/set"], r["eval/classifier"], r["eval/epoch"]) for r in reports] == [
        ("cas", c, e) for c in (1, 2) for e in (2, 4, 6, 8, 10)]


def test_the_repeated_control_is_the_fewshot_set_tiled_to_the_training_size(digits):
    from raysynth.evaluation.evaluate import repeated_fewshot

    split = make_split(digits, 4, seed=1)
    images, labels = repeated_fewshot(split, 4 * 10 * 3)
    assert torch.equal(images, split.fewshot[0].repeat(3, 1, 1, 1)) and torch.equal(labels, split.fewshot[1].repeat(3))


def test_a_methods_info_cannot_overwrite_a_contract_metric(digits, cache_dir):
    split = make_split(digits, 2, seed=0)
    settings = EvaluationSpec(width=8, epochs=1, num_eval=1)
    metrics = Evaluator(settings, split, device=CPU, cache_dir=cache_dir).evaluate(
        SyntheticSet(*split.fewshot, info={"accuracy": 123.0}), Intent.GENERATION)
    assert metrics["accuracy"] != 123.0 and metrics["info/accuracy"] == 123.0


def test_an_expansion_trains_on_its_real_copies_beside_the_synthetic_images(digits, cache_dir):
    """A large synthetic pool is balanced by repeating the few real images (sCOLA's `mix: pool`)."""
    split = make_split(digits, 2, seed=0)
    settings = EvaluationSpec(width=8, epochs=1, num_eval=1)
    synthetic = SyntheticSet(*split.fewshot, real_copies=3)  # 20 "synthetic" images
    metrics = Evaluator(settings, split, device=CPU, cache_dir=cache_dir).evaluate(synthetic, Intent.EXPANSION)
    assert metrics["training_images"] == 3 * 20 + 20
