"""One small registry type: names are resolved here and nowhere else."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from raysynth.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; a duplicate name raises, an unknown name suggests the nearest."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that stores ``obj`` under ``name``."""

        def decorate(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} `{name}` is registered twice")
            self._entries[name] = obj
            return obj

        return decorate

    def get(self, name: str) -> T:
        """The entry called ``name``; :class:`UnknownNameError` lists the known ones otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        nearest = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f"did you mean `{nearest[0]}`? " if nearest else ""
        return f"unknown {self.kind} `{name}`: {hint}known: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
