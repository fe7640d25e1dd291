"""Changing a space's values: ``--set KEY=VALUE`` strings, dotted keys applied to plain data, and back.

Every way of changing a value (``--set``, an ablation step's ``set:``, a value Optuna sampled) is a
dotted key applied to plain data here, and the result is validated again by the schema.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Mapping

from pydantic import BaseModel

from raysynth.errors import SpecError, shorten
from raysynth.spec.schema import SweepSpec, annotation_args, section_model
from raysynth.spec.yaml_text import load_yaml_text


def parse_set(assignments: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> {dotted key: value}; values are read as YAML scalars/lists (``3``, ``1e-3``,
    ``[0, 1]``), except for keys whose field is text, which take the value as written (``experiment=2024``)."""
    overrides = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(shorten(item), "--set takes KEY=VALUE, e.g. --set evaluation.epochs=2")
        if _is_text_field(key):
            overrides[key] = raw
            continue
        try:
            value = load_yaml_text(raw, f"--set {key}") if raw.strip() else ""
        except SpecError:
            value = raw
        overrides[key] = _number_or_text(value)
    return overrides


def _is_text_field(dotted: str) -> bool:
    """Whether the spec field at ``dotted`` holds text (str or str | None)."""
    model: Any = SweepSpec
    parts = dotted.split(".")
    for index, part in enumerate(parts):
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return False
        if index == len(parts) - 1:
            return set(annotation_args(field.annotation)) <= {str, type(None)} and str in annotation_args(field.annotation)
        model = section_model(field.annotation)
        if model is None:
            return False
    return False


def _number_or_text(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as text; a command line means the number."""
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
        return float(value)
    return value


# keys under these sections are dotted strings themselves: `search.loss.alpha_re` is one entry
SINGLE_KEY_SECTIONS = ("search",)


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with each dotted key set. ``search.<param.path>`` names one search entry."""
    result = copy.deepcopy(dict(data))
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        if parts[0] in SINGLE_KEY_SECTIONS and len(parts) > 1:
            parts = [parts[0], ".".join(parts[1:])]
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise SpecError(dotted, f"`{'.'.join(parts[: depth + 1])}` is a value, not a section; set it directly")
            node = child
        node[parts[-1]] = value
    return result


MISSING = object()


def lookup(data: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` in nested ``data``, or :data:`MISSING`."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> {dotted key: leaf value}."""
    flat = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat
