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
from typing import Annotated, Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raysynth.errors import SpecError
from raysynth.methods import METHODS
from raysynth.metrics import METRICS, selection_metrics, validation_counterpart


class Strict(BaseModel):
    """Spec sections: unknown keys refused, values frozen, numbers finite, integers never from booleans."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


SEED_LIMIT = 2 ** 32  # numpy's and Optuna's seeds are 32-bit
Seed = Annotated[int, Field(ge=0, lt=SEED_LIMIT, strict=True)]


def count(default, low: int, high: int, description: str = ""):
    """An integer field with bounds; ``strict``: a YAML ``true`` or ``1.5`` is refused, not read as 1."""
    return Field(default, ge=low, le=high, strict=True, description=f"{description} ({low} to {high})".lstrip())


class DatasetSpec(Strict):
    name: str = Field("digits", description="a registered dataset (`raysynth datasets` lists them)")
    images_per_class: int = count(10, 1, 100000, "size of the few-shot set, per class")
    validation_per_class: int = count(50, 0, 100000, "labelled training images per class that no method sees, for "
                                      "selection (val_* metrics); 0: none (no search, no ASHA)")
    root: str | None = Field(None, description="folder with the dataset's files; default $RAYSYNTH_DATA")
    download: bool = Field(True, description="let torchvision download a dataset that is not here (needs network)")


class BudgetSpec(Strict):
    epochs: int = count(10, 1, 1_000_000, "training epochs of the method (what an epoch is, each method says)")


class EvaluationSpec(Strict):
    classifier: str = Field("convnet", description="a registered classifier")
    width: int | None = count(None, 1, 4096, "classifier base width; None: the reference (ConvNet 128)")
    epochs: int = count(300, 1, 100_000, "classifier training epochs (300 in the protocol, 1000 with DSA)")
    num_eval: int = count(3, 1, 100, "independently initialized classifiers per training set")
    lr: float = Field(0.01, gt=0, le=10, description="classifier SGD learning rate (0 to 10)")
    batch_size: int = count(256, 1, 65536, "classifier batch size")
    augmentation: Literal["none", "dsa"] = Field("none", description="differentiable siamese augmentation while training")
    fid: str = Field("domain", description="FID feature space: domain | inception")
    fid_samples: int = count(10000, 2, 1_000_000, "at most this many images per side of the FID")
    inception_weights: str | None = Field(None, description="local path of the FID Inception weights (offline)")
    probe_every: int = count(10, 0, 100_000, "report probe/val_accuracy every N classifier epochs (ASHA's signal)")


class ResourcesSpec(Strict):
    cpu: float = Field(1, gt=0, le=1024, description="CPUs per trial (0 to 1024)")
    gpu: float = Field(0, ge=0, le=64, description="GPUs per trial; fractional values pack several trials on one GPU (0 to 64)")
    custom: dict[str, Annotated[float, Field(ge=0, le=1e6)]] = Field(default_factory=dict, description="Ray custom resources, e.g. {spot_worker: 1}")


class SchedulerSpec(Strict):
    kind: Literal["fifo", "asha"] = "fifo"
    grace_period: int = count(10, 1, 100_000, "probe epochs before ASHA may stop a trial")
    reduction_factor: float = Field(3, gt=1, le=100, description="ASHA keeps 1 in this many trials per rung (1 to 100)")


class TuneSpec(Strict):
    num_samples: int = count(1, 1, 100_000, "Optuna trials per search (per ablation step)")
    metric: str | list[str] = Field("val_accuracy", description="what the searcher optimizes and the best trial is "
                                    "chosen by: a validation metric (val_accuracy, val_fid, ...)")
    mode: Literal["max", "min"] | list[Literal["max", "min"]] = "max"
    max_concurrent: int = count(2, 1, 4096, "trials running at once")
    resources_per_trial: ResourcesSpec = ResourcesSpec()
    max_failures: int = count(2, 0, 100, "restarts of a trial whose worker died or that raised, from its last checkpoint")
    checkpoint_interval_s: float = Field(60, ge=0, le=86400, description="checkpoint a trial at most this often within a phase (seconds; 0: every epoch; at most a day)")
    storage: str | None = Field(None, description="Tune storage path (local folder or s3://...); default ./ray_results")
    scheduler: SchedulerSpec = SchedulerSpec()
    sampler: Literal["tpe", "nsga2", "random"] | None = Field(None, description="None: TPE, NSGA-II for several metrics")
    sampler_seed: int = Field(0, ge=0, lt=SEED_LIMIT, strict=True, description="seed of the Optuna sampler, so a sweep's "
                              "proposals are reproducible (0 to 2^32 - 1)")
    select_on_test: bool = Field(False, description="allow a test metric as tune.metric (recorded on the sweep run "
                                 "and printed in the report): numbers selected this way are optimistic")
    confirm_seeds: list[Seed] = Field(default_factory=list, max_length=1000, description="after a search, the selected configuration "
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
    uri: str | None = Field(None, max_length=2000, pattern=r"^[a-z][a-z0-9+.-]*:",
                            description="MLflow tracking URI (sqlite:///path/mlflow.db, http://host:port, ...); "
                                        "default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")


_Float, _Int = float, int  # the field named `int` below shadows the builtin inside the class


class Distribution(Strict):
    """One Optuna distribution: exactly one of uniform, loguniform, int, choice; optionally `when`."""

    uniform: tuple[_Float, _Float] | None = None
    loguniform: tuple[_Float, _Float] | None = None
    int: tuple[_Int, _Int] | None = None
    choice: list[Any] | None = None
    when: dict[str, list[Any]] | None = Field(None, description="sample only when these keys have these values")

    @model_validator(mode="after")
    def _conditions_have_values(self):
        for key, allowed in (self.when or {}).items():
            if not allowed:
                raise ValueError(f"`when: {{{key}: []}}` can never hold; list the values of `{key}` that enable it")
        return self

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
        """Values that span the distribution, to check the parameter model accepts them (for a continuous
        distribution a fractional interior point too, which an integer parameter refuses)."""
        if self.kind == "choice":
            return list(self.choice)
        low, high = getattr(self, self.kind)
        values = [low, high]
        if self.kind != "int" and high > low:
            values.append(low + (high - low) * 0.3719)
        return values


class AblationStep(Strict):
    name: str = Field(min_length=1)
    method: str | None = Field(None, description="the step's method; default: the space's `method`")
    params: dict[str, Any] = Field(default_factory=dict, description="merged over `params` when the method is the same")
    set: dict[str, Any] = Field(default_factory=dict, description="other dotted keys to override, e.g. dataset.images_per_class")

    @model_validator(mode="after")
    def _no_nested_ladder(self):
        for key in self.set:
            if key.split(".")[0] in ("ablation", "method", "params"):
                raise ValueError(f"`set: {{{key}: ...}}` is not allowed in a step: a step has no ladder of its own, and "
                                 "its method and params are the step's `method:` and `params:`")
        return self
    reference: bool = Field(False, description="the step every other step is compared with in the report (paired "
                            "over seeds); default: the first step")


class SweepSpec(Strict):
    """A validated search space. ``params`` holds the method's typed parameters as plain data."""

    experiment: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                            description="the MLflow experiment and the folder of the sweep's state: a name (letters, "
                                        "digits, _ . -), never a path")
    plugins: list[str] = Field(default_factory=list, description="modules or .py files (relative to the space file) "
                               "that register the user's own methods, datasets or classifiers")
    method: str
    dataset: DatasetSpec = DatasetSpec()
    seeds: list[Seed] = Field([0], min_length=1, max_length=1000, description="data seeds (each fixes a few-shot "
                              "and validation split); 0 to 2^32 - 1")
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

MAX_SPACE_BYTES = 1 << 20
MAX_ALIASES = 20  # YAML aliases (*name) a space may use: a few for shared blocks, never a billion laughs
SHOWN_CHARACTERS = 200  # an echoed value is cut here: a message stays one short line


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


def load_yaml_text(text: str, where: str) -> Any:
    """Parses ``text`` with :class:`SpaceLoader`; a syntax error, alias bomb or deep nesting is one SpecError."""
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
        raise SpecError("", f"{_short(str(path))} cannot be read: {error.strerror or type(error).__name__}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError("", f"{path} is not UTF-8 text (byte {error.start}); a space file is YAML") from None
    data = load_yaml_text(text, str(path))
    if not isinstance(data, dict):
        raise SpecError("", f"{path} must hold a mapping of keys (experiment, method, ...), but holds {type(data).__name__}")
    return data


def _short(text: str) -> str:
    return text if len(text) <= SHOWN_CHARACTERS else text[:SHOWN_CHARACTERS] + f"... ({len(text)} characters)"


def parse_set(assignments: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> {dotted key: value}; values are read as YAML scalars/lists (``3``, ``1e-3``,
    ``[0, 1]``), except for keys whose field is text, which take the value as written (``experiment=2024``)."""
    overrides = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(_short(item), "--set takes KEY=VALUE, e.g. --set evaluation.epochs=2")
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
            return set(_annotation_args(field.annotation)) <= {str, type(None)} and str in _annotation_args(field.annotation)
        model = _nested_model(field.annotation)
        if model is None:
            return False
    return False


def _annotation_args(annotation) -> tuple:
    args = getattr(annotation, "__args__", None)
    return tuple(args) if args else (annotation,)


def _nested_model(annotation) -> type[BaseModel] | None:
    """The section model inside an annotation (``X``, ``X | None``, ``list[X]``), or None for a value."""
    candidates = [a for outer in _annotation_args(annotation) for a in (outer, *getattr(outer, "__args__", ()))]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


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
    """Field names of the (sub)model at ``location``, for suggestions (list indices are stepped over)."""
    for part in location:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        model = _nested_model(field.annotation) if field is not None else None
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
        nearest = difflib.get_close_matches(str(location[-1]), known, n=1)
        hint = f"did you mean `{'.'.join(key.split('.')[:-1] + [nearest[0]])}`?" if nearest else ""
        return SpecError(key, f"unknown key; {hint} valid keys here: {', '.join(known) or '(none: a value goes here)'}")
    if first["type"] == "missing":
        return SpecError(key, "is required; add it to the file or pass --set " f"{key}=...")
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "string_pattern_mismatch" and location == ("experiment",):
        message = "an experiment name is a name, not a path: letters, digits, _ . - (no / or ..)"
    value = first.get("input")
    shown = "" if isinstance(value, dict) or first["type"] == "value_error" else f", but got {_short(repr(value))}"
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
    from raysynth.metrics import FID_BACKENDS
    from raysynth.nets.settings import CLASSIFIERS

    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as error:
        raise _spec_error(error, SweepSpec) from None
    _check_name(METHODS, spec.method, "method")
    _check_name(DATASETS, spec.dataset.name, "dataset.name")
    _check_name(CLASSIFIERS, spec.evaluation.classifier, "evaluation.classifier")
    _check_name(FID_BACKENDS, spec.evaluation.fid, "evaluation.fid")
    try:
        params = _validate_params(spec.method, spec.params)
    except SpecError as error:
        other = [step.name for step in spec.ablation if step.method not in (None, spec.method)]
        if not other or "unknown key" not in str(error):
            raise
        # `--set params.X` meant for a step of another method lands here: say where its params live
        reason = str(error).removeprefix(f"`{error.key}`: ")
        raise SpecError(error.key, f"{reason} (these are `{spec.method}`'s params; steps {', '.join(other)} run "
                                   "another method and take theirs from the step's `params:` in the file)") from None
    _check_selection(spec)
    _check_split(spec)
    _check_schedule(spec)
    _check_params_for_data(spec, params)
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
    seen: list[str] = []
    for key, distribution in spec.search.items():
        where = f"search.{key}"
        for condition_key in (distribution.when or {}):
            if condition_key in spec.search and condition_key not in seen:
                raise SpecError(f"{where}.when", f"`{condition_key}` is {'this key itself' if condition_key == key else 'sampled later'}; "
                                                 "a condition names an earlier search key (move it above) or a fixed parameter")
            if condition_key not in seen and lookup(spec.params, condition_key) is MISSING:
                raise SpecError(f"{where}.when", f"`{condition_key}` is neither an earlier search key nor a parameter of `{spec.method}`")
        for value in distribution.representative_values():
            try:
                _validate_params(spec.method, apply_overrides(spec.params, {key: value}), "params")
            except SpecError as error:
                if isinstance(value, float) and not value.is_integer():
                    low, high = getattr(distribution, distribution.kind)
                    raise SpecError(where, f"{distribution.kind} samples fractional values, but `params.{key}` is an "
                                           f"integer; use {{int: [{int(low)}, {int(high)}]}}") from None
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
    values, so that Ray workers running in other folders see the same places. A value of the wrong
    type is left as it is, for the schema to name."""
    data = copy.deepcopy(data)
    cache = data.get("cache_dir")
    if cache is None or isinstance(cache, str):
        data["cache_dir"] = str(_absolute_path(cache, "cache_dir") if cache else default_cache_dir(environ))
    dataset = data.setdefault("dataset", {})
    if isinstance(dataset, dict) and not dataset.get("root") and environ.get("RAYSYNTH_DATA"):
        dataset["root"] = environ["RAYSYNTH_DATA"]
    tracking = data.setdefault("tracking", {})
    uri = None
    if isinstance(tracking, dict) and isinstance(tracking.get("uri") or "", str):
        uri = tracking["uri"] = absolute_tracking_uri(tracking.get("uri") or environ.get("MLFLOW_TRACKING_URI")
                                                      or "sqlite:///mlflow.db", cwd)
    tune = data.setdefault("tune", {})
    if isinstance(tune, dict):
        storage = tune.get("storage") or "ray_results"
        if isinstance(storage, str):
            tune["storage"] = storage if "://" in storage else str(_absolute_path(str(cwd / storage), "tune.storage"))
        study = tune.get("study_storage")
        if uri is not None and (study is None or isinstance(study, str)):
            tune["study_storage"] = absolute_tracking_uri(study or default_study_storage(uri, cwd), cwd)
    return data


def _absolute_path(value: str, key: str) -> Path:
    try:
        return Path(value).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as error:
        raise SpecError(key, f"{_short(value)} is not a usable path ({type(error).__name__})") from None


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
    from raysynth import plugins

    data = read_yaml(path)
    data = apply_overrides(data, parse_set(assignments or []))
    data = resolve_defaults(data, os.environ if environ is None else environ, cwd or Path.cwd())
    if isinstance(data.get("plugins"), list):  # imported before validation, so the names they register resolve
        data["plugins"] = plugins.resolve(data["plugins"], Path(path).resolve().parent)
        if all(isinstance(entry, str) for entry in data["plugins"]):
            plugins.load(plugins.read(data["plugins"]))
    try:
        spec = build_spec(data)
    except RecursionError:
        raise SpecError("", f"{path}: nested too deeply; a space is a few levels of keys") from None
    for _, step in steps(spec):
        check_dataset_available(step)
        check_environment(step)
    return spec


def check_environment(spec: SweepSpec) -> None:
    """What the machine must offer before work starts: the FID backend's extra, a writable cache folder."""
    import importlib.util

    if spec.evaluation.fid == "inception" and importlib.util.find_spec("torch_fidelity") is None:
        raise SpecError("evaluation.fid", "`inception` needs the inception extra (torch-fidelity): `uv sync --extra "
                                          "inception`, or use evaluation.fid: domain")
    folder = Path(spec.cache_dir)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise SpecError("cache_dir", f"{_short(str(folder))} cannot be created or written here ({existing} is not a "
                                     "writable folder); set cache_dir or $RAYSYNTH_CACHE to a writable folder")


def check_dataset_available(spec: SweepSpec) -> None:
    """A dataset that is neither here nor allowed to download is bad input, found before any work starts."""
    from raysynth.data.datasets import DATASETS, unavailable_message

    source = DATASETS.get(spec.dataset.name)
    root = Path(spec.dataset.root) if spec.dataset.root else None
    if not spec.dataset.download and source.locate(root, Path(spec.cache_dir)) is None:
        raise SpecError("dataset.name", unavailable_message(source, root, Path(spec.cache_dir)))


__all__ = ["SweepSpec", "SpecError", "load_spec", "build_spec", "steps", "with_sampled", "flatten",
           "apply_overrides", "parse_set"]
