"""Expansive Synthesis: its building blocks behave as the paper reads, and an expansion keeps the contract."""

import numpy as np
import ot
import pytest
import torch

from raysynth.data import make_split
from raysynth.errors import SpecError
from raysynth.methods import METHODS, FitContext
from raysynth.nets.attention import MULTI_HEAD, VARIANTS, LatentAttention
from raysynth.nets.autoencoder import FiLMConv, KoopmanAutoencoder, reconstruction_loss
from raysynth.nets.expander import ClassGraphs, Expander, degree_mask, normalized, similarity_graph, spectral_gap
from raysynth.nets.losses import covariance_excess, covariance_loss, per_class_wasserstein
from raysynth.spec import build_spec


@pytest.mark.parametrize("film", ["weight", "output"])
def test_finetuning_changes_only_gamma_and_beta(film):
    torch.manual_seed(0)
    model = KoopmanAutoencoder(1, 28, latent_channels=8, depth="shallow", width=16, film=film)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.freeze_for_finetuning()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    images = torch.randn(8, 1, 28, 28)
    for _ in range(3):
        loss, _ = reconstruction_loss(model, images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    film_names = {name for name, m in model.named_modules() if isinstance(m, FiLMConv) for name in (f"{name}.gamma", f"{name}.beta")}
    assert changed == film_names


@pytest.mark.parametrize("depth,layers", [("shallow", 5), ("medium", 7), ("deep", 9)])
def test_autoencoder_depth_counts_conv_layers(depth, layers):
    model = KoopmanAutoencoder(1, 28, latent_channels=8, depth=depth, width=16)
    assert model.conv_layers() == layers and model.decode(model.encode(torch.randn(2, 1, 28, 28))).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_attention_variant_keeps_the_latent_shape(variant):
    latents = torch.randn(3, 16, 8, 8)
    attention = LatentAttention(variant, channels=16, size=8, patch=2, heads=4)
    assert attention(latents).shape == latents.shape
    if variant in MULTI_HEAD:
        heads = attention.head_outputs(latents)
        assert heads.shape[1] == 4 and attention.from_heads(heads, latents).shape == latents.shape


@pytest.mark.parametrize("mode", ["channel_patches", "patch_rows", "channels"])
def test_each_rowwise_reading_attends_along_its_own_sequences_and_inverts_them(mode):
    latents = torch.randn(3, 16, 8, 8)
    attention = LatentAttention("rowwise", channels=16, size=8, patch=2, rowwise_tokens=mode)
    tokens = attention.tokens(latents)
    # the second token of the first sequence: the next patch of channel 0, of row 0, or the next channel
    second = {"channel_patches": latents[0, 0, 0:2, 2:4], "patch_rows": latents[0, :, 0:2, 2:4],
              "channels": latents[0, 1, 0:2, 0:2]}[mode].flatten()
    assert torch.equal(tokens[0, 1], second) and torch.equal(attention.untokens(tokens, latents), latents) \
        and attention(latents).shape == latents.shape


def test_learned_class_graph_has_a_larger_spectral_gap_than_random_graphs_with_as_many_edges():
    torch.manual_seed(0)
    vertices, degree = 8, 3
    graphs = ClassGraphs(num_classes=1, vertices=vertices, degree=degree, spectral_weight=0.01)
    similarity = similarity_graph(torch.randn(5, vertices, 4, 6))
    optimizer = torch.optim.Adam(graphs.parameters(), lr=0.05)
    for _ in range(300):
        objective = graphs.objective(0, similarity)
        graphs.remember(0, objective.item())
        optimizer.zero_grad()
        (-objective).backward()
        optimizer.step()
    learned = graphs.codeword(0)
    edges = int((learned > 0).sum()) // 2
    assert (degree_mask(learned, degree) * learned).count_nonzero() == learned.count_nonzero()  # degree bound holds
    generator = torch.Generator().manual_seed(1)
    pairs = torch.triu_indices(vertices, vertices, 1)
    random_gaps = []
    for _ in range(200):
        chosen = pairs[:, torch.randperm(pairs.shape[1], generator=generator)[:edges]]
        adjacency = torch.zeros(vertices, vertices)
        adjacency[chosen[0], chosen[1]] = torch.rand(edges, generator=generator) + 0.1
        random_gaps.append(float(spectral_gap(normalized(adjacency + adjacency.T))))
    assert float(spectral_gap(learned)) > np.percentile(random_gaps, 95)


def test_per_class_wasserstein_matches_ot_emd2_computed_directly():
    rng = np.random.default_rng(3)
    y, y_new = rng.normal(size=(6, 5)), rng.normal(loc=0.5, size=(9, 5))
    labels, new_labels = np.array([0, 0, 0, 1, 1, 1]), np.array([0] * 4 + [1] * 5)
    direct = np.mean([ot.emd2(np.full((labels == c).sum(), 1 / (labels == c).sum()),
                              np.full((new_labels == c).sum(), 1 / (new_labels == c).sum()),
                              ot.dist(y[labels == c], y_new[new_labels == c])) for c in (0, 1)])
    value = per_class_wasserstein(torch.tensor(y), torch.tensor(labels), torch.tensor(y_new), torch.tensor(new_labels))
    assert float(value) == pytest.approx(direct, rel=1e-9)


@pytest.mark.parametrize("variant", ["spatial_skip", "mhsa_egm"])
def test_expansion_returns_ratio_times_n_class_balanced_new_images(digits, variant):
    split = make_split(digits, 4, seed=0)
    cls = METHODS.get("expansive")
    params = cls.Params.model_validate({"expansion_ratio": 3, "pretrain_epochs": 1, "pretrain_images": 300,
                                        "attention": {"variant": variant, "heads": 4, "patch": 2}})
    synthetic = cls(params).fit(split, FitContext(epochs=3, device=torch.device("cpu"), seed=0), lambda step, **m: None)
    real = split.fewshot[0]
    nearest = (synthetic.images.unsqueeze(1) - real.unsqueeze(0)).flatten(2).abs().amax(-1).min(dim=1).values
    assert torch.bincount(synthetic.labels).tolist() == [12] * 10 and bool((nearest > 1e-4).all())
    assert synthetic.info["fine_tuning_updates"] == 3 * 10  # Algorithm 1: one update per class per epoch


@pytest.mark.parametrize("variant", ["spatial", "mhsa_egm"])
def test_the_literal_reconstruction_loss_reaches_the_attention(variant):
    """Algorithm 1 decodes X through MHSSA and EGM for L_re: every attention weight gets its gradient."""
    torch.manual_seed(0)
    params = METHODS.get("expansive").Params.model_validate(
        {"ae": {"latent_channels": 8, "width": 16}, "attention": {"variant": variant, "heads": 2, "patch": 2}})
    model = KoopmanAutoencoder(1, 28, latent_channels=8, depth="shallow", width=16, variational=True)
    expander = Expander(params, num_classes=2, latent_size=model.latent_size)
    labels = torch.tensor([0, 0, 1, 1])
    loss, _ = reconstruction_loss(model, torch.randn(4, 1, 28, 28), through=lambda codes: expander.mapped(codes, labels))
    loss.backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in expander.attention.parameters())


def test_the_per_class_covariance_is_the_pooled_one_less_its_rank_floor():
    """With n samples in d > n dimensions Cov has rank n - 1: ||Cov - I||^2 >= d^2 / (n - 1) - d."""
    latents, count, dims = torch.randn(6, 5, 2, 2, dtype=torch.float64), 6, 20
    exact = {"eps": 0.0}  # the identity holds for exactly standardized samples
    assert float(covariance_excess(latents, **exact)) == pytest.approx(
        float(covariance_loss(latents, **exact)) - (dims ** 2 / (count - 1) - dims), rel=1e-9)


def test_classic_augmentation_alone_has_as_many_images_as_the_expansion_and_no_original(digits):
    split = make_split(digits, 3, seed=0)
    references = METHODS.get("expansive")(METHODS.get("expansive").Params(expansion_ratio=4)).references(split, seed=0)
    alone, _ = references["classic_alone"]
    with_originals, _ = references["classic"]
    real = split.fewshot[0]
    nearest = (alone.unsqueeze(1) - real.unsqueeze(0)).flatten(2).abs().amax(-1).min(dim=1).values
    assert len(alone) == len(with_originals) == 4 * len(real) and bool((nearest > 1e-4).all())


@pytest.mark.parametrize("scale", ["fixed", "free"])
def test_the_latents_keep_their_pretraining_scale_unless_it_is_left_free(digits, scale):
    """FiLM can scale the encoder's output up and the decoder's input down with the reconstruction
    unchanged; W and Cov then shrink every latent. Fixed, the latent map keeps the pretrained RMS."""
    split = make_split(digits, 5, seed=0)
    cls = METHODS.get("expansive")
    params = cls.Params.model_validate({"expansion_ratio": 2, "pretrain_epochs": 2, "pretrain_images": 400,
                                        "attention": {"variant": "spatial_skip", "patch": 1},
                                        "ae": {"latent_scale": scale, "variational": False}, "reconstruction": "autoencoder",
                                        "updates_per_epoch": "one", "loss": {"alpha_w": 10.0, "detach_real": False}})
    change = cls(params).fit(split, FitContext(epochs=150, device=torch.device("cpu"), seed=0),
                             lambda step, **m: None).info["latent_rms_change"]
    assert (abs(change - 1) < 1e-4) if scale == "fixed" else change < 0.8


def test_a_self_bias_keeps_spatial_attention_from_tiling_one_patch_over_the_map():
    """Without positional signal `spatial` starts uniform over positions: its output is nearly the same at
    every position. The learned self-bias starts each token attending mostly to itself."""
    latents = torch.randn(4, 8, 4, 4)

    def spatial_spread(self_bias: float) -> float:
        torch.manual_seed(0)
        attended = LatentAttention("spatial", 8, 4, patch=1, self_bias=self_bias)(latents)
        return float(attended.detach().flatten(2).std(dim=2).mean())  # variation across positions

    assert spatial_spread(5.0) > 3 * spatial_spread(0.0)


def test_heads_that_do_not_divide_the_attention_width_are_a_spec_error():
    data = {"experiment": "x", "method": "expansive", "dataset": {"name": "digits"},
            "params": {"ae": {"latent_channels": 6}, "attention": {"variant": "mhsa", "heads": 4, "patch": 1}}}
    with pytest.raises(SpecError, match="params.attention"):
        build_spec(data)


def test_pretraining_on_another_dataset_resizes_it_to_the_target(digits, fashion_mnist):
    split = make_split(digits, 2, seed=0)
    cls = METHODS.get("expansive")
    params = cls.Params.model_validate({"expansion_ratio": 2, "pretrain": "fashion-mnist", "pretrain_epochs": 1,
                                        "pretrain_images": 200, "attention": {"variant": "mhsa", "patch": 1}})
    loaded = []
    context = FitContext(epochs=1, device=torch.device("cpu"), seed=0,
                    load_dataset=lambda name: loaded.append(name) or fashion_mnist)
    synthetic = cls(params).fit(split, context, lambda step, **m: None)
    assert loaded == ["fashion-mnist"] and synthetic.images.shape == (40, 1, 8, 8)
