"""In which part of EIE's kernel each EIEG trial works (issue 20's EIEG search): is it the interaction
energy or, with every pair of D's features inside the cut-off's quadratic core, feature-mean matching?
Each EIEG trial of a sweep's store (finished or stopped; a failed one stops at its first step), and
EIEG's defaults and feature-mean matching (the GAN table's rows), is trained on one class
(Fashion-MNIST class 0, the 10 images of data seed 0, as `benchmarks/eieg_adam_range.py`) for the
trial's generator steps; at the first, middle and last step the fractions of feature pairs closer
than the cut-off are recorded: real-generated, generated-generated and real-real (the 10 real images
against 200 fixed-noise samples, D in training mode as it trains).
Inside the core K = a - b r^2, so where every pair lies there E = 2 b |mean D(x) - mean D(G(z))|^2
up to the finite-sample terms: the GAN matches D's feature means and no kernel shape is left.

    python benchmarks/eieg_kernel_regime.py --tracking-uri sqlite:///PATH/mlflow.db [--experiment search_eieg]
    # -> benchmarks/results/eieg_kernel_regime.json (about 1 min per trial on one core)
"""

from __future__ import annotations

import torch
from eieg_adam_range import class_gan, probe_trials  # a sibling script: python puts benchmarks/ on the path

from raysynth.nets.gan import eie_features, train_gan

SAMPLES = 200


def inside_fraction(distances: torch.Tensor, cutoff: float) -> float:
    """The fraction of ``distances`` below ``cutoff``."""
    return float((distances < cutoff).double().mean())


def kernel_regime(real: torch.Tensor, method, steps: int) -> dict:
    """Train ``method``'s GAN on ``real`` and record, at three steps, the pairs inside the cut-off."""
    generator, discriminator, train_arguments = class_gan(method, real)
    settings, dtype = train_arguments["settings"], method.network_dtype()
    real = real.to(dtype)
    fixed_noise = torch.randn(SAMPLES, method.params.noise_dim, generator=torch.Generator().manual_seed(1)).to(dtype)
    probed = sorted({1, max(steps // 2, 1), steps})
    trace = {}

    def on_step(step: int, g_loss: float, d_loss: float) -> None:
        if step not in probed:
            return
        with torch.no_grad():
            fake = eie_features(settings, discriminator(generator(fixed_noise))).flatten(1)
            data = eie_features(settings, discriminator(real)).flatten(1)
        across = torch.cdist(data, fake).flatten()
        trace[step] = {"real_generated": inside_fraction(across, settings.cutoff),
                       "generated_generated": inside_fraction(torch.pdist(fake), settings.cutoff),
                       "real_real": inside_fraction(torch.pdist(data), settings.cutoff),
                       "median_real_generated_distance_over_cutoff": float(across.median() / settings.cutoff)}

    train_gan(generator, discriminator, steps=steps, on_step=on_step, **train_arguments)
    return {"pairs_inside_cutoff": trace}


def main() -> None:
    probe_trials(__doc__, "eieg_kernel_regime.json", kernel_regime,
                 skip=lambda trial: trial["status"] == "FAILED",  # it stops at its first step (eieg_adam_range.json)
                 samples=SAMPLES)


if __name__ == "__main__":
    main()
