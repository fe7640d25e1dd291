"""Bad input, by the classes a fuzzing of the CLI found: every case exits 2 with one stderr line that names
the key, no traceback, and nothing created. In-process through the real entry point (`cli.main`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from raysynth.cli import main

QUICKSTART = str(REPO / "search_spaces/quickstart.yaml")
EXPANSIVE = str(REPO / "search_spaces/expansive.yaml")


def space_file(folder: Path, text: str | bytes, name: str = "space.yaml") -> str:
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def base(**keys) -> str:
    return yaml.safe_dump({"experiment": "t", "method": "classic_augmentation", "dataset": {"name": "digits"}, **keys})


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "experiment: *i\nmethod: real\n"

# (case id, argv builder taking the temporary folder, text the one line must contain)
CASES = [
    # accepted garbage
    ("huge-seed", lambda d: ["validate", QUICKSTART, "--set", "seeds=[18446744073709551616]"], "`seeds.0`"),
    ("huge-width", lambda d: ["validate", QUICKSTART, "--set", "evaluation.width=1000000000"], "`evaluation.width`"),
    ("float-width", lambda d: ["validate", QUICKSTART, "--set", "evaluation.width=1e9"], "`evaluation.width`"),
    ("huge-ratio", lambda d: ["validate", QUICKSTART, "--set", "params.expansion_ratio=1000000000000000000000000000000"],
     "`params.expansion_ratio`"),
    ("inf-cpu", lambda d: ["validate", QUICKSTART, "--set", "tune.resources_per_trial.cpu=.inf"], "`tune.resources_per_trial.cpu`"),
    ("nan-lr", lambda d: ["validate", QUICKSTART, "--set", "evaluation.lr=.nan"], "`evaluation.lr`"),
    ("sampler-seed", lambda d: ["validate", QUICKSTART, "--set", "tune.sampler_seed=4294967296"], "`tune.sampler_seed`"),
    ("fewshot-too-big", lambda d: ["validate", QUICKSTART, "--set", "dataset.images_per_class=150"], "`dataset.images_per_class`"),
    ("subset-too-big", lambda d: ["validate", space_file(d, base(method="random_subset", params={"images_per_class": 500}))],
     "`params.images_per_class`"),
    ("uniform-on-int", lambda d: ["validate", space_file(d, base(search={"expansion_ratio": {"uniform": [2, 8]}}))],
     "use {int: [2, 8]}"),
    ("when-later", lambda d: ["validate", EXPANSIVE, "--set", "search.loss.alpha_re={loguniform: [0.1, 10.0], when: {attention.variant: [mhsa]}}"],
     "`search.loss.alpha_re.when`"),
    ("when-empty", lambda d: ["validate", space_file(d, base(search={"expansion_ratio": {"int": [2, 4], "when": {"x": []}}}))],
     "`search.expansion_ratio`"),
    ("nested-ladder", lambda d: ["validate", space_file(d, base(ablation=[{"name": "a", "set": {"ablation": []}}]))], "`ablation.0`"),
    # tracebacks before
    ("not-utf8", lambda d: ["validate", space_file(d, b"experiment: \xff\xfe\n")], "not UTF-8"),
    ("binary", lambda d: ["validate", space_file(d, bytes(range(256)))], "space.yaml"),
    ("folder", lambda d: ["validate", str(d)], "is a folder"),
    ("dev-null", lambda d: ["validate", "/dev/null"], "not a regular file"),
    ("fifo", lambda d: (os.mkfifo(d / "pipe.yaml"), ["validate", str(d / "pipe.yaml")])[1], "not a regular file"),
    ("name-too-long", lambda d: ["validate", str(d / ("a" * 5000 + ".yaml"))], "cannot be read"),
    ("deep-nesting", lambda d: ["validate", space_file(d, "a: " + "[" * 20000 + "]" * 20000 + "\n")], "nested too deeply"),
    ("uri-list", lambda d: ["validate", QUICKSTART, "--set", "tracking.uri=[1,2]"], "`tracking.uri`"),
    ("cache-under-a-file", lambda d: ["run", QUICKSTART, "--set", f"cache_dir={space_file(d, 'x')}/cache"], "`cache_dir`"),
    # YAML bombs
    ("billion-laughs", lambda d: ["validate", space_file(d, BOMB)], "aliases"),
    # silent reinterpretation
    ("duplicate-key", lambda d: ["validate", space_file(d, base() + "params: {expansion_ratio: 3}\nparams: {expansion_ratio: 4}\n")],
     "duplicate key `params`"),
    ("hex-seed", lambda d: ["validate", space_file(d, base() + "seeds: [0x1F]\n")], "`seeds.0`"),
    ("bool-epochs", lambda d: ["validate", QUICKSTART, "--set", "budget.epochs=true"], "`budget.epochs`"),
    # paths
    ("experiment-path", lambda d: ["validate", QUICKSTART, "--set", "experiment=../../../outside"], "`experiment`"),
    ("experiment-absolute", lambda d: ["validate", QUICKSTART, "--set", "experiment=/tmp/x"], "`experiment`"),
    # messages
    ("unknown-step-key", lambda d: ["validate", space_file(d, base(ablation=[{"name": "a", "paramz": {}}]))], "valid keys here: name"),
    ("mode-union", lambda d: ["validate", QUICKSTART, "--set", "tune.mode=maximum"], "`tune.mode`"),
    ("only-unknown-step", lambda d: ["validate", QUICKSTART, "--only", "classic_x11"], "did you mean `classic_x10`"),
    # checks that came too late
    ("inception-extra", lambda d: ["run", QUICKSTART, "--set", "evaluation.fid=inception"], "`evaluation.fid`"),
    ("cuda-here", lambda d: ["run", QUICKSTART, "--set", "device=cuda"], "`device`"),
    ("test-metric", lambda d: ["sweep", QUICKSTART, "--set", "tune.metric=accuracy"], "`tune.metric`"),
    # a tracking store that cannot be written: one line within a second, not minutes of retries
    ("store-unwritable", lambda d: ["sweep", QUICKSTART, "--set", "tracking.uri=sqlite:////proc/mlflow.db"], "`tracking.uri`"),
    ("store-no-folder", lambda d: ["sweep", QUICKSTART, "--set", f"tracking.uri=sqlite:///{d}/missing/m.db"], "not an existing folder"),
    # read-only verbs never create a store
    ("report-empty", lambda d: ["report", "--experiment", "nope"], "no MLflow store"),
]


@pytest.mark.parametrize("case, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(case, argv, expected, tmp_path, monkeypatch, capsys):
    if case == "cuda-here":
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is visible here")
    if case == "inception-extra":
        import importlib.util

        if importlib.util.find_spec("torch_fidelity") is not None:
            pytest.skip("the inception extra is installed here")
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    args = argv(tmp_path)
    before = set(tmp_path.rglob("*"))
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err and "Traceback" not in err, err[-2000:]
    assert set(tmp_path.rglob("*")) == before, "bad input must create nothing"
