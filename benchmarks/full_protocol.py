"""The full evaluation protocol (ConvNet-128, 300 classifier epochs, 3 classifiers per set) of the
configurations the CPU searches selected (issue 20, point 5): tuned Expansive Synthesis with the
baselines its trial trains beside it (classic augmentation at the same size, classic augmentation
alone, the repeated few-shot set, the real images), tuned DM, tuned Koopcon and a random real subset,
on the confirmation seeds 1, 2, 3. Nothing is selected here: the configurations come from
``benchmarks/results/search_<method>.json`` and every number is a test-set report.

Meant for a GPU: each (configuration, seed) is one ``raysynth run`` process, each on one CPU thread,
all at once on the one GPU (on an H200: about 4 minutes for DM, Koopcon and the random subset, over 8
for the expansive runs, which train 15 classifiers each).

    python benchmarks/full_protocol.py run --out /tmp/full_protocol             # on the GPU machine
    python benchmarks/full_protocol.py run --out /tmp/full_protocol --configurations expansive_tuned
                                                                                # again into the same folder:
                                                                                # the earlier runs are kept
    python benchmarks/full_protocol.py summarize /tmp/full_protocol \\
        --json benchmarks/results/full_protocol_gpu.json                          # anywhere, afterwards

``run --device cpu --seeds 1 --set evaluation.epochs=2 --set evaluation.probe_every=1 --set
tune.scheduler.grace_period=1`` is the same path at a tiny budget. Ray and MLflow are not needed:
``raysynth run`` is the trial without them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from raysynth.spec.schema import EvaluationSpec
from raysynth.stats import holm, paired_difference, summarize, t_interval

ROOT = Path(__file__).resolve().parent.parent
SEEDS = (1, 2, 3)
# the protocol's own defaults (the reference ConvNet-128, 300 epochs, 3 classifiers), which the CPU spaces lower
FULL_PROTOCOL = {f"evaluation.{key}": EvaluationSpec.model_fields[key].default for key in ("width", "epochs", "num_eval")}
# name -> (the CPU search space, its ablation step or None for the base configuration, the search whose
# selected parameters it takes or None)
CONFIGURATIONS = {
    "expansive_tuned": ("search_spaces/cpu/expansive.yaml", None, "expansive"),
    "dm_tuned": ("search_spaces/cpu/dm.yaml", None, "dm"),
    "koopcon_tuned": ("search_spaces/cpu/koopcon.yaml", None, "koopcon"),
    "random_subset": ("search_spaces/cpu/dm.yaml", "random_subset", None),
}
# (label, candidate configuration, its metric, reference configuration, its metric): paired over seeds
COMPARISONS = [
    ("expansive − classic augmentation ×10", "expansive_tuned", "accuracy", "expansive_tuned", "classic_accuracy"),
    ("expansive − classic augmentation alone", "expansive_tuned", "accuracy", "expansive_tuned", "classic_alone_accuracy"),
    ("expansive − the few-shot set repeated", "expansive_tuned", "accuracy", "expansive_tuned", "repeated_accuracy"),
    ("expansive − the 10 real images", "expansive_tuned", "accuracy", "expansive_tuned", "baseline_accuracy"),
    ("DM − a random real subset", "dm_tuned", "accuracy", "random_subset", "accuracy"),
    ("DM − its \"real only\" random subset", "dm_tuned", "accuracy", "dm_tuned", "baseline_accuracy"),
    ("Koopcon − a random real subset", "koopcon_tuned", "accuracy", "random_subset", "accuracy"),
    ("Koopcon − DM", "koopcon_tuned", "accuracy", "dm_tuned", "accuracy"),
]
# the CPU budget's confirmation of the same configuration, for "what the full protocol changes"
CPU_BUDGET = {"expansive_tuned": "expansive", "dm_tuned": "dm", "koopcon_tuned": "koopcon"}


def selected_params(search: str | None) -> dict[str, str]:
    if search is None:
        return {}
    summary = json.loads((ROOT / "benchmarks" / "results" / f"search_{search}.json").read_text())
    return {f"params.{key}": value for key, value in summary["selected"]["params"].items()}


def command(name: str, seed: int, device: str, overrides: list[str], out: Path) -> list[str]:
    space, step, search = CONFIGURATIONS[name]
    settings = {**selected_params(search), **FULL_PROTOCOL, "seeds": f"[{seed}]", "device": device}
    argv = [sys.executable, "-m", "raysynth.cli", "run", str(ROOT / space), "--out", str(out)]
    if step:
        argv += ["--step", step]
    for key, value in settings.items():
        argv += ["--set", f"{key}={'null' if value is None else value}"]
    for assignment in overrides:
        argv += ["--set", assignment]
    return argv


def environment() -> dict:
    import torch

    return {"torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"}


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    # a folder run into again (e.g. only the configurations a time limit cut) keeps its earlier runs
    earlier = json.loads(manifest_path.read_text())["runs"] if manifest_path.exists() else {}
    manifest = {"environment": environment(), "protocol": FULL_PROTOCOL, "overrides": args.set,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": earlier}
    jobs = [(name, seed) for name in args.configurations for seed in args.seeds]
    lock = threading.Lock()

    def one(job: tuple[str, int]) -> None:
        name, seed = job
        folder = out / f"{name}_seed{seed}"
        folder.mkdir(exist_ok=True)
        argv = command(name, seed, args.device, args.set, folder)
        start = time.time()
        with open(folder / "log.txt", "w") as log:
            code = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        with lock:  # after each run: a timeout keeps the finished ones
            manifest["runs"][f"{name}_seed{seed}"] = {"configuration": name, "seed": seed, "exit": code,
                                                      "wall_s": round(time.time() - start, 1), "argv": argv[2:]}
            manifest_path.write_text(json.dumps(manifest, indent=2))
        print(f"{name} seed {seed}: exit {code} after {time.time() - start:.0f} s", flush=True)

    print(f"{len(jobs)} runs, {args.jobs} at once, on {manifest['environment']['device_name']}", flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, jobs))
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return 0 if all(r["exit"] == 0 for r in manifest["runs"].values()) else 1


EVALUATION_LINE = re.compile(r"^\[eval (\w+)\] classifier (\d+)/(\d+): test ([\d.]+) %")


def accuracies_from_log(log: Path) -> dict[str, float]:
    """The test accuracies a run's log shows for each training set whose classifiers all finished: the
    mean over its classifiers, as its metrics file would hold (``accuracy``, ``baseline_accuracy``, ...)."""
    runs: dict[str, dict[int, float]] = {}
    expected: dict[str, int] = {}
    for line in log.read_text().splitlines():
        match = EVALUATION_LINE.match(line)
        if match:
            name, index, total, test = match.group(1), int(match.group(2)), int(match.group(3)), float(match.group(4))
            runs.setdefault(name, {})[index] = test
            expected[name] = total
    return {("accuracy" if name == "accuracy" else f"{name}_accuracy"): sum(tests.values()) / len(tests)
            for name, tests in runs.items() if len(tests) == expected[name]}


def per_seed(out: Path) -> tuple[dict[str, dict[int, dict[str, float]]], list[str]]:
    """configuration -> seed -> the metrics its ``raysynth run`` wrote, and the runs whose figures come
    from their log instead (a run stopped after its last classifier but before it wrote its metrics)."""
    found: dict[str, dict[int, dict[str, float]]] = {}
    from_log = []
    for name in CONFIGURATIONS:
        for folder in sorted(out.glob(f"{name}_seed*")):
            seed = int(folder.name.removeprefix(f"{name}_seed"))
            path = folder / f"metrics_seed{seed}.json"
            if path.exists():
                found.setdefault(name, {})[seed] = json.loads(path.read_text())
            elif (folder / "log.txt").exists() and (metrics := accuracies_from_log(folder / "log.txt")):
                found.setdefault(name, {})[seed] = metrics
                from_log.append(folder.name)
    return found, from_log


def interval(values: list[float]) -> dict:
    summary, (low, high) = summarize(values), t_interval(values)
    return {"n": summary.n, "mean": summary.mean, "std": summary.std, "ci95": [low, high]}


def summarize_runs(args) -> int:
    out = Path(args.out)
    manifest = json.loads((out / "manifest.json").read_text())
    metrics, from_log = per_seed(out)
    rows = {}
    for name, seeds in metrics.items():
        keys = sorted({k for m in seeds.values() for k in m
                       if (k.endswith("accuracy") and not k.startswith("val_")) or k == "fid"})
        rows[name] = {key: {"per_seed": {s: m[key] for s, m in sorted(seeds.items()) if key in m},
                            **interval([m[key] for m in seeds.values() if key in m])} for key in keys}
    comparisons = []
    for label, candidate, metric, reference, reference_metric in COMPARISONS:
        a = {s: m[metric] for s, m in metrics.get(candidate, {}).items() if metric in m}
        b = {s: m[reference_metric] for s, m in metrics.get(reference, {}).items() if reference_metric in m}
        comparisons.append((label, paired_difference(a, b)))
    for name, search in CPU_BUDGET.items():
        cpu = {int(s): v for s, v in json.loads((ROOT / "benchmarks" / "results" / f"search_{search}.json").read_text())
               ["confirmation"]["test_accuracy_per_seed"].items()}
        full = {s: m["accuracy"] for s, m in metrics.get(name, {}).items() if "accuracy" in m}
        comparisons.append((f"{name}: full protocol − CPU budget (ConvNet-64, 100 epochs, 1 classifier)",
                            paired_difference(full, cpu)))
    adjusted = holm([d.p_t if d else math.nan for _, d in comparisons])
    result = {
        "command": "python benchmarks/full_protocol.py run --out DIR (then summarize DIR)",
        "environment": manifest["environment"], "protocol": manifest["protocol"], "overrides": manifest["overrides"],
        "wall_s": {key: run["wall_s"] for key, run in sorted(manifest["runs"].items())},
        "unfinished": sorted(key for key, run in manifest["runs"].items() if run["exit"] != 0)
                      + sorted(f"{name}_seed{seed}" for name in CONFIGURATIONS for seed in SEEDS
                               if f"{name}_seed{seed}" not in manifest["runs"]),
        "figures_from_log": from_log,
        "configurations": {name: {"space": CONFIGURATIONS[name][0], "step": CONFIGURATIONS[name][1],
                                  "params": selected_params(CONFIGURATIONS[name][2])} for name in CONFIGURATIONS},
        "rows": rows,
        "comparisons": [{"label": label, "seeds": list(d.seeds), "mean": d.mean, "ci95": [d.low, d.high], "p_t": d.p_t,
                         "p_t_holm": p} if d else {"label": label, "missing": True}
                        for (label, d), p in zip(comparisons, adjusted)],
    }
    text = json.dumps(result, indent=2, default=float)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    lines = ["| configuration | set | test accuracy (%) per seed | mean [95 % CI] |", "|---|---|---|---|"]
    for name, row in result["rows"].items():
        for key, cell in row.items():
            if key == "fid":
                continue
            seeds = " / ".join(f"{v:.2f}" for v in cell["per_seed"].values())
            low, high = cell["ci95"]
            lines.append(f"| {name} | {key} | {seeds} | {cell['mean']:.2f} [{low:.2f}, {high:.2f}] |")
    lines += ["", "| comparison (paired over seeds) | Δ [95 % CI] | p (t) | p (Holm) |", "|---|---|---|---|"]
    for c in result["comparisons"]:
        if c.get("missing"):
            lines.append(f"| {c['label']} | – | – | – |")
            continue
        lines.append(f"| {c['label']} | {c['mean']:+.2f} [{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}] | "
                     f"{c['p_t']:.3f} | {c['p_t_holm']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    go = verbs.add_parser("run", help="run every configuration on every seed, all at once")
    go.add_argument("--out", required=True)
    go.add_argument("--device", default="cuda")
    go.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    go.add_argument("--configurations", nargs="+", default=list(CONFIGURATIONS), choices=list(CONFIGURATIONS))
    go.add_argument("--jobs", type=int, default=len(CONFIGURATIONS) * len(SEEDS))
    go.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a further override for every run (e.g. a tiny budget to try the path)")
    done = verbs.add_parser("summarize", help="per-seed table, intervals and paired differences from a run's folder")
    done.add_argument("out")
    done.add_argument("--json")
    args = parser.parse_args()
    sys.exit(run(args) if args.verb == "run" else summarize_runs(args))


if __name__ == "__main__":
    main()
