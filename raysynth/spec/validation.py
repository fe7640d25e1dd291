"""Validation beyond a field's type: names in their registries, the method's typed params, the rules
that need the dataset's metadata (split sizes, parameter constraints), selection, search and ladder.

Errors name the dotted key the user wrote, the rule and the value, on one line (:class:`SpecError`).
"""

from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel, ValidationError

from raysynth.errors import SpecError, did_you_mean, shorten
from raysynth.methods import METHODS
from raysynth.metrics import METRICS, selection_metrics, validation_counterpart
from raysynth.params import Params
from raysynth.spec.overrides import MISSING, apply_overrides, flatten, lookup
from raysynth.spec.schema import SweepSpec, section_model


def _fields_at(model: type[BaseModel], location: tuple) -> list[str]:
    """Field names of the (sub)model at ``location``, for suggestions (list indices are stepped over)."""
    for part in location:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        model = section_model(field.annotation) if field is not None else None
        if model is None:
            return []
    return list(model.model_fields)


def _is_union_tag(part) -> bool:
    """pydantic's names of union members and validators (``literal['max','min']``, ``function-after[...]``)."""
    return isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool", "list", "dict", "tuple"))


def _spec_error(error: ValidationError, model: type[BaseModel], prefix: str = "") -> SpecError:
    first = error.errors()[0]
    location = tuple(p for p in first["loc"] if not _is_union_tag(p))
    key = ".".join(str(p) for p in ((prefix,) if prefix else ()) + location)
    if first["type"] == "extra_forbidden":
        known = _fields_at(model, location[:-1])
        hint = did_you_mean(".".join(key.split(".")[:-1] + [str(location[-1])]),
                            [".".join(key.split(".")[:-1] + [name]) for name in known])
        return SpecError(key, f"unknown key; {hint}valid keys here: {', '.join(known) or '(none: a value goes here)'}")
    if first["type"] == "missing":
        return SpecError(key, "is required; add it to the file or pass --set " f"{key}=...")
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "string_pattern_mismatch" and location == ("experiment",):
        message = "an experiment name is a name, not a path: letters, digits, _ . - (no / or ..)"
    value = first.get("input")
    shown = "" if isinstance(value, dict) or first["type"] == "value_error" else f", but got {shorten(repr(value))}"
    return SpecError(key, f"{message}{shown}")


def validate_params(method: str, params: Any, key_prefix: str = "params") -> Params:
    """``params`` as the method's own ``Params`` model; a problem is a SpecError naming ``params.<key>``."""
    cls = METHODS.get(method).Params
    try:
        return cls.model_validate(params)
    except ValidationError as error:
        raise _spec_error(error, cls, key_prefix) from None


def _check_name(registry, name: str, key: str) -> None:
    if name not in registry:
        raise SpecError(key, registry.unknown_message(name))


def build_spec(data: Mapping[str, Any], *, check_ablation: bool = True) -> SweepSpec:
    """Validates plain data into a :class:`SweepSpec`: the sections, the names, the method's typed params,
    the checks that need the dataset's metadata, the search and (with ``check_ablation``) every step,
    whose specs are built here once and kept on the spec."""
    from raysynth.data import DATASETS
    from raysynth.metrics import FID_BACKENDS
    from raysynth.nets.settings import CLASSIFIERS

    data = dict(data)
    raw_params = data.pop("params", None) or {}
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as error:
        raise _spec_error(error, SweepSpec) from None
    _check_name(METHODS, spec.method, "method")
    _check_name(DATASETS, spec.dataset.name, "dataset.name")
    _check_name(CLASSIFIERS, spec.evaluation.classifier, "evaluation.classifier")
    _check_name(FID_BACKENDS, spec.evaluation.fid, "evaluation.fid")
    try:
        params = validate_params(spec.method, raw_params)
    except SpecError as error:
        other = [step.name for step in spec.ablation if step.method not in (None, spec.method)]
        if not other or "unknown key" not in str(error):
            raise
        # `--set params.X` meant for a step of another method lands here: say where its params live
        reason = str(error).removeprefix(f"`{error.key}`: ")
        raise SpecError(error.key, f"{reason} (these are `{spec.method}`'s params; steps {', '.join(other)} run "
                                   "another method and take theirs from the step's `params:` in the file)") from None
    spec = spec.model_copy(update={"params": params})
    _check_selection(spec)
    _check_split(spec)
    _check_schedule(spec)
    _check_params_for_data(spec, params)
    _check_search(spec)
    if check_ablation and spec.ablation:
        names = [step.name for step in spec.ablation]
        if len(set(names)) != len(names):
            raise SpecError("ablation", f"step names must be unique, but got {names}")
        references = [step.name for step in spec.ablation if step.reference]
        if len(references) > 1:
            raise SpecError("ablation", f"at most one step may be the `reference: true`, but got {references}")
        spec.steps()  # builds and validates every step once; the spec keeps them
    return spec


def sampled_params(spec: SweepSpec, sampled: Mapping[str, Any]) -> Params:
    """``spec``'s params with sampled values (dotted keys) applied: one validation, plus the method's
    dataset-aware checks (a sampled value may break one)."""
    params = validate_params(spec.method, apply_overrides(spec.params.to_data(), sampled))
    _check_params_for_data(spec, params)
    return params


def _check_selection(spec: SweepSpec) -> None:
    """Selection uses validation metrics; a test metric needs the explicit, recorded exception."""
    for metric in spec.tune.metrics:
        if metric not in METRICS or metric.startswith("probe/"):
            known = selection_metrics()
            raise SpecError("tune.metric", f"unknown metric `{metric}`: {did_you_mean(metric, known)}selectable: {', '.join(known)}")
        if METRICS[metric].split == "test" and not spec.tune.select_on_test:
            instead = validation_counterpart(metric) or "val_accuracy"
            raise SpecError("tune.metric", f"`{metric}` is measured on the test set, which selection must not see; "
                                           f"use `{instead}` (or set tune.select_on_test: true to select on test, recorded as such)")
    overlap = sorted(set(spec.tune.confirm_seeds) & set(spec.seeds))
    if overlap:
        raise SpecError("tune.confirm_seeds", f"must be seeds the search never saw, but {overlap} are also in `seeds`")
    if len(set(spec.tune.confirm_seeds)) != len(spec.tune.confirm_seeds):
        raise SpecError("tune.confirm_seeds", f"must not repeat a seed, but got {spec.tune.confirm_seeds}")


def _check_split(spec: SweepSpec) -> None:
    """The few-shot and validation sets must fit the dataset's smallest class; selection needs validation images."""
    from raysynth.data import DATASETS

    dataset = spec.dataset
    if dataset.validation_per_class == 0:
        if spec.search:
            raise SpecError("dataset.validation_per_class", "is 0, but this space searches (`search:`), and the "
                                                            "searcher selects on validation images; set it to e.g. 50")
        if spec.tune.scheduler.kind == "asha":
            raise SpecError("dataset.validation_per_class", "is 0, but ASHA early-stops on probe/val_accuracy; "
                                                            "set it to e.g. 50, or tune.scheduler.kind: fifo")
    problem = DATASETS.get(dataset.name).check_split(dataset.images_per_class, dataset.validation_per_class)
    if problem:
        most = DATASETS.get(dataset.name).smallest_class - dataset.validation_per_class
        raise SpecError("dataset.images_per_class", f"{problem}; use at most {most}, or lower dataset.validation_per_class")


def _check_schedule(spec: SweepSpec) -> None:
    """ASHA needs probes within the classifier's epochs and a grace period it can reach."""
    epochs, scheduler = spec.evaluation.epochs, spec.tune.scheduler
    if scheduler.kind != "asha":
        return
    if scheduler.grace_period > epochs:
        raise SpecError("tune.scheduler.grace_period", f"{scheduler.grace_period} probe epochs, but evaluation.epochs is "
                                                       f"{epochs}: ASHA could never stop a trial; use at most {epochs} "
                                                       f"(e.g. --set tune.scheduler.grace_period={max(1, epochs // 3)})")
    if not 0 < spec.evaluation.probe_every <= epochs:
        raise SpecError("evaluation.probe_every", f"is {spec.evaluation.probe_every}, but ASHA needs probes within the "
                                                  f"{epochs} classifier epochs; use 1 to {epochs}")


def _check_params_for_data(spec: SweepSpec, params) -> None:
    """Constraints of the method's parameters that depend on the dataset (registry metadata only)."""
    from raysynth.data.datasets import DATASETS, DataInfo

    info = DataInfo.of(DATASETS.get(spec.dataset.name), spec.dataset.images_per_class, spec.dataset.validation_per_class)
    for key, message in params.check_for(info):
        raise SpecError(f"params.{key}", message)


def _check_search(spec: SweepSpec) -> None:
    """Every search key samples values the params model accepts; a `when:` names an earlier key or a parameter."""
    seen: list[str] = []
    params = spec.params.to_data()
    for key, distribution in spec.search.items():
        where = f"search.{key}"
        for condition_key in (distribution.when or {}):
            if condition_key in spec.search and condition_key not in seen:
                raise SpecError(f"{where}.when", f"`{condition_key}` is {'this key itself' if condition_key == key else 'sampled later'}; "
                                                 "a condition names an earlier search key (move it above) or a fixed parameter")
            if condition_key not in seen and lookup(params, condition_key) is MISSING:
                raise SpecError(f"{where}.when", f"`{condition_key}` is neither an earlier search key nor a parameter of `{spec.method}`")
        for value in distribution.representative_values():
            try:
                validate_params(spec.method, apply_overrides(params, {key: value}))
            except SpecError as error:
                if isinstance(value, float) and not value.is_integer():
                    low, high = getattr(distribution, distribution.kind)
                    raise SpecError(where, f"{distribution.kind} samples fractional values, but `params.{key}` is an "
                                           f"integer; use {{int: [{int(low)}, {int(high)}]}}") from None
                raise SpecError(where, f"value {value!r} is not a valid `params.{key}` of method `{spec.method}` ({error})") from None
        seen.append(key)



def step_spec(spec: SweepSpec, index: int) -> SweepSpec:
    """The spec of ablation step ``index``: its method, params and other keys applied, ablation removed."""
    step = spec.ablation[index]
    data = spec.to_data()
    data["ablation"] = []
    if step.method is not None and step.method != spec.method:
        data["method"] = step.method
        data["params"] = {}
        data["search"] = {}  # the base search belongs to the base method
    data["params"] = apply_overrides(data["params"], flatten(step.params))
    try:
        data = apply_overrides(data, step.set)
        return build_spec(data, check_ablation=False)
    except SpecError as error:
        raise SpecError(f"ablation[{step.name}]", str(error)) from None



def only_steps(spec: SweepSpec, names: list[str]) -> SweepSpec:
    """``spec`` with its ladder cut to the named steps (in the file's order); all steps when ``names`` is empty."""
    if not names:
        return spec
    known = [step.name for step in spec.ablation]
    for name in names:
        if name not in known:
            raise SpecError("--only", f"no ablation step `{name}`; {did_you_mean(name, known)}steps: {', '.join(known) or '(none)'}")
    data = spec.to_data()
    data["ablation"] = [step for step in data["ablation"] if step["name"] in names]
    return build_spec(data)
