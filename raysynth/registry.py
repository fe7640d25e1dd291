"""One small registry type: names are resolved here and nowhere else."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path
from typing import Callable, Generic, Iterator, TypeVar

from raysynth.errors import UnknownNameError, did_you_mean

T = TypeVar("T")


class _Deferred:
    """A name whose object its module registers when imported (see :meth:`Registry.discover`)."""

    def __init__(self, module: str):
        self.module = module


class Registry(Generic[T]):
    """Maps names to objects; a duplicate name raises, an unknown name suggests the nearest."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T | _Deferred] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that stores ``obj`` under ``name``."""

        def decorate(obj: T) -> T:
            if name in self._entries and not isinstance(self._entries[name], _Deferred):
                raise ValueError(f"{self.kind} `{name}` is registered twice")
            self._entries[name] = obj
            return obj

        return decorate

    def discover(self, module: str, variable: str) -> "Registry[T]":
        """Knows the names ``module`` registers as ``<variable>.register("name")`` by reading its source,
        without importing it: names resolve at once (``raysynth validate`` loads no torch), and the
        module is imported when an entry is first used."""
        top, *rest = module.split(".")
        # the file is found from the top-level package: find_spec of a submodule would import its parents
        path = Path(importlib.util.find_spec(top).origin).parent.joinpath(*rest).with_suffix(".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "register"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == variable
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                self._entries.setdefault(node.args[0].value, _Deferred(module))
        return self

    def get(self, name: str) -> T:
        """The entry called ``name``; :class:`UnknownNameError` lists the known ones otherwise."""
        try:
            entry = self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None
        if isinstance(entry, _Deferred):
            importlib.import_module(entry.module)  # registers the real object under the name
            entry = self._entries[name]
        return entry

    def unknown_message(self, name: str) -> str:
        return f"unknown {self.kind} `{name}`: {did_you_mean(name, self.names())}known: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
