"""Methods, one module each; importing this package registers them all."""

from raysynth.methods import (classic_augmentation, cola, dcgan, dm, eieg, expansive, koopcon,  # noqa: F401
                              learned_augmentation, random_subset, real, scola)
from raysynth.methods.base import METHODS, Budget, Intent, Method, Params, SyntheticSet, register_method

__all__ = ["METHODS", "Budget", "Intent", "Method", "Params", "SyntheticSet", "register_method"]
