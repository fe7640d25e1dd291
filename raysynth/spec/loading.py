"""From a file to a spec: read, apply ``--set``, fill the machine's defaults, import plugins, validate,
and check what the machine must offer (dataset files, extras, a writable cache) before work starts."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

from raysynth.errors import SpecError, shorten
from raysynth.spec.overrides import apply_overrides, parse_set
from raysynth.spec.schema import SweepSpec
from raysynth.spec.validation import build_spec
from raysynth.spec.yaml_text import read_yaml


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
        raise SpecError(key, f"{shorten(value)} is not a usable path ({type(error).__name__})") from None


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
    for _, step in spec.steps():
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
        raise SpecError("cache_dir", f"{shorten(str(folder))} cannot be created or written here ({existing} is not a "
                                     "writable folder); set cache_dir or $RAYSYNTH_CACHE to a writable folder")


MIN_FREE_BYTES = 64 << 20  # a sweep's SQLite stores grow by megabytes; less free space than this fails mid-sweep


def check_writable_stores(spec: SweepSpec, address: str | None = None) -> None:
    """A SQLite tracking or study store must be writable with space to grow, a tracking server must accept
    the credentials, and credentials in the URI cannot reach a cluster's workers: all checked before a
    sweep starts, so a bad store is bad input (exit 2, one line), not minutes of retries."""
    import shutil
    import tempfile

    from raysynth.secrets import has_credentials, redact_uri

    if address is not None and has_credentials(spec.tracking.uri):
        raise SpecError("tracking.uri", f"{redact_uri(spec.tracking.uri)} carries credentials, which never travel to a "
                                        "cluster's workers: use a plain URI and put the credentials in ~/.mlflow/credentials "
                                        "on every node (docs/cluster.md)")
    if spec.tracking.uri.startswith(("http://", "https://")):
        _check_server_accepts(spec.tracking.uri)

    for key, uri in (("tracking.uri", spec.tracking.uri), ("tune.study_storage", spec.tune.study_storage)):
        if not uri or not uri.startswith("sqlite:///"):
            continue
        path = Path(uri[len("sqlite:///"):])
        folder = path.parent
        fix = f"point {key} at a writable folder with space (e.g. sqlite:///$PWD/mlflow.db)"
        if not folder.is_dir():
            raise SpecError(key, f"{shorten(str(folder))} is not an existing folder; create it or {fix}")
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".raysynth-write-check-"):
                pass
        except OSError as error:
            raise SpecError(key, f"cannot write in {shorten(str(folder))} ({error.strerror or type(error).__name__}); {fix}") from None
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise SpecError(key, f"{shorten(str(path))} is not writable; {fix}")
        free = shutil.disk_usage(folder).free
        if free < MIN_FREE_BYTES:
            raise SpecError(key, f"only {free >> 20} MiB free in {shorten(str(folder))} (at least {MIN_FREE_BYTES >> 20} MiB "
                                 f"needed); free space or {fix}")


def _check_server_accepts(uri: str) -> None:
    """A tracking server that refuses the credentials (401/403) is bad input; one that does not answer
    is left to the tracker's retries (it may be restarting)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from raysynth.secrets import redact_uri, scoped_environment
    from raysynth.tracking import is_refused

    try:
        with scoped_environment(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10"):
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except MlflowException as error:
        if is_refused(error):
            raise SpecError("tracking.uri", f"the server at {redact_uri(uri)} refused the credentials; set "
                                            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or ~/.mlflow/credentials) "
                                            "to a user it knows") from None
    except Exception:  # unreachable for now: the tracker retries
        pass


def check_dataset_available(spec: SweepSpec) -> None:
    """A dataset that is neither here nor allowed to download is bad input, found before any work starts."""
    from raysynth.data.datasets import DATASETS, unavailable_message

    source = DATASETS.get(spec.dataset.name)
    root = Path(spec.dataset.root) if spec.dataset.root else None
    if not spec.dataset.download and source.locate(root, Path(spec.cache_dir)) is None:
        raise SpecError("dataset.name", unavailable_message(source, root, Path(spec.cache_dir)))
