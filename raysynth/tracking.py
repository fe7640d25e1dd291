"""MLflow: experiments, runs, tags, metrics and artifacts of sweeps, trials and seeds.

Layout (docs/design.md section 6): one experiment per ``experiment``; a parent run per sweep (tag
``raysynth.kind=sweep``); a child run per trial (``raysynth.kind=trial``, metrics averaged over seeds,
the sample grid, the resolved YAML); under it a run per seed (``raysynth.kind=seed``) with the
per-epoch training curves. Runs are found again by their ``raysynth.key`` tag, so a restarted or
resumed trial reuses its run instead of adding a duplicate.

Every call goes through :meth:`Tracker._call`, which retries with backoff: a tracking server that is
briefly unreachable (or a busy SQLite file) delays logging, it does not fail the trial.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from raysynth.errors import RaysynthError
from raysynth.secrets import REDACTED, is_secret_key, redact_text, redact_uri

PARENT_TAG = "mlflow.parentRunId"
KIND_TAG = "raysynth.kind"
KEY_TAG = "raysynth.key"
MAX_PARAM_LENGTH = 6000
def git_commit(folder: Path) -> str:
    """The commit of the code that runs (``unknown`` outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Next to a SQLite file, artifacts go to ``mlartifacts/`` beside it (absolute, so trials in other
    folders agree); a tracking server proxies artifacts itself."""
    if tracking_uri.startswith("sqlite:///"):
        return str(Path(tracking_uri[len("sqlite:///"):]).parent / "mlartifacts" / experiment)
    return None


@dataclass(frozen=True)
class Tracker:
    """A thin, retrying wrapper over :class:`MlflowClient` for raysynth's run layout."""

    tracking_uri: str
    retry_seconds: float = 120.0
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr)

    @cached_property
    def client(self) -> MlflowClient:
        """One client per tracker, not one per call (trials log on every epoch)."""
        return MlflowClient(tracking_uri=self.tracking_uri)

    def _call(self, what: str, function: Callable, *args, **kwargs):
        deadline, delay, warned = time.monotonic() + self.retry_seconds, 0.5, False
        while True:
            try:
                return function(*args, **kwargs)
            except Exception as error:  # MLflow wraps connection and database errors in several types
                if is_refused(error):  # the server answered: no retry helps, and a traceback helps nobody
                    raise RaysynthError(f"{what}: {redact_uri(self.tracking_uri)} refused it ({one_line(error, 200)}); check "
                                        "the user in MLFLOW_TRACKING_USERNAME or ~/.mlflow/credentials and its permission "
                                        "on the experiment") from None
                if _is_permanent(error) or time.monotonic() > deadline:
                    raise
                if not warned:
                    self.log(f"[tracking] {what} failed ({type(error).__name__}: {redact_text(str(error).splitlines()[0])[:120]}); retrying")
                    warned = True
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    # ------------------------------------------------------------------ experiments and runs
    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created if missing (safe when trials race to create it)."""
        def get_or_create():
            client = self.client
            found = client.get_experiment_by_name(name)
            if found is not None:
                return found.experiment_id
            try:
                return client.create_experiment(name, artifact_location=artifact_location(self.tracking_uri, name))
            except Exception:
                found = client.get_experiment_by_name(name)
                if found is None:
                    raise
                return found.experiment_id

        return self._call("creating the experiment", get_or_create)

    def find_run(self, experiment_id: str, key: str):
        runs = self._call("searching runs", self.client.search_runs, [experiment_id],
                          filter_string=f"tags.`{KEY_TAG}` = '{key}'", max_results=5)
        return runs[0] if runs else None

    def open_run(self, experiment_id: str, key: str, *, name: str, kind: str, tags: Mapping[str, str],
                 parent_run_id: str | None = None):
        """The run tagged ``key`` (reopened when it exists), else a new one."""
        existing = self.find_run(experiment_id, key)
        if existing is not None:
            if existing.info.status != "FINISHED":
                self._call("reopening a run", self.client.update_run, existing.info.run_id, status="RUNNING")
            return existing
        all_tags = {KEY_TAG: key, KIND_TAG: kind, "mlflow.runName": name, **tags}
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        return self._call("creating a run", self.client.create_run, experiment_id, tags=all_tags, run_name=name)

    def runs(self, experiment_id: str, kind: str, extra_filter: str = "") -> list:
        query = f"tags.`{KIND_TAG}` = '{kind}'" + (f" and {extra_filter}" if extra_filter else "")
        out, token = [], None
        while True:
            page = self._call("searching runs", self.client.search_runs, [experiment_id], filter_string=query,
                              max_results=1000, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    # ------------------------------------------------------------------ logging
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        flat = [Param(k, (REDACTED if is_secret_key(k) else str(v))[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        existing = self._call("reading a run", self.client.get_run, run_id).data.params
        fresh = [p for p in flat if p.key not in existing]  # params are write-once in MLflow
        for start in range(0, len(fresh), 100):
            self._call("logging params", self.client.log_batch, run_id, params=fresh[start:start + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        self.log_metric_history(run_id, [(metrics, step, int(time.time() * 1000))])

    def log_metric_history(self, run_id: str, entries: Sequence[tuple[Mapping[str, float], int, int]]) -> None:
        """Several reports (metrics, step, timestamp in ms) in as few requests as MLflow allows: an
        authenticating server checks a password hash on every request."""
        batch = [Metric(k, float(v), timestamp, step) for metrics, step, timestamp in entries for k, v in metrics.items()]
        for start in range(0, len(batch), 500):
            self._call("logging metrics", self.client.log_batch, run_id, metrics=batch[start:start + 500])

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        batch = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        self._call("setting tags", self.client.log_batch, run_id, tags=batch)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self._call("uploading an artifact", self.client.log_artifact, run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(artifact_file).name
            path.write_text(text)
            parent = str(Path(artifact_file).parent)
            self.log_artifact(run_id, path, None if parent == "." else parent)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self._call("closing a run", self.client.set_terminated, run_id, status)

    def finish_with_children(self, experiment_id: str, run_id: str, status: str) -> None:
        """Closes a trial run and its seed runs still open (a trial stopped by the scheduler leaves its seed
        run open: the worker is stopped between two reports, with no chance to close it)."""
        for child in self.runs(experiment_id, "seed", f"tags.`{PARENT_TAG}` = '{run_id}' and attributes.status = 'RUNNING'"):
            self.finish(child.info.run_id, status)
        self.finish(run_id, status)

    def describe_experiment(self, experiment_id: str, text: str) -> None:
        """The experiment's description (MLflow shows it above the runs table)."""
        self._call("describing the experiment", self.client.set_experiment_tag, experiment_id, "mlflow.note.content", text)

    def log_image(self, run_id: str, path: Path, key: str, step: int = 0) -> None:
        """A PNG as an MLflow image (shown in the run's image views), under ``key`` at ``step``."""
        from PIL import Image

        with Image.open(path) as image:
            image.load()
            self._call("uploading an image", self.client.log_image, run_id, image, key=key, step=step)

    def fail(self, run_id: str, error: BaseException, traceback_text: str | None = None) -> None:
        """Marks the run FAILED with the one-line reason as tags and the traceback as ``error.txt``."""
        self.set_tags(run_id, {"error": one_line(error), "error_type": type(error).__name__})
        if traceback_text:
            self.log_text(run_id, traceback_text, "error.txt")
        self.finish(run_id, "FAILED")


def one_line(error: BaseException, limit: int = 4000) -> str:
    """``Type: message`` on one line (what a failure table and a run's ``error`` tag show)."""
    message = redact_text(" ".join(str(error).split()))[:limit]
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def is_refused(error: Exception) -> bool:
    """The tracking server rejected the credentials (401) or the user's permission (403)."""
    status = getattr(error, "get_http_status_code", lambda: None)()
    if status in (401, 403):
        return True
    text = str(error)
    return any(code in text for code in ("UNAUTHENTICATED", "PERMISSION_DENIED", "error code 401", "error code 403"))


def _is_permanent(error: Exception) -> bool:
    """Errors that a retry cannot fix (bad requests), as opposed to connection or lock errors."""
    text = str(error)
    return any(code in text for code in ("INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST",
                                         "BAD_REQUEST", "readonly database", "database or disk is full",
                                         "unable to open database file"))


def start_ui(tracking_uri: str, host: str = "127.0.0.1", port: int = 5000, ready_timeout_s: float = 120) -> int:
    """Runs the MLflow UI on ``tracking_uri`` in the foreground; prints its URL once it answers. The
    server runs in a process group of its own, which Ctrl-C or SIGTERM stops whole (its workers too)."""
    import os
    import signal
    import urllib.request

    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", host, "--port", str(port)]
    # MLflow 3's job runner (GenAI jobs: a dozen worker processes) is not needed to browse runs
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=environment)

    def stop(signum=None, frame=None) -> None:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        if signum is not None:
            raise SystemExit(0)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        url = f"http://{host}:{port}"
        deadline = time.monotonic() + ready_timeout_s
        while server.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                stop()
                raise RaysynthError(f"the MLflow UI did not answer on {url} within {ready_timeout_s:.0f} s")
            time.sleep(0.3)
        if server.poll() is not None:
            reason = " ".join((server.stderr.read() or "").split())[-300:]
            raise RaysynthError(f"the MLflow UI exited ({server.returncode}) before answering on {url}: {reason}")
        print(f"MLflow UI on {url} (store {redact_uri(tracking_uri)}); Ctrl-C stops it", file=sys.stderr, flush=True)
        return server.wait()
    finally:
        stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
