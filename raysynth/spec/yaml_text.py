"""Reading a space file's YAML: safe, YAML 1.2 scalars, duplicate keys and alias bombs refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from raysynth.errors import SpecError, shorten

MAX_SPACE_BYTES = 1 << 20
MAX_ALIASES = 20  # YAML aliases (*name) a space may use: a few for shared blocks, never a billion laughs


class SpaceLoader(yaml.SafeLoader):
    """YAML 1.2's reading of scalars (``no`` and ``010`` are the text and the number they look like, not
    False and 8) and a duplicate key refused instead of the last one silently winning."""


SpaceLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
SpaceLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                  list("tTfF"))
SpaceLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
SpaceLoader.add_constructor("tag:yaml.org,2002:int", lambda loader, node: int(loader.construct_scalar(node), 10))


def _no_duplicate_keys(loader: SpaceLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key `{key}` (a second block would "
                                                    "silently replace the first); merge them", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


SpaceLoader.add_constructor("tag:yaml.org,2002:map", lambda loader, node: _no_duplicate_keys(loader, node, deep=True))


MAX_FLOW_DEPTH = 100  # nested [ { a space never needs; deeper text is refused before the slow parser sees it


def _flow_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in ``text`` (brackets inside quotes count too: an upper bound)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    return deepest


def load_yaml_text(text: str, where: str) -> Any:
    """Parses ``text`` with :class:`SpaceLoader`; a syntax error, alias bomb or deep nesting is one SpecError."""
    if _flow_depth(text) > MAX_FLOW_DEPTH:  # PyYAML takes seconds per thousand levels before it gives up
        raise SpecError("", f"{where}: nested too deeply; a space is a few levels of keys")
    try:
        aliases = sum(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=SpaceLoader))
        if aliases > MAX_ALIASES:
            raise SpecError("", f"{where} uses {aliases} YAML aliases (*name); at most {MAX_ALIASES} are expanded")
        return yaml.load(text, Loader=SpaceLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        if "python/" in str(error):
            problem = "unsafe YAML tag refused; write plain values"
        raise SpecError("", f"{where}{line}: {problem}") from None
    except RecursionError:
        raise SpecError("", f"{where}: nested too deeply; a space is a few levels of keys") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Reads a space file (safe loader, YAML 1.2 scalars, duplicate keys and alias bombs refused)."""
    path = Path(path)
    try:
        if not path.exists():
            raise SpecError("", f"search-space file {path} does not exist")
        if path.is_dir():
            raise SpecError("", f"{path} is a folder; give a search-space YAML file")
        if not path.is_file():
            raise SpecError("", f"{path} is not a regular file (a device, pipe or socket); give a search-space YAML file")
        if path.stat().st_size > MAX_SPACE_BYTES:
            raise SpecError("", f"{path} is {path.stat().st_size} bytes; a space file is at most {MAX_SPACE_BYTES} bytes")
        raw = path.read_bytes()
    except OSError as error:
        raise SpecError("", f"{shorten(str(path))} cannot be read: {error.strerror or type(error).__name__}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError("", f"{path} is not UTF-8 text (byte {error.start}); a space file is YAML") from None
    data = load_yaml_text(text, str(path))
    if not isinstance(data, dict):
        raise SpecError("", f"{path} must hold a mapping of keys (experiment, method, ...), but holds {type(data).__name__}")
    return data
