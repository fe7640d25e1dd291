"""The search-space schema: the sections of a space file as strict, immutable pydantic models.

A :class:`SweepSpec` holds the method's own typed ``Params``; how a file becomes one (reading,
``--set``, machine defaults, the checks that need more than a field) lives in the sibling modules.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SerializeAsAny, field_validator, model_validator

from raysynth.params import Params
from raysynth.secrets import has_credentials, redact_uri

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
    """The evaluation protocol: this model is what the classifier loop and the FID receive."""

    classifier: str = Field("convnet", description="a registered classifier")
    width: int | None = count(None, 1, 4096, "classifier base width; None: the reference (ConvNet 128)")
    epochs: int = count(300, 1, 100_000, "classifier training epochs (300 in the protocol, 1000 with DSA)")
    num_eval: int = count(3, 1, 100, "independently initialized classifiers per training set")
    lr: float = Field(0.01, gt=0, le=10, description="classifier SGD learning rate, decayed x0.1 at half the epochs (0 to 10)")
    momentum: float = Field(0.9, ge=0, lt=1, description="classifier SGD momentum (0 to 1)")
    weight_decay: float = Field(5e-4, ge=0, le=1, description="classifier SGD weight decay (0 to 1)")
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

    @field_validator("storage", "study_storage")
    @classmethod
    def _no_credentials(cls, value: str | None, info):
        # Tune pickles both into its experiment state (the searcher holds the study's storage)
        if has_credentials(value):
            where = ("the cloud's own credentials (AWS_* variables, an instance role)" if info.field_name == "storage"
                     else "the database client's own (PostgreSQL: PGPASSWORD or ~/.pgpass)")
            raise ValueError(f"`{redact_uri(value)}` carries credentials, which Tune would save in its experiment state; "
                             f"remove them from the URI and use {where}")
        return value

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
    """A validated search space; ``params`` is the method's own typed ``Params`` model.

    Built by :func:`raysynth.spec.build_spec` (which validates the params with the method's model and
    runs the checks a field cannot make); a ladder's step specs are built once, there, and kept.
    """

    experiment: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                            description="the MLflow experiment and the folder of the sweep's state: a name (letters, "
                                        "digits, _ . -), never a path")
    plugins: list[str] = Field(default_factory=list, description="modules or .py files (relative to the space file) "
                               "that register the user's own methods, datasets or classifiers")
    method: str
    dataset: DatasetSpec = DatasetSpec()
    seeds: list[Seed] = Field([0], min_length=1, max_length=1000, description="data seeds (each fixes a few-shot "
                              "and validation split); 0 to 2^32 - 1")
    params: SerializeAsAny[Params] = Field(default_factory=Params, description="the method's parameters")
    search: dict[str, Distribution] = Field(default_factory=dict)
    ablation: list[AblationStep] = Field(default_factory=list)
    budget: BudgetSpec = BudgetSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    tune: TuneSpec = TuneSpec()
    tracking: TrackingSpec = TrackingSpec()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cache_dir: str | None = Field(None, description="caches (FID network, baselines); default $RAYSYNTH_CACHE or ~/.cache/raysynth")

    _step_specs: tuple[tuple[str, "SweepSpec"], ...] | None = PrivateAttr(None)

    def to_data(self) -> dict[str, Any]:
        """Plain data (JSON types), params included: what is logged, and what overrides apply to."""
        return self.model_dump(mode="json", exclude_none=False, by_alias=True)

    def steps(self) -> list[tuple[str | None, "SweepSpec"]]:
        """(step name, step spec) for every ablation step, or ``[(None, self)]`` without a ladder."""
        if not self.ablation:
            return [(None, self)]
        if self._step_specs is None:
            from raysynth.spec.validation import step_spec

            self._step_specs = tuple((step.name, step_spec(self, index)) for index, step in enumerate(self.ablation))
        return list(self._step_specs)

    def with_params(self, sampled: Mapping[str, Any]) -> "SweepSpec":
        """This spec with sampled values (dotted ``params`` keys) applied: one validation of the params
        model and the method's dataset-aware checks, nothing else rebuilt."""
        from raysynth.spec.validation import sampled_params

        if not sampled:
            return self
        return self.model_copy(update={"params": sampled_params(self, sampled)})

    def with_seeds(self, seeds: list[int]) -> "SweepSpec":
        """This spec on other seeds (a confirmation run: its seeds were validated as confirm_seeds)."""
        tune = self.tune.model_copy(update={"confirm_seeds": []})
        return self.model_copy(update={"seeds": list(seeds), "tune": tune})



def annotation_args(annotation) -> tuple:
    args = getattr(annotation, "__args__", None)
    return tuple(args) if args else (annotation,)


def section_model(annotation) -> type[BaseModel] | None:
    """The section model inside an annotation (``X``, ``X | None``, ``list[X]``), or None for a value."""
    candidates = [a for outer in annotation_args(annotation) for a in (outer, *getattr(outer, "__args__", ()))]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
