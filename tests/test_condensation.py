"""Koopcon and its peer DM: the condensed set's shape, T's linearity, DM's objective."""

import torch

from raysynth.data import make_split
from raysynth.methods import METHODS, FitContext
from raysynth.methods.dm import distribution_matching_loss
from raysynth.nets.koopman import KoopmanOperator
from raysynth.nets.classifiers import build_classifier


def koopcon_fit(digits, latent_channels: int, steps: int):
    """A small Koopcon fit on 3 digits per class (a shallow autoencoder, one pretraining epoch)."""
    cls = METHODS.get("koopcon")
    params = cls.Params.model_validate({"ae_epochs": 1, "ae_images": 400, "batch_per_class": 8,
                                        "ae": {"depth": "shallow", "latent_channels": latent_channels}})
    return cls(params).fit(make_split(digits, 3, seed=0), FitContext(epochs=steps, device=torch.device("cpu"), seed=0),
                           lambda step, **m: None)


def test_koopcons_ceiling_is_the_random_subset_through_its_autoencoder(digits):
    """The ceiling row decodes the random_subset baseline's own images (so the two pair seed by seed)."""
    cls = METHODS.get("koopcon")
    params = cls.Params.model_validate({"ae_epochs": 1, "ae_images": 400, "ceiling": True,
                                        "ae": {"depth": "shallow", "latent_channels": 8}})
    split = make_split(digits, 3, seed=0)
    ceiling = cls(params).fit(split, FitContext(epochs=1, device=torch.device("cpu"), seed=0), lambda step, **m: None)
    baseline = METHODS.get("random_subset")
    subset = baseline(baseline.Params()).fit(split, FitContext(epochs=1, device=torch.device("cpu"), seed=0),
                                             lambda step, **m: None)
    error = (ceiling.images - subset.images).abs().mean()
    assert torch.equal(ceiling.labels, subset.labels) and 0 < float(error) < float(subset.images.abs().mean())


def test_koopcon_condenses_to_exactly_ipc_images_per_class(digits):
    synthetic = koopcon_fit(digits, latent_channels=8, steps=2)
    assert torch.bincount(synthetic.labels).tolist() == [3] * 10 and synthetic.images.shape[1:] == (1, 8, 8)


def test_koopman_operator_stays_near_the_identity_over_a_short_fit(digits):
    """T starts at I; at the shared learning rate Adam moved it by about its own norm in 100 steps."""
    synthetic = koopcon_fit(digits, latent_channels=32, steps=40)
    assert synthetic.info["koopman_t_deviation"] < 0.2


def test_cosine_pooling_at_a_low_temperature_picks_single_members():
    from raysynth.nets.koopman import AttentionPooling

    torch.manual_seed(0)
    pooling = AttentionPooling(num_classes=1, per_class=3, dimension=8, key_dim=8, scores="cosine")
    with torch.no_grad():
        pooling.log_inverse_temperature.fill_(12.0)  # e^12: a hard argmax
    latents = torch.randn(5, 2, 2, 2)
    pooled = pooling(latents, 0).flatten(1)
    distances = torch.cdist(pooled, latents.flatten(1)).min(dim=1).values
    assert bool((distances < 1e-3).all())


def test_koopman_operator_is_linear():
    torch.manual_seed(0)
    operator = KoopmanOperator(4 * 2 * 2)
    with torch.no_grad():
        operator.weight.add_(torch.randn_like(operator.weight))
    x, y = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    assert torch.allclose(operator(2.0 * x - 3.0 * y), 2.0 * operator(x) - 3.0 * operator(y), atol=1e-5)


def test_dm_loss_decreases_on_a_fixed_batch(digits):
    split = make_split(digits, 10, seed=0)
    images, labels = split.fewshot
    torch.manual_seed(0)
    net = build_classifier("convnet", channels=1, num_classes=10, image_size=8, width=32)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    real = [images[labels == c] for c in range(10)]
    synthetic = torch.randn(10, 1, 8, 8, requires_grad=True)
    optimizer = torch.optim.SGD([synthetic], lr=1.0, momentum=0.5)
    values = []
    for _ in range(20):
        loss = distribution_matching_loss(net.embed, real, [synthetic[c: c + 1] for c in range(10)], None, ())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        values.append(loss.item())
    assert values[-1] < 0.5 * values[0]
