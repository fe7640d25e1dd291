"""Methods, one module each; importing this package registers them all."""

from raysynth.methods import (classic_augmentation, dcgan, dm, eieg, expansive, koopcon, learned_augmentation,  # noqa: F401
                              random_subset, real)
from raysynth.methods.base import METHODS, Budget, Intent, Method, Params, SyntheticSet, register_method

__all__ = ["METHODS", "Budget", "Intent", "Method", "Params", "SyntheticSet", "register_method"]
