"""Parameter blocks shared by several methods, beside the networks they configure, and the names of
the networks' variants. Torch-free on purpose: importing a method's parameters (what `raysynth validate`
does) must not load torch; the networks in this package import their variant types from here."""

from __future__ import annotations

from typing import Iterator, Literal

from pydantic import ConfigDict, Field, ValidationInfo

from raysynth.params import Params
from raysynth.registry import Registry

# the classifiers of the evaluation protocol; each registers itself in nets/classifiers.py
CLASSIFIERS: Registry = Registry("classifier").discover("raysynth.nets.classifiers", "CLASSIFIERS")

# --- variants of the networks (nets/attention.py, autoencoder.py, losses.py, glo.py, gan.py)
Variant = Literal["none", "rowwise", "spatial", "spatial_skip", "mhsa", "mhsa_egm"]
RowwiseTokens = Literal["channel_patches", "patch_rows", "channels"]
VARIANTS: tuple[str, ...] = ("none", "rowwise", "spatial", "spatial_skip", "mhsa", "mhsa_egm")
MULTI_HEAD: tuple[str, ...] = ("mhsa", "mhsa_egm")
Depth = Literal["shallow", "medium", "deep"]
FilmMode = Literal["weight", "output"]
OtKind = Literal["exact", "sinkhorn", "sliced"]
LossKind = Literal["laplacian", "perceptual", "l1"]
GanLoss = Literal["eie", "nonsaturating"]
FeatureBound = Literal["none", "tanh"]


def padded_size(image_size: int) -> int:
    """28 px images are worked on at 32 px (zero-padded), as the condensation reference code does:
    powers of two halve cleanly. Every other size is kept."""
    return 32 if image_size == 28 else image_size


def downsamplings(image_size: int) -> int:
    """Stride-2 steps from the (padded) image to the latent map: 2 for 28/32 px, 1 for 8 px digits."""
    return 2 if image_size >= 16 else 1


def latent_map_size(image_size: int) -> int:
    """Side of the autoencoder's latent map for images of ``image_size`` px."""
    return padded_size(image_size) // 2 ** downsamplings(image_size)


# --- the Koopman autoencoder, latent attention, expander graphs and distribution losses
#     (expansive, koopcon)
class AutoencoderParams(Params):
    depth: Depth = Field("medium", description="shallow / medium / deep = 5 / 7 / 9 conv layers")
    latent_channels: int = Field(32, ge=2, le=512, description="channels C of the latent map (the feature dimension)")
    width: int = Field(64, ge=8, le=512, description="channels of the hidden convolutions")
    variational: bool = Field(False, description="a log-variance head and the KL term of L_re")
    kl_weight: float = Field(1e-3, ge=0, le=1e6, description="weight of the KL term (per pixel) when variational")
    film: FilmMode = Field("weight", description="fine-tuning shift: `weight` conv(x; gW+b) or `output` g conv(x; W)+b (Eq. 1's two sides)")
    latent_scale: Literal["fixed", "free"] = Field(
        "fixed", description="fixed: every batch's latent map is rescaled to the RMS the pretrained encoder gives, so "
        "the encoder cannot scale the latents up while the decoder scales them down (a direction no loss but W and Cov "
        "sees, and both shrink with it); free: as the paper writes it")


class AttentionParams(Params):
    variant: Variant = Field("mhsa_egm", description="none, rowwise, spatial, spatial_skip, mhsa, mhsa_egm")
    heads: int = Field(4, ge=1, le=64, description="heads L of the multi-head variants")
    patch: int = Field(2, ge=1, le=100, description="patch size P on the latent map (a divisor of its side)")
    self_bias: float = Field(0.0, ge=0, le=100, description="a learned bias on each token's attention to itself, started "
                             "at this value (0: none, the paper's attention). Without it `spatial` starts uniform over "
                             "positions and tiles one patch over the map; 5 starts it near each token's own value")
    rowwise_tokens: RowwiseTokens = Field(
        "channel_patches", description="the sequences of `rowwise`: channel_patches (E.1 as read: per channel, its "
        "patches of P^2 values), patch_rows (each row of patches, tokens over all channels) or channels (per patch "
        "position, its C channels as P^2-value tokens)")


class ExpanderParams(Params):
    degree: int = Field(2, ge=1, le=100, description="edges per head-vertex at most (capped at heads - 1)")
    keep: float = Field(0.5, gt=0, le=1, description="fraction of each head map's activations kept by attention cropping")
    spectral_weight: float = Field(0.1, ge=0, le=1e6, description="weight of the spectrum-matching term against the similarity graph")


class LossParams(Params):
    alpha_re: float = Field(1.0, ge=0, le=1e6, description="a0: reconstruction (+ KL)")
    alpha_ce: float = Field(0.1, ge=0, le=1e6, description="a1: cross-entropy of the classifier on X + X'")
    alpha_w: float = Field(1.0, ge=0, le=1e6, description="a2: per-class Wasserstein distance between Y and Y'")
    alpha_cov: float = Field(0.01, ge=0, le=1e6, description="a3: ||Cov(Y') - I||_F^2")
    ot: OtKind = Field("exact", description="OT solver: exact (ot.emd2), sinkhorn, sliced")
    covariance: Literal["pooled", "per_class"] = Field(
        "pooled", description="L_cov over all synthetic latents at once (Eq. 8 as written; with fewer samples than "
        "latent dimensions it has a rank floor) or per class with that floor removed (computed on the sample Gram "
        "matrix, zero when a class's standardized samples are mutually orthogonal)")
    detach_real: bool = Field(True, description="W(Y, Y') with the real latents Y detached: the synthetic latents move "
                              "toward the real ones, the real ones are not pulled toward them (with latent_scale fixed)")


def check_patch(attention: AttentionParams, data) -> Iterator[tuple[str, str]]:
    """The attention's patch must divide the latent map, whose side depends on the dataset's image size."""
    side = latent_map_size(data.image_size)
    if attention.variant != "none" and side % attention.patch:
        divisors = [d for d in range(1, side + 1) if side % d == 0]
        yield ("attention.patch", f"patch {attention.patch} does not divide the {side} x {side} latent map of "
               f"`{data.name}` ({data.image_size} px images); use one of {divisors}")


def check_heads(attention: AttentionParams, info: ValidationInfo) -> AttentionParams:
    """Field validator of `attention` beside an `ae` field: the heads must divide the attention width."""
    autoencoder = info.data.get("ae") or AutoencoderParams()
    if attention.variant in MULTI_HEAD:
        width = autoencoder.latent_channels * attention.patch ** 2
        if width % attention.heads:
            raise ValueError(f"heads={attention.heads} must divide ae.latent_channels x patch^2 = {width}")
        if attention.variant == "mhsa_egm" and attention.heads < 2:
            raise ValueError("variant mhsa_egm needs heads >= 2 (the expander graph lives on the heads)")
    return attention



# --- GLO generators and codes (scola, cola)

class LatentParams(Params):
    dim: int = Field(64, ge=2, le=4096, description="d, the content part of the code (64 in the paper)")
    sigma: float = Field(1.0, gt=0, le=1e6, description="std of the content codes' initialization (before normalizing)")


class GloLossParams(Params):
    kind: LossKind = Field("laplacian", description="laplacian (GLO's Lap1), perceptual (VGG-16), or l1")
    level_weights: Literal["quarter", "equal"] = Field(
        "quarter", description="Laplacian level i weighs 4^-i (Eq. 3.5, GLO's Lap1: the coarse level, which carries a "
        "background offset, weighs 1/16 at 3 levels) or every level 1")
    vgg_weights: str | None = Field(None, description="local VGG-16 ImageNet weights for kind=perceptual (offline)")


class SamplingParams(Params):
    cov: Literal["full", "diag"] = Field("full", description="covariance of each class's content Gaussian")
    scale: float = Field(1.0, gt=0, le=100, description="multiplies the fitted covariance before sampling (1: as fitted; "
                         "smaller keeps samples nearer the class's codes, which at 1 lie about 54 degrees from every "
                         "training code and decode to blends)")


class GloParams(Params):
    generator: Literal["infogan", "dcgan"] = Field("infogan", description="generator architecture (Table 4.2)")
    latent: LatentParams = LatentParams()
    loss: GloLossParams = GloLossParams()
    sampling: SamplingParams = SamplingParams()
    lr_generator: float = Field(1e-3, gt=0, le=10, description="Adam lr of G (halved every lr_halving_steps)")
    lr_codes: float = Field(1e-2, gt=0, le=10, description="Adam lr of the content codes (halved every lr_halving_steps)")
    learn_class_codes: bool = Field(False, description="also learn the class part t of each code (renormalized after "
                                    "each epoch, as Alg. 1 updates it); false: t stays the fixed one-hot / cluster centre")
    lr_halving_steps: int = Field(500, ge=1, le=10_000_000, description="optimizer steps between halvings of both "
                                  "learning rates. GLO halves every 50 epochs of a large set; counted in epochs, a "
                                  "100-image set (2 steps per epoch) would anneal its fit away after about 300 steps")
    batch_size: int = Field(64, ge=2, le=65536, description="images per GLO step")



# --- image GANs (eieg, dcgan)

class EieParams(Params):
    model_config = ConfigDict(populate_by_name=True)

    cutoff: float = Field(0.1, gt=0, le=1e6, description="eps of the EIE kernel (Table 3: 0.1)")
    stab_cutoff: float = Field(0.8, gt=0, le=1e6, description="cut-off of the stabilizing term (Table 3: 0.8)")
    stabilizer: float = Field(1.0, ge=0, alias="lambda", le=1e6, description="lambda, weight of the stabilizing term (Table 3: 1)")
    self_interaction: bool = Field(True, description="the generated samples' self-interaction (off: Fig. 4's collapse)")
    feature_scale: float = Field(
        1.0, gt=0, le=1e6, description="multiplies D's outputs before the kernels (1: the literal reading; at 0.001 every "
        "pair sits in the kernels' quadratic cores and EIE reduces to matching D's feature means)")
    feature_bound: FeatureBound = Field(
        "none", description="tanh: D's outputs in [-1, 1]^d before the scale (a raysynth option, not the paper's); "
        "none: unbounded, as the paper")
    precision: Literal["float32", "float64"] = Field(
        "float32", description="G's and D's precision (and Adam's): float64 holds the paper's units where float32 "
        "cannot square the gradients (d = 32 at a cut-off of 0.1 or less; a float32 fit stops there, saying so), at "
        "about 3.6x the time on CPU")


class GanParams(Params):
    conditional: Literal["per_class", "none"] = Field("per_class", description="one generator per class, or one for all")
    samples_per_class: int = Field(100, ge=1, le=100_000, description="synthetic images per class")
    noise_dim: int = Field(100, ge=1, le=4096, description="dimension of the Gaussian noise")
    width: int = Field(64, ge=4, le=4096, description="base width of G and D (DCGAN: 64)")
    batch_size: int = Field(64, ge=2, le=65536, description="batch size (Table 3: 64)")
    lr_generator: float = Field(1e-4, gt=0, le=10, description="Adam lr of G (Table 3: 1e-4)")
    lr_discriminator: float = Field(1e-5, gt=0, le=10, description="Adam lr of D (Table 3: 1e-5)")
    d_steps: int = Field(3, ge=1, le=100, description="D updates per G update (Table 3: 3)")
