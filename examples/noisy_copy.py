"""A user's own method, in its own file: the few-shot set copied with Gaussian pixel noise.

It registers itself by name when imported; a space lists this file under `plugins:` and raysynth
imports it on the driver (before validation) and in every Ray worker. See examples/noisy_copy.yaml.
"""

from __future__ import annotations

from pydantic import Field

from raysynth.methods import Intent, Method, Params, SyntheticSet, register_method


class NoisyCopyParams(Params):
    copies: int = Field(4, ge=1, le=100, description="noisy copies of each few-shot image")
    noise_std: float = Field(0.3, ge=0, le=5, description="std of the Gaussian pixel noise, in normalized units")


@register_method("noisy_copy")
class NoisyCopy(Method):
    Params = NoisyCopyParams
    intent = Intent.EXPANSION  # accuracy trains on the few-shot set plus these copies

    def fit(self, split, context, report) -> SyntheticSet:
        import torch  # imported where it runs, so `raysynth validate` on a space using this plugin stays instant

        images, labels = split.fewshot
        generator = context.torch_rng("noise")  # a named stream of the fit's seed
        copies = images.repeat(self.params.copies, 1, 1, 1)
        noise = torch.randn(copies.shape, generator=generator) * self.params.noise_std
        report(1, noise_std=self.params.noise_std)
        # images are normalized; in_range clamps them to what a real image can be (the run checks it)
        return SyntheticSet(split.dataset.in_range(copies + noise), labels.repeat(self.params.copies))
