"""Failures that must be loud: errors that survive Ray's serialization, a diverging classifier."""

import pickle

import pytest
import torch

import raysynth.errors as errors
from conftest import REPO
from raysynth.data import make_split
from raysynth.evaluation.protocol import train_classifier
from raysynth.spec.schema import EvaluationSpec


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


@pytest.mark.parametrize("cls", [errors.RaysynthError, *_subclasses(errors.RaysynthError)], ids=lambda c: c.__name__)
def test_every_raysynth_error_survives_pickling_with_its_message(cls):
    error = cls("params.fit.lr", "must be finite") if issubclass(cls, errors.SpecError) else cls("the loss is NaN")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls and str(copy) == str(error)


def test_a_diverging_evaluation_classifier_fails_instead_of_scoring_chance(digits):
    split = make_split(digits, 5, seed=0)
    images, labels = split.fewshot
    exploded = images * 1e38  # finite pixels (they pass the output check) that overflow the classifier
    with pytest.raises(errors.NonFiniteLossError, match="non-finite"):
        train_classifier(exploded, labels, num_classes=10, protocol=EvaluationSpec(width=8, epochs=2), seed=0,
                         device=torch.device("cpu"))


class _Payload:
    def __reduce__(self):
        import os

        return os.system, ("touch pwned",)


def test_a_checkpoint_is_read_back_but_one_carrying_a_pickled_object_is_refused(tmp_path, digits):
    from raysynth.checkpointing import STATE_FILE, TrialState

    split = make_split(digits, 2, seed=0)
    snapshots = []
    train_classifier(*split.fewshot, num_classes=10, protocol=EvaluationSpec(width=8, epochs=2), seed=0,
                     device=torch.device("cpu"), on_snapshot=lambda epoch, make: snapshots.append(make()))
    state = TrialState(seeds_done={0: {"accuracy": 50.0}}, evaluations={"k": {"runs": [], "partial": snapshots[0]}},
                       synthetic={1: (torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), {"x": 1.0})}, step=3)
    restored = TrialState.read(state.write(tmp_path / "good").parent)  # optimizer, scheduler and generator states
    torch.save({"seeds_done": _Payload()}, tmp_path / STATE_FILE)
    with pytest.raises(errors.RaysynthError, match="refusing the checkpoint"):
        TrialState.read(tmp_path)
    assert restored.step == 3 and not (tmp_path / "pwned").exists() and not (REPO / "pwned").exists()


def test_a_trial_stopped_by_the_scheduler_closes_its_open_seed_runs(tmp_path):
    from raysynth.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path}/m.db")
    experiment = tracker.experiment_id("e")
    trial = tracker.open_run(experiment, "t", name="trial", kind="trial", tags={})
    seed = tracker.open_run(experiment, "t/0", name="seed 0", kind="seed", tags={}, parent_run_id=trial.info.run_id)
    other = tracker.open_run(experiment, "u/0", name="seed 0", kind="seed", tags={})
    tracker.finish_with_children(experiment, trial.info.run_id, "KILLED")
    status = {run.info.run_id: run.info.status for run in tracker.client.search_runs([experiment])}
    assert (status[trial.info.run_id], status[seed.info.run_id], status[other.info.run_id]) == ("KILLED", "KILLED", "RUNNING")
