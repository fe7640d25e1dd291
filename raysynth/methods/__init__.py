"""Methods, one module each: every module in this package registers its method when imported, so
adding a method is adding a file (no list to edit). Methods from outside the package come as plugins."""

import importlib
import pkgutil

from raysynth.methods.base import METHODS, FitContext, Intent, Method, Params, SyntheticSet, register_method

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "FitContext", "Intent", "Method", "Params", "SyntheticSet", "register_method"]
