"""The search-space schema: YAML -> validated, immutable :class:`SweepSpec`.

Every way of changing a value (``--set KEY=VALUE``, an ablation step, a value Optuna sampled) goes
through :func:`apply_overrides` on plain data and is validated again, so a trial's configuration is
always a spec that passed the same checks as the file. Errors name the dotted key the user wrote.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raysynth.errors import SpecError
from raysynth.methods import METHODS
from raysynth.metrics import METRICS, selection_metrics, validation_counterpart


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(Strict):
    name: str = Field("digits", description="a registered dataset (`raysynth datasets` lists them)")
    images_per_class: int = Field(10, ge=1, description="size of the few-shot set, per class")
    validation_per_class: int = Field(50, ge=0, le=100000, description="labelled training images per class that no "
                                      "method sees, for selection (val_* metrics); 0: none (no search, no ASHA)")
    root: str | None = Field(None, description="folder with the dataset's files; default $RAYSYNTH_DATA")
    download: bool = Field(True, description="let torchvision download a dataset that is not here (needs network)")


class BudgetSpec(Strict):
    epochs: int = Field(10, ge=1, description="training epochs of the method")


class EvaluationSpec(Strict):
    classifier: str = Field("convnet", description="a registered classifier")
    width: int | None = Field(None, ge=1, description="classifier base width; None: the reference (ConvNet 128)")
    epochs: int = Field(300, ge=1, description="classifier training epochs (300 in the protocol, 1000 with DSA)")
    num_eval: int = Field(3, ge=1, description="independently initialized classifiers per training set")
    lr: float = Field(0.01, gt=0)
    batch_size: int = Field(256, ge=1)
    augmentation: Literal["none", "dsa"] = Field("none", description="differentiable siamese augmentation while training")
    fid: str = Field("domain", description="FID feature space: domain | inception")
    fid_samples: int = Field(10000, ge=2, description="at most this many images per side of the FID")
    inception_weights: str | None = Field(None, description="local path of the FID Inception weights (offline)")
    probe_every: int = Field(10, ge=0, description="report probe/val_accuracy every N classifier epochs (ASHA's signal)")


class ResourcesSpec(Strict):
    cpu: float = Field(1, gt=0)
    gpu: float = Field(0, ge=0, description="fractional values pack several trials on one GPU")
    custom: dict[str, float] = Field(default_factory=dict, description="Ray custom resources, e.g. {spot_worker: 1}")


class SchedulerSpec(Strict):
    kind: Literal["fifo", "asha"] = "fifo"
    grace_period: int = Field(10, ge=1, description="probe epochs before ASHA may stop a trial")
    reduction_factor: float = Field(3, gt=1)


class TuneSpec(Strict):
    num_samples: int = Field(1, ge=1, description="Optuna trials per search (per ablation step)")
    metric: str | list[str] = Field("val_accuracy", description="what the searcher optimizes and the best trial is "
                                    "chosen by: a validation metric (val_accuracy, val_fid, ...)")
    mode: Literal["max", "min"] | list[Literal["max", "min"]] = "max"
    max_concurrent: int = Field(2, ge=1)
    resources_per_trial: ResourcesSpec = ResourcesSpec()
    max_failures: int = Field(2, ge=0, description="restarts of a trial whose worker died or that raised, from its last checkpoint")
    checkpoint_interval_s: float = Field(60, ge=0, description="checkpoint a trial at most this often within a phase (seconds; 0: every epoch)")
    storage: str | None = Field(None, description="Tune storage path (local folder or s3://...); default ./ray_results")
    scheduler: SchedulerSpec = SchedulerSpec()
    sampler: Literal["tpe", "nsga2", "random"] | None = Field(None, description="None: TPE, NSGA-II for several metrics")
    sampler_seed: int = Field(0, description="seed of the Optuna sampler, so a sweep's proposals are reproducible")
    select_on_test: bool = Field(False, description="allow a test metric as tune.metric (recorded on the sweep run "
                                 "and printed in the report): numbers selected this way are optimistic")
    confirm_seeds: list[int] = Field(default_factory=list, description="after a search, the selected configuration "
                                     "runs again on these seeds, which the search never saw: its test accuracy is "
                                     "the number to quote")
    study_storage: str | None = Field(None, description="Optuna storage URL of the searches' studies; default "
                                      "sqlite:///optuna.db beside a SQLite tracking store (or in the working folder)")

    @model_validator(mode="after")
    def _metric_mode_match(self):
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        modes = self.mode if isinstance(self.mode, list) else [self.mode]
        if len(metrics) != len(modes):
            raise ValueError(f"tune.metric has {len(metrics)} entries but tune.mode has {len(modes)}; give one mode per metric")
        return self

    @property
    def metrics(self) -> list[str]:
        return self.metric if isinstance(self.metric, list) else [self.metric]

    @property
    def modes(self) -> list[str]:
        return self.mode if isinstance(self.mode, list) else [self.mode]


class TrackingSpec(Strict):
    uri: str | None = Field(None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")


_Float, _Int = float, int  # the field named `int` below shadows the builtin inside the class


class Distribution(Strict):
    """One Optuna distribution: exactly one of uniform, loguniform, int, choice; optionally `when`."""

    uniform: tuple[_Float, _Float] | None = None
    loguniform: tuple[_Float, _Float] | None = None
    int: tuple[_Int, _Int] | None = None
    choice: list[Any] | None = None
    when: dict[str, list[Any]] | None = Field(None, description="sample only when these keys have these values")

    @model_validator(mode="after")
    def _one_kind(self):
        kinds = [k for k in ("uniform", "loguniform", "int", "choice") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of uniform: [lo, hi], loguniform: [lo, hi], int: [lo, hi], choice: [...]")
        if kinds[0] != "choice":
            low, high = getattr(self, kinds[0])
            if not low <= high:
                raise ValueError(f"`lo <= hi` must hold, but got [{low}, {high}]")
            if kinds[0] == "loguniform" and low <= 0:
                raise ValueError(f"loguniform needs lo > 0, but got {low}")
        elif not self.choice:
            raise ValueError("choice needs at least one value")
        elif not all(v is None or isinstance(v, (bool, int, float, str)) for v in self.choice):
            raise ValueError("choice values must be numbers, strings, booleans or null (Optuna's categorical values)")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("uniform", "loguniform", "int", "choice") if getattr(self, k) is not None)

    def representative_values(self) -> list[Any]:
        """Values that span the distribution, to check the parameter model accepts them."""
        if self.kind == "choice":
            return list(self.choice)
        return list(getattr(self, self.kind))


class AblationStep(Strict):
    name: str = Field(min_length=1)
    method: str | None = Field(None, description="the step's method; default: the space's `method`")
    params: dict[str, Any] = Field(default_factory=dict, description="merged over `params` when the method is the same")
    set: dict[str, Any] = Field(default_factory=dict, description="other dotted keys to override, e.g. dataset.images_per_class")
    reference: bool = Field(False, description="the step every other step is compared with in the report (paired "
                            "over seeds); default: the first step")


class SweepSpec(Strict):
    """A validated search space. ``params`` holds the method's typed parameters as plain data."""

    experiment: str = Field(min_length=1)
    method: str
    dataset: DatasetSpec = DatasetSpec()
    seeds: list[int] = Field([0], min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Distribution] = Field(default_factory=dict)
    ablation: list[AblationStep] = Field(default_factory=list)
    budget: BudgetSpec = BudgetSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    tune: TuneSpec = TuneSpec()
    tracking: TrackingSpec = TrackingSpec()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cache_dir: str | None = Field(None, description="caches (FID network, baselines); default $RAYSYNTH_CACHE or ~/.cache/raysynth")

    def method_params(self):
        """The method's typed parameter model built from ``params``."""
        return METHODS.get(self.method).Params.model_validate(self.params)

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)


# --------------------------------------------------------------------------- loading

def read_yaml(path: str | Path) -> dict[str, Any]:
    """Reads a space file with a safe loader (``!!python/...`` tags are refused)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("", f"search-space file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        if "python/" in str(error):
            problem = "unsafe YAML tag refused; write plain values"
        raise SpecError("", f"{path}{where}: {problem}") from None
    if not isinstance(data, dict):
        raise SpecError("", f"{path} must hold a mapping of keys (experiment, method, ...), but holds {type(data).__name__}")
    return data


def parse_set(assignments: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> {dotted key: value}; values are read as YAML scalars/lists (``3``, ``1e-3``, ``[0, 1]``)."""
    overrides = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(item, "--set takes KEY=VALUE, e.g. --set evaluation.epochs=2")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        overrides[key.strip()] = _number_or_text(value)
    return overrides


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


def _fields_at(model: type[BaseModel], location: tuple) -> list[str]:
    """Field names of the (sub)model at ``location``, for suggestions."""
    for part in location:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        candidates = [annotation] + list(getattr(annotation, "__args__", ()))
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def _spec_error(error: ValidationError, model: type[BaseModel], prefix: str = "") -> SpecError:
    first = error.errors()[0]
    location = tuple(first["loc"])
    key = ".".join(str(p) for p in ((prefix,) if prefix else ()) + location)
    if first["type"] == "extra_forbidden":
        known = _fields_at(model, location[:-1])
        nearest = difflib.get_close_matches(str(location[-1]), known, n=1)
        hint = f"did you mean `{'.'.join(key.split('.')[:-1] + [nearest[0]])}`?" if nearest else ""
        return SpecError(key, f"unknown key; {hint} valid keys here: {', '.join(known)}".replace("; ,", ";"))
    if first["type"] == "missing":
        return SpecError(key, "is required; add it to the file or pass --set " f"{key}=...")
    message = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    shown = "" if isinstance(value, dict) or first["type"] == "value_error" else f", but got {value!r}"
    return SpecError(key, f"{message}{shown}")


def _validate_params(method: str, params: dict[str, Any], key_prefix: str = "params"):
    cls = METHODS.get(method).Params
    try:
        return cls.model_validate(params)
    except ValidationError as error:
        raise _spec_error(error, cls, key_prefix) from None


def _check_name(registry, name: str, key: str) -> None:
    if name not in registry:
        raise SpecError(key, registry.unknown_message(name))


def build_spec(data: Mapping[str, Any], *, check_ablation: bool = True) -> SweepSpec:
    """Validates plain data into a :class:`SweepSpec`, checking names, params, search and ablation."""
    from raysynth.data import DATASETS
    from raysynth.evaluation.fid import FID_BACKENDS
    from raysynth.nets.classifiers import CLASSIFIERS

    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as error:
        raise _spec_error(error, SweepSpec) from None
    _check_name(METHODS, spec.method, "method")
    _check_name(DATASETS, spec.dataset.name, "dataset.name")
    _check_name(CLASSIFIERS, spec.evaluation.classifier, "evaluation.classifier")
    _check_name(FID_BACKENDS, spec.evaluation.fid, "evaluation.fid")
    try:
        _validate_params(spec.method, spec.params)
    except SpecError as error:
        other = [step.name for step in spec.ablation if step.method not in (None, spec.method)]
        if not other:
            raise
        # `--set params.X` meant for a step of another method lands here: say where its params live
        reason = str(error).removeprefix(f"`{error.key}`: ")
        raise SpecError(error.key, f"{reason} (these are `{spec.method}`'s params; steps {', '.join(other)} run "
                                   "another method and take theirs from the step's `params:` in the file)") from None
    _check_selection(spec)
    _check_split(spec)
    _check_search(spec)
    if check_ablation:
        names = [step.name for step in spec.ablation]
        if len(set(names)) != len(names):
            raise SpecError("ablation", f"step names must be unique, but got {names}")
        references = [step.name for step in spec.ablation if step.reference]
        if len(references) > 1:
            raise SpecError("ablation", f"at most one step may be the `reference: true`, but got {references}")
        for index in range(len(spec.ablation)):
            step_spec(spec, index)  # validates the step
    return spec


def _check_selection(spec: SweepSpec) -> None:
    """Selection uses validation metrics; a test metric needs the explicit, recorded exception."""
    for metric in spec.tune.metrics:
        if metric not in METRICS or metric.startswith("probe/"):
            known = selection_metrics()
            nearest = difflib.get_close_matches(metric, known, n=1)
            hint = f"did you mean `{nearest[0]}`? " if nearest else ""
            raise SpecError("tune.metric", f"unknown metric `{metric}`: {hint}selectable: {', '.join(known)}")
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
        raise SpecError("dataset.images_per_class", f"{problem}; lower dataset.images_per_class or dataset.validation_per_class")


def _check_search(spec: SweepSpec) -> None:
    seen: list[str] = []
    for key, distribution in spec.search.items():
        where = f"search.{key}"
        for condition_key in (distribution.when or {}):
            if condition_key not in seen and lookup(spec.params, condition_key) is MISSING:
                raise SpecError(f"{where}.when", f"`{condition_key}` is neither an earlier search key nor a parameter of `{spec.method}`")
        for value in distribution.representative_values():
            try:
                _validate_params(spec.method, apply_overrides(spec.params, {key: value}), "params")
            except SpecError as error:
                raise SpecError(where, f"value {value!r} is not a valid `params.{key}` of method `{spec.method}` ({error})") from None
        seen.append(key)


MISSING = object()


def lookup(data: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` in nested ``data``, or :data:`MISSING`."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def step_spec(spec: SweepSpec, index: int) -> SweepSpec:
    """The spec of ablation step ``index``: its method, params and other keys applied, ablation removed."""
    step = spec.ablation[index]
    data = spec.to_data()
    data["ablation"] = []
    if step.method is not None and step.method != spec.method:
        data["method"] = step.method
        data["params"] = {}
        data["search"] = {}  # the base search belongs to the base method
    data["params"] = apply_overrides(data["params"], _flatten(step.params))
    try:
        data = apply_overrides(data, step.set)
        return build_spec(data, check_ablation=False)
    except SpecError as error:
        raise SpecError(f"ablation[{step.name}]", str(error)) from None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """Nested mapping -> {dotted key: leaf value}."""
    return _flatten(data)


def steps(spec: SweepSpec) -> list[tuple[str | None, SweepSpec]]:
    """(step name, step spec) for every ablation step, or ``[(None, spec)]`` without a ladder."""
    if not spec.ablation:
        return [(None, spec)]
    return [(step.name, step_spec(spec, i)) for i, step in enumerate(spec.ablation)]


def only_steps(spec: SweepSpec, names: list[str]) -> SweepSpec:
    """``spec`` with its ladder cut to the named steps (in the file's order); all steps when ``names`` is empty."""
    if not names:
        return spec
    known = [step.name for step in spec.ablation]
    for name in names:
        if name not in known:
            nearest = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean `{nearest[0]}`? " if nearest else ""
            raise SpecError("--only", f"no ablation step `{name}`; {hint}steps: {', '.join(known) or '(none)'}")
    data = spec.to_data()
    data["ablation"] = [step for step in data["ablation"] if step["name"] in names]
    return build_spec(data)


def with_sampled(spec: SweepSpec, sampled: Mapping[str, Any], seeds: list[int] | None = None) -> SweepSpec:
    """The spec of one trial: values Optuna sampled (dotted ``params`` keys) applied and validated;
    ``seeds`` replaces the spec's seeds (a confirmation run)."""
    data = spec.to_data()
    data["params"] = apply_overrides(data["params"], sampled)
    if seeds:
        data["seeds"], data["tune"]["confirm_seeds"] = list(seeds), []
    return build_spec(data, check_ablation=False)


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """Where caches live when a space names none: $RAYSYNTH_CACHE, else ~/.cache/raysynth."""
    return Path(environ.get("RAYSYNTH_CACHE") or Path.home() / ".cache" / "raysynth").expanduser().resolve()


def resolve_defaults(data: dict[str, Any], environ: Mapping[str, str], cwd: Path) -> dict[str, Any]:
    """Fills what depends on the machine (cache, data, tracking and storage locations) as absolute
    values, so that Ray workers running in other folders see the same places."""
    data = copy.deepcopy(data)
    data["cache_dir"] = str(Path(data["cache_dir"]).expanduser().resolve() if data.get("cache_dir")
                            else default_cache_dir(environ))
    dataset = data.setdefault("dataset", {}) if isinstance(data.get("dataset", {}), dict) else data["dataset"]
    if isinstance(dataset, dict) and not dataset.get("root") and environ.get("RAYSYNTH_DATA"):
        dataset["root"] = environ["RAYSYNTH_DATA"]
    tracking = data.setdefault("tracking", {})
    if isinstance(tracking, dict):
        uri = tracking.get("uri") or environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
        tracking["uri"] = absolute_tracking_uri(uri, cwd)
    tune = data.setdefault("tune", {})
    if isinstance(tune, dict):
        storage = tune.get("storage") or "ray_results"
        if "://" not in storage:
            storage = str((cwd / storage).resolve())
        tune["storage"] = storage
        study = tune.get("study_storage")
        if isinstance(tracking, dict) and isinstance(tracking.get("uri"), str) and (study is None or isinstance(study, str)):
            tune["study_storage"] = absolute_tracking_uri(study or default_study_storage(tracking["uri"], cwd), cwd)
    return data


def default_study_storage(tracking_uri: str, cwd: Path) -> str:
    """``optuna.db`` beside a SQLite tracking store, else in the working folder."""
    if tracking_uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(tracking_uri[len('sqlite:///'):]).parent / 'optuna.db'}"
    return f"sqlite:///{cwd.resolve() / 'optuna.db'}"


def absolute_tracking_uri(uri: str, cwd: Path) -> str:
    """``sqlite:///relative.db`` -> ``sqlite:////abs/relative.db`` (trials run in other folders)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str((cwd / uri[len(prefix):]).resolve())
    return uri


def load_spec(path: str | Path, assignments: list[str] | None = None, *, environ: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> SweepSpec:
    """Reads, overrides (``--set``), fills machine defaults and validates a space file."""
    data = read_yaml(path)
    data = apply_overrides(data, parse_set(assignments or []))
    data = resolve_defaults(data, os.environ if environ is None else environ, cwd or Path.cwd())
    spec = build_spec(data)
    for _, step in steps(spec):
        check_dataset_available(step)
    return spec


def check_dataset_available(spec: SweepSpec) -> None:
    """A dataset that is neither here nor allowed to download is bad input, found before any work starts."""
    from raysynth.data.datasets import DATASETS, unavailable_message

    source = DATASETS.get(spec.dataset.name)
    root = Path(spec.dataset.root) if spec.dataset.root else None
    if not spec.dataset.download and source.locate(root, Path(spec.cache_dir)) is None:
        raise SpecError("dataset.name", unavailable_message(source, root, Path(spec.cache_dir)))


__all__ = ["SweepSpec", "SpecError", "load_spec", "build_spec", "steps", "with_sampled", "flatten",
           "apply_overrides", "parse_set"]
