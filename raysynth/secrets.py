"""Credentials never leave the process that holds them: what is logged, printed, saved as a param or
artifact, or pickled into Tune's state passes through :func:`redact` / :func:`redact_uri` first.

A tracking URI that carries credentials reaches trials through the environment (``RAYSYNTH_TRACKING_URI``,
inherited by a local Ray instance's workers), never through Ray: the sweep context carries the redacted
form, and :func:`worker_tracking_uri` finds the real one again where the trial runs."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

# `token` only at the end: `auth_token` is a credential, `rowwise_tokens` / `max_tokens` are hyperparameters
SECRET_KEY = re.compile(r"(token$|password|passwd|secret|credential|api_?key|access_?key|private_?key|signature|(^|[._])key$)", re.I)
REDACTED = "***"
TRACKING_URI_ENV = "RAYSYNTH_TRACKING_URI"
# userinfo of any URL in free text (log lines, exception messages)
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"]+@")


def is_secret_key(dotted_key: str) -> bool:
    """Keys that look like credentials are never logged or saved in clear."""
    return bool(SECRET_KEY.search(dotted_key.split(".")[-1]))


def redact(data: Any, path: str = "") -> Any:
    """A copy of nested ``data`` with the values of secret-looking keys replaced by ``***`` and the
    credentials of every URI (user info, token-like query parameters) removed."""
    if isinstance(data, Mapping):
        return {k: (REDACTED if is_secret_key(f"{path}{k}") and not isinstance(v, Mapping) else redact(v, f"{path}{k}."))
                for k, v in data.items()}
    if isinstance(data, list):
        return [redact(item, path) for item in data]
    if isinstance(data, str) and "://" in data:
        return redact_uri(data)
    return data


def redact_uri(uri: str | None) -> str | None:
    """``scheme://user:password@host/...?token=...`` -> ``scheme://***@host/...?token=***``."""
    if not uri or "://" not in uri:
        return uri
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(uri)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if "@" not in parts.netloc and not any(is_secret_key(k) for k, _ in pairs):
        return uri  # nothing to hide; urlunsplit would also drop the empty host of sqlite:////abs/path
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = urlencode([(k, REDACTED if is_secret_key(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Free text (a log line, an exception message) with the user info of every URL in it removed."""
    return _USERINFO.sub(rf"\g<scheme>{REDACTED}@", text) if "://" in text else text


@contextmanager
def scoped_environment(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set within, as it was after (MLflow's client reads its credentials
    and HTTP settings from the environment, not from arguments)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def has_credentials(uri: str | None) -> bool:
    return redact_uri(uri) != uri


def worker_tracking_uri(shown: str, environ: Mapping[str, str] = os.environ) -> str:
    """The real tracking URI for the redacted ``shown`` one: itself when nothing was hidden, else the
    environment's (``RAYSYNTH_TRACKING_URI``, then ``MLFLOW_TRACKING_URI``) when it redacts to ``shown``."""
    if REDACTED not in shown:
        return shown
    for name in (TRACKING_URI_ENV, "MLFLOW_TRACKING_URI"):
        candidate = environ.get(name)
        if candidate and redact_uri(candidate) == shown:
            return candidate
    from raysynth.errors import RaysynthError

    raise RaysynthError(f"the tracking URI {shown} carries credentials, which never travel through Ray: on a cluster "
                        f"give each node a plain URI and its credentials in ~/.mlflow/credentials (docs/cluster.md), "
                        f"or set {TRACKING_URI_ENV} with them in the nodes' environment")
