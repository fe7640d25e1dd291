"""Which EIEG configurations exceed float32 Adam's range (issue 20's EIEG search): for each EIEG trial
of a sweep's MLflow store, and for EIEG's defaults and feature-mean matching (the GAN table's rows),
its GAN is trained on one class (Fashion-MNIST class 0, the 10 images of data seed 0) for the trial's
generator steps, and the largest gradient in the paper's units is recorded. Before commit 17a9eaf a
gradient above 1.8e19 squared to inf in Adam's float32 second moment and froze its weight without an
error; since then the networks train on a scaled loss that holds gradients up to about 1.3e30, and a
larger one stops the fit.

    python benchmarks/eieg_adam_range.py --tracking-uri sqlite:///PATH/mlflow.db [--experiment search_eieg]
    # -> benchmarks/results/eieg_adam_range.json (about 1 min per trial on one core)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from raysynth.data import load_dataset, make_split
from raysynth.errors import NonFiniteLossError
from raysynth.methods import METHODS
from raysynth.nets.gan import EIE_LOSS_SCALE, largest_adam_gradient, train_gan
from raysynth.spec.overrides import apply_overrides

UNSCALED_LIMIT = largest_adam_gradient(torch.float32)  # the largest gradient float32 Adam could square before the scale
SCALED_LIMIT = UNSCALED_LIMIT / EIE_LOSS_SCALE


def eieg_trials(tracking_uri: str, experiment: str) -> list[dict]:
    """The EIEG trial runs of ``experiment`` (searched trials and grid steps): their ids, the method's
    parameters as logged (``params.*``) and their generator steps; one run per configuration (the
    confirmation repeats the selected one on other data seeds, and these probes use seed 0's data)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], "tags.`raysynth.kind` = 'trial'", max_results=1000,
                              order_by=["attributes.start_time ASC"])
    trials = {}
    for run in runs:
        if run.data.params.get("params.eie.cutoff") is None:
            continue
        trial = {"trial": run.data.tags.get("trial_id"), "step": run.data.tags.get("ablation_step"), "status": run.info.status,
                 "params": apply_overrides({}, {key.removeprefix("params."): value for key, value in run.data.params.items()
                                                if key.startswith("params.")}),
                 "steps": int(run.data.params["budget.epochs"])}
        trials.setdefault(json.dumps([trial["params"], trial["steps"]], sort_keys=True), trial)
    return list(trials.values())


def reference_runs(steps: int = 200) -> list[dict]:
    """The rows of docs/results.md's GAN table: EIEG's defaults (the literal reading) and feature-mean
    matching (feature scale 0.001), width 32 and 200 generator steps as there."""
    return [{"trial": name, "step": "reference", "status": "-", "params": {"width": 32, **overrides}, "steps": steps}
            for name, overrides in {"literal default": {}, "mean matching": {"eie": {"feature_scale": 0.001}}}.items()]


def class_gan(method, real: torch.Tensor) -> tuple[nn.Module, nn.Module, dict]:
    """``method``'s G and D for ``real`` (one class), seeded, and the rest of ``train_gan``'s arguments."""
    torch.manual_seed(0)
    params, dtype = method.params, method.network_dtype()
    real = real.to(dtype)
    generator, discriminator = method.networks(1, real.shape[-1])
    stream = torch.Generator().manual_seed(0)
    return generator, discriminator, {
        "real_batch": lambda n: real[torch.randint(len(real), (n,), generator=stream)],
        "noise": lambda n: torch.randn(n, params.noise_dim, generator=stream).to(dtype),
        "settings": method.settings()}


def largest_gradient(real: torch.Tensor, method, steps: int) -> dict:
    """The largest gradient (paper's units) over ``steps`` generator steps on ``real``; where it stops."""
    generator, discriminator, train_arguments = class_gan(method, real)
    largest = [0.0]

    def watched(step):
        def wrapper(*args, **kwargs):
            grads = [p.grad for group in step.__self__.param_groups for p in group["params"] if p.grad is not None]
            largest[0] = max(largest[0], float(torch.stack([g.abs().max() for g in grads]).max()) / EIE_LOSS_SCALE)
            return step(*args, **kwargs)
        return wrapper

    def loop(steps, **state):
        for name in ("g_optimizer", "d_optimizer"):
            state[name].step = watched(state[name].step)
        return range(1, steps + 1)

    stopped = None
    try:
        train_gan(generator, discriminator, steps=steps, loop=loop, **train_arguments)
    except NonFiniteLossError as error:
        stopped = str(error)
    return {"largest_gradient": largest[0], "froze_before_the_fix": largest[0] > UNSCALED_LIMIT or stopped is not None,
            "stops_now": stopped}


def probe_trials(description: str, out_name: str, probe: Callable[[torch.Tensor, object, int], dict], *,
                 skip: Callable[[dict], bool] = lambda trial: False, **header) -> None:
    """The command line of an EIEG trial probe: ``probe(real, method, steps)`` for the references and each
    EIEG trial of a store (but those ``skip`` names) on class 0 of data seed 0, one JSON of the results."""
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", default="search_eieg")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / out_name)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("fashion-mnist", data_root=None, cache_dir=Path.home() / ".cache" / "raysynth", allow_download=False)
    images, labels = make_split(data, 10, seed=0).fewshot
    real = data.denormalize(images[labels == 0]) * 2 - 1  # the generator's tanh range
    results = []
    eieg = METHODS.get("eieg")
    for trial in reference_runs() + eieg_trials(args.tracking_uri, args.experiment):
        if skip(trial):
            continue
        method = eieg(eieg.Params.model_validate(trial["params"]))
        results.append({**{k: trial[k] for k in ("trial", "step", "status")}, "feature_dim": method.params.feature_dim,
                        "cutoff": method.params.eie.cutoff, "feature_scale": method.params.eie.feature_scale,
                        **probe(real, method, trial["steps"])})
        print(json.dumps(results[-1]), flush=True)
    args.out.write_text(json.dumps({"class": 0, "data_seed": 0, **header, "trials": results}, indent=2))


def main() -> None:
    probe_trials(__doc__, "eieg_adam_range.json", largest_gradient, unscaled_limit=UNSCALED_LIMIT, scaled_limit=SCALED_LIMIT)


if __name__ == "__main__":
    main()
