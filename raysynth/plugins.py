"""Plugins: a user's own methods, datasets or classifiers, in modules outside the package.

A space names them under ``plugins:`` (module names, or ``.py`` paths relative to the space file).
They are imported on the driver before the space is validated, so their names resolve, and in every
Ray worker before a trial runs. A path plugin travels as its source text with the sweep (a cluster's
workers need not see the driver's files); a module plugin must be installed wherever trials run.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import types
from dataclasses import dataclass
from pathlib import Path

from raysynth.errors import SpecError


@dataclass(frozen=True)
class Plugin:
    """A plugin as shipped to workers: a module name, or a file's path and source."""

    entry: str
    source: str | None = None  # None: an importable module

    @property
    def module_name(self) -> str:
        if self.source is None:
            return self.entry
        digest = hashlib.sha1(self.entry.encode()).hexdigest()[:8]
        return f"raysynth_plugin_{Path(self.entry).stem}_{digest}"


def is_path(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry


def resolve(entries: list, space_folder: Path) -> list:
    """Path entries made absolute (relative to the space file's folder); other values left as they are."""
    return [str((space_folder / entry).resolve()) if isinstance(entry, str) and is_path(entry) else entry
            for entry in entries]


def read(entries: list[str]) -> tuple[Plugin, ...]:
    """The plugins of a space, with each file's source read once on the driver."""
    plugins = []
    for index, entry in enumerate(entries):
        if not is_path(entry):
            plugins.append(Plugin(entry))
            continue
        path = Path(entry)
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise SpecError(f"plugins[{index}]", f"{entry} {what}; give a .py file (relative to the space file) or a module name")
        try:
            plugins.append(Plugin(entry, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as error:
            raise SpecError(f"plugins[{index}]", f"{entry} cannot be read ({type(error).__name__})") from None
    return tuple(plugins)


def load(plugins: tuple[Plugin, ...]) -> None:
    """Imports each plugin once per process (a reused Ray worker keeps what it imported)."""
    for index, plugin in enumerate(plugins):
        name = plugin.module_name
        if name in sys.modules:
            continue
        try:
            if plugin.source is None:
                importlib.import_module(name)
            else:
                module = types.ModuleType(name)
                module.__file__ = plugin.entry
                sys.modules[name] = module
                exec(compile(plugin.source, plugin.entry, "exec"), module.__dict__)
        except Exception as error:  # a plugin's own bug is the user's input: one line, exit 2
            sys.modules.pop(name, None)
            message = " ".join(str(error).split())[:300]
            raise SpecError(f"plugins[{index}]", f"importing {plugin.entry} failed: {type(error).__name__}: {message}") from None
