"""Basic auth for the cluster's MLflow tracking server (docs/cluster.md, "Security").

Three steps, each idempotent, each run by the runbook or the head's start commands:

- ``credentials FILE --username NAME``: on the laptop, a new MLflow credentials file (mode 0600) for the
  cluster's trials; ``cluster.yaml`` mounts it as ``~/.mlflow/credentials`` on every node, where MLflow's
  client reads it, so no credential travels through Ray.
- ``server-config FOLDER``: on the head, the auth app's configuration: an admin password and a Flask
  secret key generated once (0600 files in FOLDER), ``basic_auth.ini`` naming the password, and
  ``mlflow-server.env`` with the two variables the server needs; it starts with
  ``set -a; . FOLDER/mlflow-server.env; set +a; mlflow server --app-name basic-auth ...``.
- ``add-user URL NAME``: on the head, a user on the running server, created with the admin account:
  from a credentials file (the trials' user) or with a generated password printed once (a researcher).

    python -m raysynth.cluster_auth credentials ~/.raysynth/cluster-mlflow-credentials --username trials
    python -m raysynth.cluster_auth server-config ~/.raysynth
    python -m raysynth.cluster_auth add-user http://10.0.0.5:5000 trials --from ~/.mlflow/credentials --config ~/.raysynth
"""

from __future__ import annotations

import argparse
import configparser
import io
import os
import secrets
import sys
from pathlib import Path

ADMIN = "admin"
PASSWORD_FILE = "mlflow-admin-password"
SECRET_KEY_FILE = "mlflow-flask-secret-key"  # the auth app's CSRF protection signs with it
CONFIG_FILE = "basic_auth.ini"
ENV_FILE = "mlflow-server.env"
CREDENTIAL_CACHE_S = 60  # how long the head's server trusts a password it has checked (docs/cluster.md)


def _write_private(path: Path, text: str) -> None:
    """Writes ``text`` readable by its owner only (created 0600, never world-readable for an instant)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def new_password() -> str:
    return secrets.token_urlsafe(24)


def write_credentials(path: Path, username: str, password: str | None = None) -> None:
    """An MLflow credentials file (``[mlflow]`` with tracking username and password); kept if it exists."""
    if path.exists():
        return
    config = configparser.ConfigParser()
    config["mlflow"] = {"mlflow_tracking_username": username, "mlflow_tracking_password": password or new_password()}
    _write_private(path, _ini_text(config))


def read_credentials(path: Path) -> tuple[str, str]:
    config = configparser.ConfigParser()
    config.read(path)
    try:
        section = config["mlflow"]
        return section["mlflow_tracking_username"], section["mlflow_tracking_password"]
    except KeyError:
        raise SystemExit(f"{path}: not an MLflow credentials file ([mlflow] with mlflow_tracking_username and "
                         "mlflow_tracking_password); create it with `python -m raysynth.cluster_auth credentials`") from None


def write_server_config(folder: Path, default_permission: str = "READ", credential_cache_s: int = CREDENTIAL_CACHE_S) -> Path:
    """The auth app's configuration in ``folder`` (admin password and secret key generated once, the .ini);
    returns the environment file the server starts with. ``credential_cache_s``: how long the server
    trusts a password it has checked (0: hash-check every request)."""
    folder = folder.expanduser()
    password_file, secret_file = folder / PASSWORD_FILE, folder / SECRET_KEY_FILE
    for path in (password_file, secret_file):
        if not path.exists():
            _write_private(path, new_password())
    config = configparser.ConfigParser()
    config["mlflow"] = {
        "default_permission": default_permission,  # every user may read every experiment; writes need ownership
        "database_uri": f"sqlite:///{folder.resolve() / 'mlflow-auth.db'}",
        "admin_username": ADMIN,
        "admin_password": password_file.read_text().strip(),
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        # a password check is a deliberately slow hash; cached, a trial's reports cost the head little.
        # The price: a user deleted (or a password changed) through one server worker still gets in
        # through another worker's cache for up to this long (the worker that took the change forgets at once)
        "auth_cache_ttl_seconds": str(credential_cache_s),
    }
    _write_private(folder / CONFIG_FILE, _ini_text(config))
    environment = server_environment(folder)
    _write_private(folder / ENV_FILE, "".join(f"{key}={value}\n" for key, value in environment.items()))
    return folder / ENV_FILE


def server_environment(folder: Path) -> dict[str, str]:
    """What ``mlflow server --app-name basic-auth`` needs in its environment, from ``folder``."""
    folder = folder.expanduser().resolve()
    return {"MLFLOW_AUTH_CONFIG_PATH": str(folder / CONFIG_FILE),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": (folder / SECRET_KEY_FILE).read_text().strip()}


def add_user(url: str, username: str, password: str, admin_password: str) -> bool:
    """Creates ``username`` on the server at ``url`` with the admin account; False if it exists already."""
    from mlflow.exceptions import RestException
    from mlflow.server.auth.client import AuthServiceClient

    from raysynth.secrets import scoped_environment

    try:
        with scoped_environment(MLFLOW_TRACKING_USERNAME=ADMIN, MLFLOW_TRACKING_PASSWORD=admin_password):
            AuthServiceClient(url).create_user(username, password)
        return True
    except RestException as error:
        if "RESOURCE_ALREADY_EXISTS" in str(error.error_code):
            return False
        raise


def _ini_text(config: configparser.ConfigParser) -> str:
    text = io.StringIO()
    config.write(text)
    return text.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raysynth.cluster_auth", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    credentials = verbs.add_parser("credentials", help="a new MLflow credentials file (0600) for the cluster's trials")
    credentials.add_argument("path", type=Path)
    credentials.add_argument("--username", default="trials")
    server = verbs.add_parser("server-config", help="the auth app's configuration, admin password, secret key (head)")
    server.add_argument("folder", type=Path)
    server.add_argument("--credential-cache-s", type=int, default=CREDENTIAL_CACHE_S,
                        help="seconds the server trusts a checked password (default %(default)s; 0: check every request)")
    user = verbs.add_parser("add-user", help="a user on the running server, created with the admin account")
    user.add_argument("url")
    user.add_argument("username")
    user.add_argument("--from", dest="credentials", type=Path, default=None,
                      help="the password of this MLflow credentials file (default: generate one and print it)")
    user.add_argument("--config", type=Path, default=Path("~/.raysynth"), help="the server-config folder")
    args = parser.parse_args(argv)
    if args.verb == "server-config" and args.credential_cache_s < 0:
        print(f"error: --credential-cache-s {args.credential_cache_s}: give 0 (no cache) or a number of seconds",
              file=sys.stderr)
        return 2

    if args.verb == "credentials":
        write_credentials(args.path.expanduser(), args.username)
        print(f"credentials for `{args.username}` in {args.path} (mode 0600)")
    elif args.verb == "server-config":
        print(write_server_config(args.folder, credential_cache_s=args.credential_cache_s))
    else:
        admin_password = (args.config.expanduser() / PASSWORD_FILE).read_text().strip()
        if args.credentials is not None:
            username, password = read_credentials(args.credentials.expanduser())
            if username != args.username:
                raise SystemExit(f"{args.credentials} is for `{username}`, not `{args.username}`")
        else:
            password = new_password()
        created = add_user(args.url, args.username, password, admin_password)
        if not created:
            print(f"user `{args.username}` exists already on {args.url}")
        elif args.credentials is None:
            print(f"user `{args.username}` created; password (shown once): {password}")
        else:
            print(f"user `{args.username}` created from {args.credentials}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
