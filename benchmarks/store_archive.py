"""Pack a benchmark store (its SQLite files, e.g. mlflow.db and optuna.db, and mlartifacts/ but its images) into one committed file, and restore it
anywhere, so `raysynth report --all-sweeps` reproduces a table after the machine that ran it is gone.

A SQLite store records absolute paths (each run's artifact location, the Optuna storage in a sweep's
`study_storage` tag); restoring rewrites the packed store's folder to the new one in every text column.
    python benchmarks/store_archive.py pack /work/bench --out benchmarks/stores/2026-11-26.tar.xz
    python benchmarks/store_archive.py restore benchmarks/stores/2026-11-26.tar.xz --into /tmp/store
    raysynth report --tracking-uri sqlite:////tmp/store/mlflow.db --experiment search_koopcon --all-sweeps

A sweep that outlives its machine moves the same way: stop it (`kill <queue or sweep pid>`: it closes its
runs and stays resumable), pack its store with Tune's state and the queue's logs, and on the next machine
restore into a fresh clone at the same path (Tune's state and the searcher's study name it), then resume:
    python benchmarks/store_archive.py pack /work/bench --include ray_results \
        --include benchmarks/results/search_queue --out benchmarks/stores/in_progress/<name>.tar.xz
    git clone <repo> /work/bench && python benchmarks/store_archive.py restore <that archive> --into /work/bench
    cd /work/bench && bash benchmarks/search_queue.sh <name>     # continues the sweep with --resume
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

MANIFEST = "store.json"
ARTIFACTS = "mlartifacts"


def pack(store: Path, out: Path, include: tuple[str, ...] = ()) -> None:
    """Archive the store's databases (consistent copies, taken while sweeps may write) and artifacts, and
    the folders named in ``include`` (relative to the store) as they are."""
    store = store.resolve()
    databases = sorted(path.name for path in store.glob("*.db"))
    if not databases:
        _bad_input(f"{store}: no *.db here; name the folder that holds the benchmark store")
    for folder in include:
        if Path(folder).is_absolute() or ".." in Path(folder).parts or not (store / folder).is_dir():
            _bad_input(f"--include {folder}: not a folder inside {store}; name one relative to the store, e.g. ray_results")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, tarfile.open(out, "w:xz") as archive:
        for name in databases:
            copy = Path(folder) / name
            with sqlite3.connect(store / name) as source, sqlite3.connect(copy) as target:
                source.backup(target)  # the online backup API: a consistent copy, even mid-write
            with sqlite3.connect(copy) as target:
                target.execute("VACUUM")
            archive.add(copy, name)
        if (store / ARTIFACTS).exists():  # the report needs the sweep files, not the sample grids (most of the bytes)
            archive.add(store / ARTIFACTS, ARTIFACTS, filter=lambda entry: None if entry.name.endswith(".png") else entry)
        for included in include:
            stale = _stale_checkpoints(store, included)
            archive.add(store / included, included, filter=lambda entry, stale=stale: (
                None if stale.intersection(map(str, [PurePosixPath(entry.name), *PurePosixPath(entry.name).parents])) else entry))
        manifest = Path(folder) / MANIFEST
        manifest.write_text(json.dumps({"root": str(store), "databases": databases, "included": list(include)}))
        archive.add(manifest, MANIFEST)


def _stale_checkpoints(store: Path, included: str) -> set[str]:
    """Archive names of the Tune checkpoints a resume never reads: those of the trials Tune's latest
    experiment state records as ended. A running trial keeps them all: the state may name a checkpoint
    older than the newest on disk (it is saved every few seconds), and a resume loads that one."""
    folder = store / included
    ended = set()
    for experiment in {state.parent for state in folder.rglob("experiment_state-*.json")}:
        latest = max(experiment.glob("experiment_state-*.json"), key=lambda state: state.stat().st_mtime)
        trials = [json.loads(trial) for trial, _ in json.loads(latest.read_text())["trial_data"]]
        ended |= {f"{experiment}/train_trial_{trial['trial_id']}_" for trial in trials if trial["status"] == "TERMINATED"}
    return {str(PurePosixPath(included) / checkpoint.relative_to(folder)) for checkpoint in folder.rglob("checkpoint_*")
            if checkpoint.is_dir() and any(str(checkpoint.parent).startswith(prefix) for prefix in ended)}


def restore(archive_path: Path, into: Path) -> None:
    """Unpack into a folder that holds none of the archive's entries (a new one, or a fresh clone) and
    point every stored path at it."""
    into = into.resolve()
    with tarfile.open(archive_path) as archive:
        present = [member.name for member in archive.getmembers() if not member.isdir() and (into / member.name).exists()]
        if present:
            _bad_input(f"--into {into}: already holds {present[0]}; restore into a new folder or a fresh clone")
        into.mkdir(parents=True, exist_ok=True)
        archive.extractall(into, filter="data")
    manifest = json.loads((into / MANIFEST).read_text())
    for name in manifest["databases"]:
        _replace_prefix(into / name, manifest["root"], str(into))
    if manifest.get("included") and manifest["root"] != str(into):
        print(f"note: --resume needs the sweep's own folder {manifest['root']} (Tune's state names it); "
              f"restored into {into}, this store serves reports only", file=sys.stderr)


def _bad_input(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _replace_prefix(database: Path, old: str, new: str) -> None:
    with sqlite3.connect(database) as connection:
        tables = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        for table in tables:
            for column in connection.execute(f'PRAGMA table_info("{table}")').fetchall():
                name, kind = column[1], (column[2] or "").upper()
                if any(text in kind for text in ("CHAR", "TEXT", "CLOB")):
                    connection.execute(f'UPDATE "{table}" SET "{name}" = REPLACE("{name}", ?, ?) '
                                       f'WHERE "{name}" LIKE ?', (old, new, f"%{old}%"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    packing = verbs.add_parser("pack", help="archive a store folder")
    packing.add_argument("store", type=Path)
    packing.add_argument("--out", type=Path, required=True)
    packing.add_argument("--include", action="append", default=[], metavar="FOLDER",
                         help="a folder of the store to pack as it is (repeatable): ray_results and the queue's "
                              "benchmarks/results/search_queue make an interrupted sweep resumable elsewhere")
    restoring = verbs.add_parser("restore", help="unpack an archive into a new folder")
    restoring.add_argument("archive", type=Path)
    restoring.add_argument("--into", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.verb == "pack":
        pack(args.store, args.out, tuple(args.include))
        print(f"{args.out}: {args.out.stat().st_size / 1e6:.1f} MB")
    else:
        restore(args.archive, args.into)
        print(f"restored into {args.into.resolve()}: --tracking-uri sqlite:///{args.into.resolve()}/<its tracking .db>")


if __name__ == "__main__":
    main(sys.argv[1:])
