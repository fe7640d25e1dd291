"""Every registered method, on real digits, with a tiny budget: the contract holds."""

import re

import pytest
import torch

from raysynth.data import make_split
from raysynth.methods import METHODS, FitContext
from raysynth.methods.classic_augmentation import classic_expand
from raysynth.runner import check_synthetic


@pytest.mark.parametrize("name", METHODS.names())
def test_method_fit_returns_a_valid_synthetic_set(name, digits):
    split = make_split(digits, 5, seed=0)
    cls = METHODS.get(name)
    method = cls(cls.Params.model_validate(cls.smoke_params))  # a method declares what makes its fit take seconds
    reports = []
    synthetic = method.fit(split, FitContext(epochs=1, device=torch.device("cpu"), seed=0), lambda step, **m: reports.append(m))
    check_synthetic(synthetic, split, name)  # raises on a broken contract
    classes = set(synthetic.labels.tolist())
    assert classes == set(range(10)) if METHODS.get(name).labels_given else classes <= set(range(10))


def test_classic_augmentation_grows_the_set_without_copies(digits):
    split = make_split(digits, 4, seed=0)
    images, labels = classic_expand(split, expansion_ratio=5, seed=0)
    real = split.fewshot[0]
    identical = (images.unsqueeze(1) - real.unsqueeze(0)).flatten(2).abs().amax(-1).min(dim=1).values < 1e-6
    assert len(images) == 4 * 40 and torch.bincount(labels).tolist() == [16] * 10 and not identical.any()


def test_a_non_finite_loss_fails_the_trial():
    from raysynth.errors import NonFiniteLossError
    from raysynth.runner import MethodReporter

    class Observer:
        def on_progress(self, seed, step, metrics):
            pass

    report = MethodReporter("m", 0, Observer(), lambda message: None, lambda: 1)
    report(1, loss=0.5)
    with pytest.raises(NonFiniteLossError, match="epoch 2"):
        report(2, loss=float("nan"))


def _fit(name: str, split, seed: int = 0):
    cls = METHODS.get(name)
    method = cls(cls.Params.model_validate(cls.smoke_params))
    return method.fit(split, FitContext(epochs=1, device=torch.device("cpu"), seed=seed), lambda step, **m: None)


@pytest.mark.parametrize("name", METHODS.names())
def test_a_fit_resumed_from_its_first_checkpoint_matches_an_uninterrupted_one(name, digits):
    import copy

    from raysynth.checkpointing import Checkpointer, MethodCheckpoint

    cls = METHODS.get(name)
    split = make_split(digits, 3, seed=0)
    params = cls.Params.model_validate(cls.smoke_params)
    saved = []
    every_epoch = Checkpointer(save=lambda state: saved.append(copy.deepcopy(state.method[0])), interval_s=0)
    whole = cls(params).fit(split, FitContext(epochs=2, device=torch.device("cpu"), seed=0,
                                              checkpoint=MethodCheckpoint(every_epoch, 0)), lambda step, **m: None)
    if cls.epoch_counts.startswith("nothing"):  # a method without training epochs has nothing to resume
        assert not saved
        return
    restarted = Checkpointer(interval_s=3600)
    restarted.state.method[0] = saved[0]  # as if the trial had been lost after its first checkpoint
    resumed = cls(params).fit(split, FitContext(epochs=2, device=torch.device("cpu"), seed=0,
                                                checkpoint=MethodCheckpoint(restarted, 0)), lambda step, **m: None)
    assert torch.equal(whole.images, resumed.images) and torch.equal(whole.labels, resumed.labels)


def test_no_method_reads_the_training_set_around_the_split():
    """The split's validation images are no method's: a method reads the split (fewshot, remainder,
    available, random_subset), never its dataset's whole training arrays."""
    import inspect

    readers = [name for name in METHODS.names()
               if re.search(r"dataset\.train_(images|labels)", inspect.getsource(inspect.getmodule(METHODS.get(name))))]
    assert readers == []


@pytest.mark.parametrize("name", METHODS.names())
def test_the_same_seed_gives_the_identical_synthetic_set(name, digits):
    split = make_split(digits, 3, seed=0)
    first, second = _fit(name, split), _fit(name, split)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)


@pytest.mark.parametrize("name", METHODS.names())
def test_a_cold_and_a_warm_cache_give_the_identical_synthetic_set(name, digits, tmp_path):
    """A pretrained network trained here (cold) or read from the cache (warm) must start every other
    module the same way: results may not depend on what ran on the machine before."""
    cls = METHODS.get(name)
    split = make_split(digits, 3, seed=0)

    def fit():
        context = FitContext(epochs=1, device=torch.device("cpu"), seed=0, cache_dir=tmp_path)
        return cls(cls.Params.model_validate(cls.smoke_params)).fit(split, context, lambda step, **m: None)

    cold, warm = fit(), fit()
    assert torch.equal(cold.images, warm.images) and torch.equal(cold.labels, warm.labels)


@pytest.mark.parametrize("name", METHODS.names())
def test_a_method_leaves_the_global_random_state_alone(name, digits):
    import numpy as np

    split = make_split(digits, 3, seed=0)
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    _fit(name, split)
    assert torch.equal(torch.random.get_rng_state(), torch_state) and np.array_equal(np.random.get_state()[1], numpy_state)


def _fields(model, prefix=""):
    for name, field in model.model_fields.items():
        nested = [a for a in getattr(field.annotation, "__args__", (field.annotation,)) if hasattr(a, "model_fields")]
        if nested:
            yield from _fields(nested[0], f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


@pytest.mark.parametrize("name", METHODS.names())
def test_every_parameter_is_documented_and_bounded(name):
    import annotated_types

    undocumented = [key for key, field in _fields(METHODS.get(name).Params) if not field.description]
    unbounded = [key for key, field in _fields(METHODS.get(name).Params)
                 if set(getattr(field.annotation, "__args__", (field.annotation,))) & {int, float}
                 and not any(isinstance(m, (annotated_types.Le, annotated_types.Lt)) for m in field.metadata)]
    assert not undocumented and not unbounded, (undocumented, unbounded)
