"""The schema: every bad input is one line naming the key, exit status 2, and nothing started."""

from pathlib import Path

import optuna
import pytest
import yaml

from conftest import REPO
from raysynth.errors import SpecError
from raysynth.spec import Distribution, build_spec, load_spec, parse_set
from raysynth.tuning.search import DefineByRun, RaysynthOptunaSearch

BASE = {"experiment": "t", "method": "classic_augmentation", "dataset": {"name": "digits"}}


def write(tmp_path: Path, data, text: str | None = None) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(data))
    return path


def sweep_fails_cleanly(tmp_path: Path, path: Path, *sets: str) -> str:
    """`raysynth sweep` in-process on bad input: exit 2, one line, and no store or Ray state created."""
    import contextlib
    import io
    import os

    from raysynth.cli import main

    stderr, cwd = io.StringIO(), os.getcwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stderr(stderr):
            code = main(["sweep", str(path)] + [a for s in sets for a in ("--set", s)])
    finally:
        os.chdir(cwd)
    started = [p.name for p in tmp_path.iterdir() if p.name in ("mlflow.db", "optuna.db", "ray_results", "mlartifacts")]
    assert code == 2 and len(stderr.getvalue().strip().splitlines()) == 1 and not started, stderr.getvalue()
    return stderr.getvalue()


def test_unknown_key_suggests_the_nearest(tmp_path):
    stderr = sweep_fails_cleanly(tmp_path, write(tmp_path, {**BASE, "evaluation": {"epoch": 2}}))
    assert "`evaluation.epoch`" in stderr and "did you mean `evaluation.epochs`" in stderr


def test_wrong_type_names_the_key(tmp_path):
    stderr = sweep_fails_cleanly(tmp_path, write(tmp_path, BASE), "evaluation.epochs=many")
    assert "`evaluation.epochs`" in stderr and "'many'" in stderr


def test_low_above_high_is_refused(tmp_path):
    stderr = sweep_fails_cleanly(tmp_path, write(tmp_path, {**BASE, "search": {"expansion_ratio": {"int": [9, 3]}}}))
    assert "`search.expansion_ratio" in stderr and "lo <= hi" in stderr


def test_unknown_method_suggests_the_nearest(tmp_path):
    stderr = sweep_fails_cleanly(tmp_path, write(tmp_path, {**BASE, "method": "classic_augmentaton"}))
    assert "`method`" in stderr and "did you mean `classic_augmentation`" in stderr


def test_unsafe_yaml_tag_is_refused(tmp_path):
    text = "experiment: !!python/object/apply:os.system ['touch pwned']\nmethod: real\n"
    stderr = sweep_fails_cleanly(tmp_path, write(tmp_path, None, text))
    assert "unsafe YAML tag" in stderr and not (tmp_path / "pwned").exists()


def test_search_value_outside_the_parameter_range_is_refused():
    with pytest.raises(SpecError, match=r"search.expansion_ratio.*value 1"):
        build_spec({**BASE, "search": {"expansion_ratio": {"int": [1, 4]}}})


def test_set_coerces_values():
    assert parse_set(["seeds=[0, 1]", "evaluation.lr=1e-3", "dataset.name=digits"]) == {
        "seeds": [0, 1], "evaluation.lr": 1e-3, "dataset.name": "digits"}


@pytest.mark.parametrize("path", sorted((REPO / "search_spaces").rglob("*.yaml")),
                         ids=lambda p: str(p.relative_to(REPO / "search_spaces")))  # cpu/ too: the benchmark searches
def test_every_shipped_space_validates(path, tmp_path):
    spec = load_spec(path, environ={}, cwd=tmp_path)
    assert spec.experiment


def test_conditional_parameter_is_sampled_only_when_its_condition_holds():
    search = {
        "attention.variant": Distribution(choice=["none", "spatial", "mhsa"]),
        "attention.heads": Distribution(int=(2, 8), when={"attention.variant": ["mhsa"]}),
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    define = DefineByRun(search)
    seen = []
    for _ in range(30):
        trial = study.ask()
        define(trial)
        seen.append(trial.params)
        study.tell(trial, 0.0)
    assert all(("attention.heads" in p) == (p["attention.variant"] == "mhsa") for p in seen) and \
        {p["attention.variant"] for p in seen} == {"none", "spatial", "mhsa"}


def test_a_param_of_another_methods_step_points_to_the_step():
    data = {**BASE, "params": {"lr_img": 2.0}, "ablation": [{"name": "dm_10", "method": "dm"}]}
    with pytest.raises(SpecError, match=r"`params.lr_img`: unknown key.*steps dm_10 run another method"):
        build_spec(data)


def test_condition_on_a_fixed_parameter():
    search = {"heads": Distribution(int=(2, 8), when={"variant": ["mhsa"]})}
    trial = optuna.create_study().ask()
    DefineByRun(search, {"variant": "none"})(trial)
    assert trial.params == {}


def test_only_keeps_the_named_ladder_steps_and_refuses_unknown_ones():
    from raysynth.spec import only_steps

    spec = load_spec(REPO / "search_spaces/ablation_expansive.yaml")
    kept = [step.name for step in only_steps(spec, ["mhsa_egm", "real_10"]).ablation]
    with pytest.raises(SpecError, match="did you mean `mhsa`"):
        only_steps(spec, ["mhs"])
    assert kept == ["real_10", "mhsa_egm"]  # in the file's order


def validate_fails(tmp_path: Path, path: Path, *sets: str) -> str:
    """`raysynth validate` in-process: exit 2 and one stderr line."""
    import contextlib
    import io

    from raysynth.cli import main

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = main(["validate", str(path)] + [a for s in sets for a in ("--set", s)])
    assert code == 2 and len(stderr.getvalue().strip().splitlines()) == 1, stderr.getvalue()
    return stderr.getvalue()


def test_selecting_on_a_test_metric_is_refused_with_the_validation_metric_to_use(tmp_path):
    stderr = validate_fails(tmp_path, REPO / "search_spaces/quickstart.yaml", "tune.metric=accuracy")
    assert "`tune.metric`" in stderr and "use `val_accuracy`" in stderr


def test_select_on_test_is_the_explicit_exception():
    spec = build_spec({**BASE, "tune": {"metric": "accuracy", "select_on_test": True}})
    assert spec.tune.metrics == ["accuracy"]


def test_a_split_larger_than_the_smallest_class_is_refused_before_anything_starts(tmp_path):
    stderr = validate_fails(tmp_path, write(tmp_path, BASE), "dataset.images_per_class=100")
    assert "`dataset.images_per_class`" in stderr and "122" in stderr and "100 few-shot + 50 validation" in stderr


def test_a_search_needs_validation_images():
    with pytest.raises(SpecError, match=r"dataset.validation_per_class.*searches"):
        build_spec({**BASE, "dataset": {"name": "digits", "validation_per_class": 0},
                    "search": {"expansion_ratio": {"int": [2, 4]}}})


def test_confirmation_seeds_must_be_new():
    with pytest.raises(SpecError, match=r"tune.confirm_seeds.*\[1\]"):
        build_spec({**BASE, "seeds": [0, 1], "tune": {"confirm_seeds": [1, 2]}})


@pytest.mark.parametrize("space, sets, key", [
    ("quickstart.yaml", ["dataset.images_per_class=150"], "`dataset.images_per_class`"),
    ("koopcon.yaml", ["dataset.name=digits", "params.attention.patch=3"], "`params.attention.patch`"),
    ("learned_augmentation.yaml", ["evaluation.epochs=5"], "`tune.scheduler.grace_period`"),
    ("expansive.yaml", ["evaluation.probe_every=500"], "`evaluation.probe_every`"),
])
def test_dataset_and_schedule_constraints_fail_before_anything_starts(tmp_path, space, sets, key):
    stderr = validate_fails(tmp_path, REPO / "search_spaces" / space, *sets)
    assert key in stderr and "use " in stderr


def test_a_condensed_set_must_fit_outside_the_validation_images():
    with pytest.raises(SpecError, match=r"params.images_per_class.*use at most 72"):
        build_spec({**BASE, "method": "random_subset", "params": {"images_per_class": 80}})


def test_a_broken_plugin_is_one_line_naming_it(tmp_path):
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    stderr = validate_fails(tmp_path, write(tmp_path, {**BASE, "plugins": ["broken.py"]}))
    assert "`plugins[0]`" in stderr and "no_such_module_here" in stderr


def test_a_missing_plugin_file_is_refused(tmp_path):
    stderr = validate_fails(tmp_path, write(tmp_path, {**BASE, "plugins": ["elsewhere/missing.py"]}))
    assert "`plugins[0]`" in stderr and "does not exist" in stderr


def test_a_plugin_registers_a_method_the_space_can_name():
    spec = load_spec(REPO / "examples/noisy_copy.yaml")
    assert spec.method == "noisy_copy" and spec.params.copies == 4


def test_a_trial_asha_stops_enters_the_study_with_its_validation_probes():
    import optuna
    from ray.tune.result import TRAINING_ITERATION

    from raysynth.metrics import PROBE_METRIC

    storage = optuna.storages.InMemoryStorage()
    searcher = RaysynthOptunaSearch(space={"x": optuna.distributions.FloatDistribution(0, 1)}, metric="val_accuracy",
                                    mode="max", study_name="s", storage=storage)
    searcher.suggest("stopped")
    searcher.on_trial_result("stopped", {"train/loss": 1.0, TRAINING_ITERATION: 1})  # not the objective: ignored
    searcher.on_trial_result("stopped", {PROBE_METRIC: 61.5, TRAINING_ITERATION: 2})
    searcher.on_trial_complete("stopped", {PROBE_METRIC: 61.5, TRAINING_ITERATION: 2})  # stopped: no val_accuracy
    trial = optuna.load_study(study_name="s", storage=storage).trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values == {2: 61.5}
