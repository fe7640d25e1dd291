"""Baseline `dcgan`: the same generator and discriminator trunk as `eieg`, with the standard
non-saturating GAN loss (the discriminator's head is one logit), on the same context of G steps."""

from __future__ import annotations

from pydantic import Field

from raysynth.methods.base import register_method
from raysynth.methods.eieg import ImageGan
from raysynth.nets.settings import GanParams


class DcganParams(GanParams):
    lr_generator: float = Field(2e-4, gt=0, le=10, description="Adam lr of G (DCGAN: 2e-4)")
    lr_discriminator: float = Field(2e-4, gt=0, le=10, description="Adam lr of D (DCGAN: 2e-4)")
    d_steps: int = Field(1, ge=1, le=100, description="D updates per G update (DCGAN: 1)")


@register_method("dcgan")
class DCGAN(ImageGan):
    Params = DcganParams
    loss = "nonsaturating"
