"""Methods, one module each; importing this package registers them all."""

from raysynth.methods import classic_augmentation, expansive, learned_augmentation, random_subset, real  # noqa: F401  (registration)
from raysynth.methods.base import METHODS, Budget, Intent, Method, Params, SyntheticSet, register_method

__all__ = ["METHODS", "Budget", "Intent", "Method", "Params", "SyntheticSet", "register_method"]
