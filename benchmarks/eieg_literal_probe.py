"""Why literal EIEG does not learn the classes (issue 19): one digits class (10 images), DCGAN G and D
(feature dim 16), Table 3's settings, 300 generator steps; for each setting, the mean distance of 200
generated images to their nearest real image and their pixel spread at steps 1, 100, 300.

    python benchmarks/eieg_literal_probe.py      # -> benchmarks/results/eieg_literal_probe.json (~2 min)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from raysynth.data import load_dataset, make_split
from raysynth.nets.gan import DCGANDiscriminator, DCGANGenerator, GanSettings, train_gan

SETTINGS = {
    "literal (feature_scale 1)": GanSettings(loss="eie", feature_scale=1.0),
    "literal, lr G 1e-3": GanSettings(loss="eie", feature_scale=1.0, lr_generator=1e-3),
    "literal, lr D 1e-4": GanSettings(loss="eie", feature_scale=1.0, lr_discriminator=1e-4),
    "feature_scale 0.001 (feature-mean matching)": GanSettings(loss="eie", feature_scale=0.001),
}


def probe(settings: GanSettings, real: torch.Tensor) -> dict[int, dict[str, float]]:
    torch.manual_seed(0)
    generator, discriminator = DCGANGenerator(1, 8, 100, 32), DCGANDiscriminator(1, 8, 16, 32)
    stream = torch.Generator().manual_seed(0)
    fixed_noise = torch.randn(200, 100, generator=torch.Generator().manual_seed(1))
    trace = {}

    def on_step(step: int, g_loss: float, d_loss: float) -> None:
        if step in (1, 100, 300):
            with torch.no_grad():
                generator.eval()
                fake = generator(fixed_noise)
                generator.train()
            trace[step] = {"nearest_real_distance": float(torch.cdist(fake.flatten(1), real.flatten(1)).min(1).values.mean()),
                           "pixel_spread": float(fake.std(0).mean()), "g_loss": g_loss}

    train_gan(generator, discriminator, lambda n: real[torch.randint(len(real), (n,), generator=stream)],
              lambda n: torch.randn(n, 100, generator=stream), settings, 300, on_step=on_step)
    return trace


def main() -> None:
    digits = load_dataset("digits", data_root=None, cache_dir=Path.home() / ".cache" / "raysynth")
    images, labels = make_split(digits, 10, seed=0).fewshot
    real = digits.denormalize(images[labels == 3]) * 2 - 1  # G's tanh range
    own = torch.cdist(real.flatten(1), real.flatten(1)).topk(2, largest=False).values[:, 1].mean()
    results = {"class": 3, "real_nearest_neighbour_distance": float(own),
               "settings": {name: probe(settings, real) for name, settings in SETTINGS.items()}}
    out = Path(__file__).parent / "results" / "eieg_literal_probe.json"
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
