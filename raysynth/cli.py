"""The ``raysynth`` command line: parses arguments and calls library functions, nothing more.

Bad input of any kind exits with status 2 and one line on stderr naming the key and the fix,
before Ray or MLflow start.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from raysynth.errors import RaysynthError, Terminated


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _add_space_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", help="search-space YAML file")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="override a dotted key, e.g. --set evaluation.epochs=2 (repeatable)")


def _add_only_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", default=[], metavar="STEP",
                        help="only this ablation step (repeatable); default: the whole ladder")


def cmd_validate(args) -> int:
    from raysynth.spec import load_spec, only_steps

    spec = only_steps(load_spec(args.space, args.assignments), args.only)
    import yaml

    print(yaml.safe_dump(spec.to_data(), sort_keys=False).rstrip())
    from raysynth.methods import METHODS

    for name, step in spec.steps():
        counts = METHODS.get(step.method).epoch_counts
        label = f"step {name}" if name is not None else "base"
        print(f"# {label}: method {step.method}, params {json.dumps(step.params.to_data('json'))}; budget.epochs={step.budget.epochs} "
              f"counts {counts}")
    sys.stdout.flush()  # the YAML first, then the verdict, also when both go to one pipe
    _log(f"{args.space}: valid ({len(spec.steps())} step(s), {len(spec.seeds)} seed(s))")
    return 0


def _check_device(spec) -> None:
    """`device: cuda` needs a GPU here (for `run` and local sweeps; a cluster's driver may have none)."""
    if spec.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RaysynthError("`device`: cuda, but no CUDA device is visible here; use device: auto (the GPU "
                                "when there is one) or run on a machine with a GPU")


def cmd_run(args) -> int:
    from raysynth.runner import load_spec_dataset, run_trial
    from raysynth.spec import load_spec
    from raysynth.visualize import save_sample_grid

    spec = load_spec(args.space, args.assignments)
    available = dict(spec.steps())
    if args.step is not None:
        if args.step not in available:
            raise RaysynthError(f"`--step {args.step}`: no such ablation step; steps: {', '.join(map(str, available))}")
        spec = available[args.step]
    _check_device(spec)
    import torch

    torch.set_num_threads(max(1, int(spec.tune.resources_per_trial.cpu)))  # as a trial with these resources
    dataset = load_spec_dataset(spec)
    if spec.ablation and args.step is None:
        _log(f"running the base configuration (method {spec.method}); --step NAME runs a ladder step")
    out = Path(args.out) if args.out else None

    class Observer:
        def on_seed_start(self, seed):
            pass

        def on_progress(self, seed, step, metrics):
            pass

        def on_seed_end(self, seed, metrics, synthetic, split):
            if out is not None:
                save_sample_grid(synthetic, split, out / f"samples_seed{seed}.png")
                (out / f"metrics_seed{seed}.json").write_text(json.dumps(metrics, indent=2))

    metrics = run_trial(spec, dataset, Observer(), log=_log)
    print(json.dumps(metrics, sort_keys=True))
    return 0


def cmd_sweep(args) -> int:
    from raysynth.spec import load_spec, only_steps
    from raysynth.spec.loading import check_writable_stores
    from raysynth.tuning.sweep import run_sweep

    spec = only_steps(load_spec(args.space, args.assignments), args.only)
    check_writable_stores(spec, args.address)
    if args.address is None:
        _check_device(spec)
    import shlex

    from raysynth.secrets import redact_text

    command = redact_text(shlex.join(["raysynth", *args.argv]))  # shown in hints and the sweep's description
    outcome = run_sweep(spec, address=args.address, resume=args.resume, log=_log, verbose=args.verbose, command=command)
    return 1 if outcome.failures else 0


def _tracking_uri(args) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else ./mlflow.db, as the sweep resolves it."""
    import os

    from raysynth.spec import absolute_tracking_uri

    return absolute_tracking_uri(args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db", Path.cwd())


def _existing_store(uri: str) -> str:
    """A verb that only reads never creates a store: a SQLite file that does not exist is an error."""
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise RaysynthError(f"`--tracking-uri`: no MLflow store at {uri[len('sqlite:///'):]}; run `raysynth sweep` first, "
                            "or pass --tracking-uri sqlite:///PATH/mlflow.db")
    return uri


def cmd_report(args) -> int:
    from raysynth.report import write_report

    markdown = write_report(args.experiment, tracking_uri=_existing_store(_tracking_uri(args)), out_dir=Path(args.out),
                            sweep_id=args.sweep, all_sweeps=args.all_sweeps, log=_log)
    print(markdown)
    return 0


def cmd_ui(args) -> int:
    from raysynth.tracking import start_ui

    return start_ui(_existing_store(_tracking_uri(args)), host=args.host, port=args.port)


def cmd_datasets(args) -> int:
    import os

    from raysynth.data.datasets import DATASETS
    from raysynth.spec import default_cache_dir

    cache = default_cache_dir(os.environ)
    root = Path(os.environ["RAYSYNTH_DATA"]) if os.environ.get("RAYSYNTH_DATA") else None
    print(f"{'name':<15}{'classes':>8}{'image':>10}{'train':>8}{'test':>7}  available here")
    for name in DATASETS:
        source = DATASETS.get(name)
        where = source.locate(root, cache)
        status = ("yes (bundled)" if source.bundled else f"yes ({where})") if where else f"no: {source.how_to_get}"
        shape = f"{source.channels}x{source.image_size}x{source.image_size}"
        print(f"{name:<15}{source.num_classes:>8}{shape:>10}{source.train_size:>8}{source.test_size:>7}  {status}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raysynth", description="Ray-distributed search for small-data dataset synthesis")
    verbs = parser.add_subparsers(dest="verb", required=True)

    sweep = verbs.add_parser("sweep", help="run a sweep or ablation ladder on Ray")
    _add_space_arguments(sweep)
    sweep.add_argument("--address", default=None, help="Ray address; `auto` on a cluster; default: local Ray")
    sweep.add_argument("--resume", action="store_true", help="continue the latest interrupted sweep of this experiment")
    _add_only_argument(sweep)
    sweep.add_argument("-v", "--verbose", action="store_true",
                       help="also show Ray's and Tune's own output, the workers' logs and every probe")
    sweep.set_defaults(handler=cmd_sweep)

    run = verbs.add_parser("run", help="one trial in-process (no Ray); metrics as JSON on the last stdout line")
    _add_space_arguments(run)
    run.add_argument("--step", default=None, help="run this ablation step instead of the base configuration")
    run.add_argument("--out", default=None, help="folder for sample grids and per-seed metrics")
    run.set_defaults(handler=cmd_run)

    validate = verbs.add_parser("validate", help="check a space file and print it resolved")
    _add_space_arguments(validate)
    _add_only_argument(validate)
    validate.set_defaults(handler=cmd_validate)

    report = verbs.add_parser("report", help="ablation / search report from MLflow: paired differences with 95 %% CIs "
                                             "(Markdown, CSV, JSON, PNG)")
    report.add_argument("--experiment", required=True)
    report.add_argument("--tracking-uri", default=None)
    report.add_argument("--out", default="reports", help="output folder (default: reports)")
    which = report.add_mutually_exclusive_group()
    which.add_argument("--sweep", default=None, metavar="ID", help="report this sweep (default: the latest)")
    which.add_argument("--all-sweeps", action="store_true",
                       help="pool every sweep of the experiment; a (step, seed) run again later counts once (its latest run)")
    report.set_defaults(handler=cmd_report)

    ui = verbs.add_parser("ui", help="start the MLflow UI on the tracking store")
    ui.add_argument("--tracking-uri", default=None)
    ui.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1, this machine only); anything else exposes every run, "
                         "parameter and artifact to the network without authentication")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(handler=cmd_ui)

    datasets = verbs.add_parser("datasets", help="list datasets, sizes and availability")
    datasets.set_defaults(handler=cmd_datasets)
    return parser


INTERNAL_ERROR = 3  # Python's own status for an uncaught exception is 1, which `sweep` uses for failed trials


def main(argv: list[str] | None = None) -> int:
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # progress bars garble the log
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = args.handler(args)
    except RaysynthError as error:
        message = " ".join(str(error).split())
        print(f"raysynth {args.verb}: error: {message}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt as interrupt:
        hint = "; continue it with the same command and --resume" if args.verb == "sweep" else ""
        how, code = ("terminated (SIGTERM)", 143) if isinstance(interrupt, Terminated) else ("interrupted", 130)
        print(f"raysynth {args.verb}: {how}{hint}", file=sys.stderr)
    except Exception:  # a defect, not bad input: the traceback, and a status no script takes for "a trial failed" (1)
        import traceback

        traceback.print_exc()
        print(f"raysynth {args.verb}: internal error (traceback above); please report it", file=sys.stderr)
        code = INTERNAL_ERROR
    if argv is None and "ray" in sys.modules:  # the command line's own process, after Ray ran in it
        _exit_without_teardown(code)
    return code


def _exit_without_teardown(code: int) -> None:
    """Ends the process with ``code`` once everything is written, skipping the interpreter's teardown,
    where Ray's core worker can crash (SIGSEGV, as after a sweep whose cluster lost a node; ray issue
    34508): a finished sweep would otherwise exit -11 and a queue would take it for an interrupted one."""
    import logging
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
