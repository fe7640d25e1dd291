"""``raysynth report``: MLflow (and the persisted Optuna studies) -> Markdown, CSV, JSON and PNG.

A ladder: one row per step with n, mean ± sample std over seeds, and the paired difference to the
reference step (95 % t-interval over the per-seed differences, paired t-test and, from 6 seeds, the
Wilcoxon signed-rank test, Holm-adjusted across the ladder). A searched step: its selected trial
(best by the validation metric), the study's optimization history, Pareto front and parameter
importances, and the confirmation on fresh seeds, which is the test number to quote.
"""

from __future__ import annotations

import csv
import json
import math
import tempfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from raysynth.errors import RaysynthError
from raysynth.metrics import PROBE_METRIC
from raysynth.stats import FEW_SEEDS, PairedDifference, holm, paired_difference, summarize, t_interval
from raysynth.tracking import Tracker

SHOWN = ("accuracy", "val_accuracy", "cas", "fid", "repeated_accuracy", "baseline_accuracy")
CHANCE_MARGIN = 2.0  # points: an accuracy this close to chance means the budget was too small to learn


@dataclass
class Row:
    """One step (or one trial of a search): per-seed metrics of its runs."""

    label: str
    status: str
    per_seed: dict[int, dict[str, float]] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    error: str = ""
    note: str = ""  # e.g. "selected from 4 trials"
    difference: PairedDifference | None = None
    other_size: bool = False  # trains on another number of real images per class than the reference step
    p_holm: float = math.nan
    p_wilcoxon_holm: float = math.nan

    def values(self, metric: str) -> dict[int, float]:
        return {seed: m[metric] for seed, m in self.per_seed.items() if metric in m}

    def cell(self, metric: str) -> str:
        summary = summarize(self.values(metric).values())
        if summary.n == 0:
            return "–"
        if "fid" in metric:  # domain FIDs of small images are small numbers: significant digits
            return f"{summary.mean:.3g}" + (f" ± {summary.std:.2g}" if summary.n > 1 else "")
        return f"{summary.mean:.2f}" + (f" ± {summary.std:.2f}" if summary.n > 1 else "")


@dataclass
class Search:
    """One searched step: the selected trial, the study, the confirmation."""

    step: str
    metric: str
    trials: int
    selected: Row | None
    selected_value: float | None
    confirmation: Row | None
    study_name: str | None
    figures: list[str] = field(default_factory=list)
    importances: dict[str, dict[str, float]] = field(default_factory=dict)  # objective -> parameter -> importance
    evaluator: str = ""
    pareto: list[str] = field(default_factory=list)
    confirm_seeds: list[int] = field(default_factory=list)  # planned, whether run yet or not


def strict_json(data) -> str:
    """Indented JSON that strict parsers read: an undefined number (a p-value from too few seeds) is null."""
    def clean(value):
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(item) for item in value]
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, (float, np.floating)):
            return float(value) if math.isfinite(value) else None
        return value

    return json.dumps(clean(data), indent=2, allow_nan=False)


# --------------------------------------------------------------------------- loading

@dataclass
class Store:
    tracker: Tracker
    experiment_id: str
    sweeps: list  # the sweep runs included, oldest first
    trials: list
    seeds: list
    sweep_spec: dict


def load(tracker: Tracker, experiment: str, sweep_id: str | None, all_sweeps: bool) -> Store:
    """The sweep's runs (``sweep_id``, else the latest; ``all_sweeps``: every sweep of the experiment).
    Only reads: a missing store or experiment is an error, never created."""
    client = tracker.client
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise RaysynthError(f"`--experiment {experiment}`: no such experiment in {tracker.tracking_uri} (experiments: {names})")
    sweeps = tracker.runs(found.experiment_id, "sweep", f"tags.sweep_id = '{sweep_id}'" if sweep_id else "")
    if not sweeps:
        what = f"no sweep `{sweep_id}`" if sweep_id else "no sweep runs"
        raise RaysynthError(f"experiment `{experiment}` has {what} in {tracker.tracking_uri}; run `raysynth sweep` first")
    sweeps.sort(key=lambda r: r.info.start_time)
    included = sweeps if all_sweeps else sweeps[-1:]
    ids = {s.data.tags["sweep_id"] for s in included}
    trials = [r for r in tracker.runs(found.experiment_id, "trial") if r.data.tags.get("sweep_id") in ids]
    seeds = [r for r in tracker.runs(found.experiment_id, "seed") if r.data.tags.get("sweep_id") in ids]
    specs = []
    with tempfile.TemporaryDirectory() as folder:
        for index, sweep in enumerate(included):
            path = client.download_artifacts(sweep.info.run_id, "sweep.yaml", str(Path(folder) / str(index)))
            specs.append(yaml.safe_load(Path(path).read_text()))
    return Store(tracker, found.experiment_id, included, trials, seeds, merged_spec(specs))


def merged_spec(specs: list[dict]) -> dict:
    """The newest sweep's spec, its ladder the union of every included sweep's steps (a sweep run with
    `--only` saves only its own steps): in order of first appearance, oldest sweep first, each step as
    the newest sweep that ran it defined it."""
    steps: dict[str, dict] = {}
    for spec in specs:
        for step in spec.get("ablation") or []:
            steps[step["name"]] = step  # dict order keeps the first appearance; the value is the newest
    return {**specs[-1], "ablation": list(steps.values())} if steps else specs[-1]


def _selection(sweep_spec: dict) -> tuple[str, str]:
    metric, mode = sweep_spec["tune"]["metric"], sweep_spec["tune"]["mode"]
    return (metric[0] if isinstance(metric, list) else metric), (mode[0] if isinstance(mode, list) else mode)


def _role(run) -> str:
    return run.data.tags.get("raysynth.role", "grid")


def _step(run) -> str:
    return run.data.tags.get("ablation_step", "main")


class RowBuilder:
    """Rows from runs: a trial's seed runs, or a step's latest seed run per seed across sweeps."""

    def __init__(self, store: Store):
        self.store = store
        self.seed_runs: dict[str, list] = {}
        for run in store.seeds:
            if run.info.status == "FINISHED":
                self.seed_runs.setdefault(run.data.tags.get("mlflow.parentRunId"), []).append(run)

    def of_trial(self, run, label: str, keys: list[str] = ()) -> Row:
        """The trial's seed runs; ``keys``: the searched parameters to show."""
        row = Row(label=label, status=run.info.status, error=run.data.tags.get("error", ""),
                  params={k: run.data.params.get(f"params.{k}", "–") for k in keys})
        for seed_run in sorted(self.seed_runs.get(run.info.run_id, []), key=lambda r: r.info.start_time):
            row.per_seed[int(seed_run.data.tags["seed"])] = dict(seed_run.data.metrics)
        return row

    def of_step(self, trials: list, label: str) -> Row:
        """A step run in one or more sweeps: the latest finished seed run of each seed counts once."""
        latest = max(trials, key=lambda r: r.info.start_time)
        row = Row(label=label, status=latest.info.status, error=latest.data.tags.get("error", ""))
        if any(t.info.status == "FINISHED" for t in trials):
            row.status = "FINISHED"
        for trial in sorted(trials, key=lambda r: r.info.start_time):
            for seed_run in sorted(self.seed_runs.get(trial.info.run_id, []), key=lambda r: r.info.start_time):
                row.per_seed[int(seed_run.data.tags["seed"])] = dict(seed_run.data.metrics)
        return row


# --------------------------------------------------------------------------- building

def ladder_rows(store: Store, builder: RowBuilder, searches: dict[str, Search]) -> list[Row]:
    """One row per ladder step in file order, with paired differences to the reference step."""
    steps = [s["name"] for s in store.sweep_spec.get("ablation") or []]
    rows = []
    for step in steps:
        if step in searches:
            search = searches[step]
            if search.confirmation is not None and search.selected is not None:
                # the number to quote, and paired with the other steps when they ran on the confirmation seeds
                chosen = ", ".join(f"{k}={short_number(v)}" for k, v in search.selected.params.items())
                rows.append(replace(search.confirmation, label=step, params=search.selected.params,
                                    note=f"{chosen}: {search.selected.note}, on the confirmation seeds"))
            elif search.selected is not None:
                rows.append(search.selected)
            continue
        trials = [t for t in store.trials if _step(t) == step and _role(t) == "grid"]
        if trials:
            rows.append(builder.of_step(trials, step))
    reference = reference_step(store.sweep_spec)
    compare(rows, reference, sizes=step_sizes(store.sweep_spec))
    flag_degenerate_fits(rows)
    return rows


FIT_LOSS = "info/fit_final_loss"  # what a method reports as its fit's last loss (e.g. sCOLA's GLO reconstruction)
FIT_OUTLIER_FACTOR = 3.0


def flag_degenerate_fits(rows: list[Row]) -> None:
    """A seed whose fit ended at more than ``FIT_OUTLIER_FACTOR`` times its peers' median loss is named in
    the row's note: its numbers are averaged in, but the reader sees the fit failed rather than the method."""
    for row in rows:
        losses = row.values(FIT_LOSS)
        for seed, loss in losses.items():
            peers = [value for other, value in losses.items() if other != seed]
            median = float(np.median(peers)) if peers else math.nan
            if median > 0 and loss > FIT_OUTLIER_FACTOR * median:
                flag = f"seed {seed}'s fit ended at loss {loss:.3g}, {loss / median:.1f}x its peers' median: a degenerate fit"
                row.note = "; ".join(part for part in (row.note, flag) if part)


def short_number(value: str) -> str:
    """A logged parameter value for a table cell: floats to 3 significant digits."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() and "." not in value else f"{number:.3g}"


def reference_step(sweep_spec: dict) -> str | None:
    steps = sweep_spec.get("ablation") or []
    marked = [s["name"] for s in steps if s.get("reference")]
    return marked[0] if marked else (steps[0]["name"] if steps else None)


def compare(rows: list[Row], reference: str | None, metric: str = "accuracy", sizes: dict[str, int] | None = None) -> None:
    """Sets each row's paired difference to the reference row and the Holm-adjusted p-values. With
    ``sizes`` (step -> real images per class), a row of another size than the reference is not compared
    with it (an IPC-50 set against an IPC-1 one says nothing) and stays out of the Holm family."""
    base = next((r for r in rows if r.label == reference), None)
    if base is None:
        return
    sizes = sizes or {}
    for row in rows:
        row.other_size = sizes.get(row.label, sizes.get(reference)) != sizes.get(reference)
    others = [r for r in rows if r is not base and not r.other_size]
    for row in others:
        row.difference = paired_difference(row.values(metric), base.values(metric))
    adjusted_t = holm([r.difference.p_t if r.difference else math.nan for r in others])
    adjusted_w = holm([r.difference.p_wilcoxon if r.difference else math.nan for r in others])
    for row, p_t, p_w in zip(others, adjusted_t, adjusted_w):
        row.p_holm, row.p_wilcoxon_holm = p_t, p_w


def _ablation_entry(sweep_spec: dict, step: str) -> dict | None:
    """The saved space's ablation entry named ``step`` (None for the base configuration)."""
    return next((s for s in sweep_spec.get("ablation") or [] if s["name"] == step), None)


def _step_set(entry: dict | None) -> dict:
    """An ablation entry's `set:` overrides (dotted keys; {} for none or for the base configuration)."""
    return (entry or {}).get("set") or {}


def search_keys(sweep_spec: dict, step: str) -> dict[str, dict]:
    """The parameters a step searched, each with its `when:` condition ({} if none): the space's
    `search:` (same method) and the step's `set: search.*`."""
    entry = _ablation_entry(sweep_spec, step)
    same_method = entry is None or entry.get("method") in (None, sweep_spec["method"])
    searched = dict(sweep_spec.get("search") or {}) if same_method else {}
    searched.update({key.removeprefix("search."): value for key, value in _step_set(entry).items()
                     if key.startswith("search.")})
    return {key: (value.get("when") or {}) if isinstance(value, dict) else {} for key, value in searched.items()}


def planned_confirm_seeds(sweep_spec: dict, step: str) -> list[int]:
    """The confirmation seeds a step's search is followed by: its own `set: tune.confirm_seeds`, else the space's."""
    own = _step_set(_ablation_entry(sweep_spec, step)).get("tune.confirm_seeds")
    return list(own if own is not None else (sweep_spec.get("tune") or {}).get("confirm_seeds") or [])


def sampled_keys(logged: dict[str, str], searched: dict[str, dict]) -> list[str]:
    """The searched parameters a trial sampled, from its logged params: a conditional one only where its
    `when:` held (an affine trial has no diffeomorphic grid size to show)."""
    def holds(when: dict) -> bool:
        return all(logged.get(f"params.{key}") in {str(v) for v in values} for key, values in when.items())

    return [key for key, when in searched.items() if holds(when)]


def build_search(store: Store, builder: RowBuilder, step: str, log: Callable[[str], None], out_dir: Path) -> Search:
    metric, mode = _selection(store.sweep_spec)
    trials = [t for t in store.trials if _step(t) == step and _role(t) == "search"]
    finished = sorted((t for t in trials if t.info.status == "FINISHED" and metric in t.data.metrics),
                      key=lambda r: r.data.tags.get("trial_id", ""))  # of equal ones the first, as the sweep selects
    best = (max if mode == "max" else min)(finished, key=lambda r: r.data.metrics[metric]) if finished else None
    selected = (builder.of_trial(best, step, sampled_keys(best.data.params, search_keys(store.sweep_spec, step)))
                if best is not None else None)
    if selected is not None:
        stopped = len(trials) - len(finished)
        selected.note = f"selected by {metric} from {len(finished)} finished trial(s)" + (
            f" of {len(trials)}, {stopped} stopped early or failed" if stopped else "")
    confirmations = [t for t in store.trials if _step(t) == step and _role(t) == "confirmation"]
    confirmation = builder.of_step(confirmations, f"{step} (confirmation)") if confirmations else None
    tags = store.sweeps[-1].data.tags
    search = Search(step, metric, len(trials), selected, best.data.metrics[metric] if best is not None else None,
                    confirmation, tags.get(f"optuna_study.{step}"),
                    confirm_seeds=planned_confirm_seeds(store.sweep_spec, step))
    study = _load_study(tags.get("study_storage"), search.study_name, log)
    if study is not None:
        import matplotlib

        with matplotlib.rc_context():  # Optuna's plots switch matplotlib to its ggplot style; the ladder's keep theirs
            _study_figures(study, search, store, out_dir, log)
    return search


def _load_study(storage: str | None, name: str | None, log):
    if not storage or not name or "***" in storage:
        return None
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).exists():
        log(f"the Optuna study {name} is not here ({storage} does not exist): no history or importances")
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        log(f"the Optuna study {name} is not in {storage}: no history or importances")
        return None


def stopped_probes(study, last_probe: dict[str, float]) -> list[tuple[int, float]]:
    """(Optuna trial number, last validation probe) of each trial ASHA stopped. Optuna records those
    PRUNED, holding at most the probe before the last (Tune stops a trial on a result it does not pass
    to the searcher), and its history plot leaves them out; ``last_probe`` maps a Tune trial id to the
    probe its seed run logged last."""
    import optuna

    return [(t.number, last_probe[t.user_attrs["tune_trial_id"]]) for t in study.trials
            if t.state == optuna.trial.TrialState.PRUNED and t.user_attrs.get("tune_trial_id") in last_probe]


def _last_probes(store: Store) -> dict[str, float]:
    """Tune trial id -> the mean over its seed runs of the last validation probe each logged."""
    probes: dict[str, list[float]] = {}
    for run in store.seeds:
        if PROBE_METRIC in run.data.metrics:
            probes.setdefault(run.data.tags.get("trial_id"), []).append(run.data.metrics[PROBE_METRIC])
    return {trial: float(np.mean(values)) for trial, values in probes.items()}


def _study_figures(study, search: Search, store: Store, out_dir: Path, log) -> None:
    """History, Pareto front and importances from the persisted study (Optuna's own plots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    metrics = store.sweep_spec["tune"]["metric"]
    metrics = metrics if isinstance(metrics, list) else [metrics]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return
    run_names = {t.data.tags.get("trial_id"): t.info.run_name for t in store.trials}
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    safe = search.step.replace("/", "_")

    def save(axes, name: str) -> None:
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(7, 4.5)
        figure.tight_layout()
        figure.savefig(out_dir / name, dpi=110)
        plt.close(figure)
        search.figures.append(name)

    for index, metric in enumerate(metrics):
        target = (lambda t, i=index: t.values[i]) if len(metrics) > 1 else None
        axes = optuna_plots.plot_optimization_history(study, target=target, target_name=metric)
        axes.set_title(f"{search.step}: {metric} (validation) against trials")
        stopped = stopped_probes(study, _last_probes(store)) if metric == "val_accuracy" else []
        if stopped:  # the same metric at an earlier epoch: shown apart, never joined to the best-value line
            numbers, probes = zip(*stopped)
            axes.scatter(numbers, probes, marker="x", color="tab:grey", zorder=3,
                         label=f"stopped by ASHA ({len(stopped)}): last {PROBE_METRIC}")
            axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8)  # off the points
        save(axes, f"search_{safe}_history_{metric.replace('/', '_')}.png")
        values = [t.values[index] for t in complete]
        if max(values) - min(values) <= 1e-12:  # a constant objective: any importance would be an artifact
            search.importances[metric] = {}
            log(f"parameter importances for {metric}: undefined, it is the same in every trial")
            continue
        try:
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            search.importances[metric] = dict(optuna.importance.get_param_importances(study, target=target, evaluator=evaluator))
            search.evaluator = type(evaluator).__name__
        except (ValueError, RuntimeError, ZeroDivisionError) as error:
            log(f"parameter importances for {metric} unavailable: {error}")
    if len(metrics) > 1:
        axes = optuna_plots.plot_pareto_front(study, target_names=metrics)
        axes.set_title(f"{search.step}: Pareto front of the validation objectives")
        save(axes, f"search_{safe}_pareto.png")
        search.pareto = [run_names.get(t.user_attrs.get("tune_trial_id"), f"optuna #{t.number}") for t in study.best_trials]


# --------------------------------------------------------------------------- rendering

def _p(value: float) -> str:
    return "–" if math.isnan(value) else ("<0.001" if value < 0.001 else f"{value:.3f}")


def _difference_cell(d: PairedDifference | None) -> str:
    if d is None:
        return "–"
    if d.n < 2:
        return f"{d.mean:+.2f} (n=1, no interval)"
    mark = " *" if d.excludes_zero else ""
    return f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]{mark}"


def _chance_warnings(rows: list[Row], chance: float) -> list[str]:
    """One line naming the rows whose accuracy is within CHANCE_MARGIN of chance: nobody should rank noise."""
    near = [row.label for row in rows if math.isfinite(m := summarize(row.values("accuracy").values()).mean)
            and m - chance < CHANCE_MARGIN]
    if not near:
        return []
    which = "every row" if len(near) == len(rows) else ", ".join(f"`{label}`" for label in near)
    return [f"- ⚠ {which}: accuracy within {CHANCE_MARGIN:.0f} points of chance ({chance:.1f} %): the budget is too "
            "small to learn; do not rank these."]


def header_note(store: Store) -> list[str]:
    spec = store.sweep_spec
    evaluation, dataset = spec.get("evaluation", {}), spec["dataset"]
    metric, _ = _selection(spec)
    sweeps = ", ".join(f"`{s.data.tags['sweep_id']}`" for s in store.sweeps)
    lines = [f"Sweep{'s' if len(store.sweeps) > 1 else ''} {sweeps}; dataset `{dataset['name']}`, "
             f"{dataset['images_per_class']} images per class, {dataset.get('validation_per_class', 0)} validation images per class.",
             f"Selection: `{', '.join(spec['tune']['metric']) if isinstance(spec['tune']['metric'], list) else metric}` on the "
             f"validation split; test metrics are reported, never used for a choice.",
             f"Budget: classifier {evaluation.get('classifier')} width {evaluation.get('width') or 'default'}, "
             f"{evaluation.get('epochs')} epochs, {evaluation.get('num_eval')} classifier(s) per set; method budget "
             f"{spec.get('budget', {}).get('epochs')} epochs; seeds {spec['seeds']}." + budget_overrides(spec)]
    if any(s.data.tags.get("select_on_test") == "true" for s in store.sweeps):
        lines.insert(0, "**⚠ This sweep selected on the TEST set (`tune.select_on_test: true`): its test numbers are "
                        "optimistic and not to be quoted.**")
    return lines


def budget_overrides(sweep_spec: dict) -> str:
    """' Steps with their own budget: name (key value, ...); ...' for the steps whose `set:` changes a
    `budget.*`, `evaluation.*` or `seeds` key (the line above them states the space's), else ''."""
    own = [f"{step['name']} ({', '.join(f'{key} {value}' for key, value in overrides.items())})"
           for step in sweep_spec.get("ablation") or []
           if (overrides := {key: value for key, value in _step_set(step).items()
                             if key.startswith(("budget.", "evaluation.")) or key == "seeds"})]
    return f" Steps with their own budget: {'; '.join(own)}." if own else ""


# reference sets a method may log beside its own (`Method.references`): a column, and its line under the
# table, wherever a step has them
REFERENCE_COLUMNS = {
    "classic_accuracy": ("classic (%)", "classic: the step's own few-shot images plus classic augmentation at the "
                         "same size (Table 3 as written)"),
    "classic_alone_accuracy": ("classic alone (%)", "classic alone: as many augmented images as the method made, "
                               "without the originals"),
}


def _own_baseline_difference(row: Row) -> PairedDifference | None:
    """accuracy - baseline_accuracy over the row's seeds: each trial against the real-only set it trained on
    the same seed (a condensed set against the few-shot set of its size, a Mix against its real images)."""
    if not row.values("accuracy") or not row.values("baseline_accuracy"):
        return None
    return paired_difference(row.values("accuracy"), row.values("baseline_accuracy"))


def render_ladder(rows: list[Row], reference: str | None) -> list[str]:
    extra = [metric for metric in REFERENCE_COLUMNS if any(row.values(metric) for row in rows)]
    own = any(row.values("baseline_accuracy") for row in rows)
    header = ["step", "n", "accuracy (%)", "val accuracy (%)", "CAS (%)", "FID", "repeated (%)",
              *[REFERENCE_COLUMNS[metric][0] for metric in extra],
              *(["real only (%)", "Δ vs real only [95 % CI]"] if own else []),
              f"Δ accuracy vs `{reference}` [95 % CI]", "p (t, Holm)", "p (Wilcoxon, Holm)", "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        n = len(row.values("accuracy"))
        cells = [row.label + (f" ({row.note})" if row.note else ""), f"{n}" + (" (<3)" if 0 < n < FEW_SEEDS else ""),
                 row.cell("accuracy"), row.cell("val_accuracy"), row.cell("cas"), row.cell("fid"),
                 row.cell("repeated_accuracy"), *[row.cell(metric) for metric in extra],
                 *([row.cell("baseline_accuracy"), _difference_cell(_own_baseline_difference(row))] if own else []),
                 "reference" if row.label == reference else "other set size" if row.other_size
                 else _difference_cell(row.difference),
                 _p(row.p_holm), _p(row.p_wilcoxon_holm), row.status.lower()]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Δ: the paired difference of test accuracy over the seeds both steps ran (the seed fixes the few-shot "
              "set), its 95 % t-interval; * marks an interval that excludes 0. p: paired t-test (Wilcoxon signed-rank "
              "from 6 seeds), Holm-adjusted across the ladder (the intervals are not adjusted). n < 3: too few seeds for "
              "a claim. repeated: the few-shot set repeated to the training set's size (equal SGD steps)."
              + "".join(f" {REFERENCE_COLUMNS[metric][1]}." for metric in extra)
              + (" real only: the real-only set each trial trained beside its own on the same seed (the few-shot "
                 "set for an expansion or generation method; for a condensation method a seeded random real subset "
                 "of the training set, of the condensed set's size); its Δ is paired over the row's seeds and not "
                 "Holm-adjusted." if own else "")
              + (" other set size: the row trains on another number of real images per class than the reference, "
                 "so it is not compared with it (nor in its Holm family)." if any(r.other_size for r in rows) else "")]
    return lines


def render_search(search: Search) -> list[str]:
    lines = [f"## Search `{search.step}`", ""]
    if search.selected is None:
        return lines + [f"No trial of the {search.trials} finished with `{search.metric}`.", ""]
    params = ", ".join(f"{k}={v}" for k, v in search.selected.params.items())
    lines.append(f"Selected configuration ({params}): `{search.metric}` {search.selected_value:.4g}, best of "
                 f"{search.trials} trial(s) on seeds {sorted(search.selected.per_seed)}.")
    if search.confirmation is not None and search.confirmation.values("accuracy"):
        values = list(search.confirmation.values("accuracy").values())
        summary, (low, high) = summarize(values), t_interval(values)
        interval = f" [95 % CI {low:.2f}, {high:.2f}]" if summary.n > 1 else ""
        few = f" (only {summary.n} seed(s): too few for a claim)" if summary.n < FEW_SEEDS else ""
        lines.append(f"**Confirmation on fresh seeds {sorted(search.confirmation.per_seed)}: test accuracy "
                     f"{summary.mean:.2f} %{interval}, n = {summary.n}{few}.** This is the number to quote.")
    elif search.confirm_seeds:
        lines.append(f"The confirmation on seeds {search.confirm_seeds} has not finished yet (a sweep still running, "
                     f"or interrupted: `--resume` runs it). Until then, the selected trial's test accuracy "
                     f"{search.selected.cell('accuracy')} % was measured on the seeds the search used.")
    else:
        lines.append("No confirmation run (`tune.confirm_seeds` is empty): the selected trial's test accuracy "
                     f"{search.selected.cell('accuracy')} % was measured on the seeds the search used.")
    if search.pareto:
        lines.append(f"Pareto front (validation objectives): {', '.join(search.pareto)}.")
    for objective, values in search.importances.items():
        if not values:
            lines += ["", f"Parameter importances for `{objective}`: undefined (the same value in every trial)."]
            continue
        lines += ["", f"Parameter importances for `{objective}` (Optuna, {search.evaluator}):", "",
                  "| parameter | importance |", "|---|---|", *[f"| {k} | {v:.3f} |" for k, v in values.items()]]
    if search.figures:
        lines += ["", *[f"![{name}]({name})" for name in search.figures]]
    return lines + [""]


def render_trials(rows: list[Row], metric: str) -> list[str]:
    keys = list(rows[0].params) if rows else []
    header = ["trial", *keys, f"{metric}", "accuracy (%)", "CAS (%)", "FID", "n", "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join([row.label, *[row.params[k] for k in keys], row.cell(metric), row.cell("accuracy"),
                                        row.cell("cas"), row.cell("fid"), str(len(row.values("accuracy"))),
                                        row.status.lower()]) + " |")
    return lines


def step_sizes(sweep_spec: dict) -> dict[str, int]:
    """Each ladder step's number of real images per class (its `set:` or the space's)."""
    base = (sweep_spec.get("dataset") or {}).get("images_per_class")
    return {step["name"]: _step_set(step).get("dataset.images_per_class", base)
            for step in sweep_spec.get("ablation") or []}


def sizes_differ(sweep_spec: dict) -> bool:
    """Whether the ladder's steps train on different numbers of real images per class (then a row is
    compared with its own real-only set, not with a reference step of another size)."""
    return len(set(step_sizes(sweep_spec).values())) > 1


def plot_ladder(path: Path, rows: list[Row], reference: str | None, title: str, subtitle: str,
                own_baseline: bool = False) -> None:
    """Left: test accuracy per step (mean ± sample std); right: paired differences with 95 % intervals,
    against the reference step, or with ``own_baseline`` against each row's own real-only set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.values("accuracy")]
    figure, (left, right) = plt.subplots(1, 2, figsize=(max(10, 1.1 * len(shown) + 6), 4.8),
                                         gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(shown))
    for offset, metric, name in ((-0.2, "accuracy", "test accuracy"), (0.2, "val_accuracy", "validation accuracy")):
        summaries = [summarize(r.values(metric).values()) for r in shown]
        left.bar(x + offset, [s.mean for s in summaries], 0.38, label=name,
                 yerr=[0 if math.isnan(s.std) else s.std for s in summaries], capsize=3)
    repeated = [(xi - 0.2, summarize(r.values("repeated_accuracy").values()).mean) for xi, r in zip(x, shown)
                if r.values("repeated_accuracy")]
    if repeated:
        left.scatter(*zip(*repeated), marker="D", color="black", zorder=3, label="few-shot set repeated (equal steps)")
    left.set_xticks(x, [r.label for r in shown], rotation=30, ha="right")
    left.set_ylabel("accuracy (%), mean ± sample std")
    left.set_ylim(0, 118)
    left.legend(loc="upper left", ncol=2, fontsize=7)
    left.set_title(title, fontsize=10)
    differences = {r.label: _own_baseline_difference(r) if own_baseline else r.difference for r in shown}
    plot_differences(right, [(r.label, differences[r.label]) for r in shown
                             if differences[r.label] is not None and (own_baseline or r.label != reference)],
                     "Δ test accuracy vs the row's own\nreal-only set (points)" if own_baseline
                     else f"Δ test accuracy vs {reference} (points)")
    import textwrap

    figure.text(0.01, 0.01, textwrap.fill(subtitle, 170), fontsize=7, va="bottom")
    figure.tight_layout(rect=(0, 0.09, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_differences(axis, labelled: list[tuple[str, PairedDifference]], xlabel: str) -> None:
    """A forest plot on ``axis``: each paired difference with its 95 % interval, top to bottom in order,
    green / red where the interval excludes 0 above / below it, an open marker for a single seed."""
    y = np.arange(len(labelled))[::-1]
    for yi, (_, d) in zip(y, labelled):
        color = "tab:green" if d.excludes_zero and d.mean > 0 else "tab:red" if d.excludes_zero else "tab:gray"
        if d.n > 1:
            axis.errorbar(d.mean, yi, xerr=[[d.mean - d.low], [d.high - d.mean]], fmt="o", color=color, capsize=4)
        else:
            axis.plot(d.mean, yi, "o", color=color, mfc="none")
        axis.annotate(f"n={d.n}", (d.mean, yi), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7)
    axis.axvline(0, color="black", lw=0.8)
    axis.margins(y=0.15)  # room for the top row's n= label
    axis.set_yticks(y, [label for label, _ in labelled])
    axis.set_xlabel(xlabel)
    axis.set_title("paired differences over seeds, 95 % CI\n(green / red: the interval excludes 0)", fontsize=9)


def _row_json(row: Row) -> dict:
    out = {"label": row.label, "status": row.status, "params": row.params, "note": row.note,
           "per_seed": {str(s): {k: v for k, v in m.items() if not k.startswith(("train/", "probe/"))}
                        for s, m in sorted(row.per_seed.items())}}
    if row.difference is not None:
        d = row.difference
        out["difference"] = {"metric": "accuracy", "seeds": list(d.seeds), "mean": d.mean, "ci95": [d.low, d.high],
                             "p_t": d.p_t, "p_t_holm": row.p_holm, "p_wilcoxon": d.p_wilcoxon,
                             "p_wilcoxon_holm": row.p_wilcoxon_holm}
    if row.other_size:
        out["not_compared"] = "other set size than the reference step"
    return out


def write_csv(path: Path, rows: list[Row]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        params = list(rows[0].params) if rows else []
        writer.writerow(["label", *params, "n", *[f"{m}_{s}" for m in SHOWN for s in ("mean", "std")],
                         "delta_accuracy", "delta_ci_low", "delta_ci_high", "p_t_holm", "p_wilcoxon_holm", "status"])
        for row in rows:
            d = row.difference
            summaries = [summarize(row.values(m).values()) for m in SHOWN]
            writer.writerow([row.label, *[row.params[k] for k in params], len(row.values("accuracy")),
                             *[f"{v:.6g}" for s in summaries for v in (s.mean, s.std)],
                             *([f"{d.mean:.6g}", f"{d.low:.6g}", f"{d.high:.6g}"] if d else ["", "", ""]),
                             f"{row.p_holm:.6g}", f"{row.p_wilcoxon_holm:.6g}", row.status])


def write_report(experiment: str, *, tracking_uri: str, out_dir: Path, sweep_id: str | None = None,
                 all_sweeps: bool = False, log: Callable[[str], None] = print) -> str:
    """Writes report.{md,csv,json,png} (and the searches' plots) for the latest, the given or all
    sweeps of ``experiment``; returns the Markdown."""
    from raysynth.data.datasets import DATASETS

    tracker = Tracker(tracking_uri, retry_seconds=10)
    store = load(tracker, experiment, sweep_id, all_sweeps)
    spec = store.sweep_spec
    metric, _ = _selection(spec)
    builder = RowBuilder(store)
    out_dir.mkdir(parents=True, exist_ok=True)
    searched = list(dict.fromkeys(_step(t) for t in store.trials if _role(t) == "search"))
    searches = {step: build_search(store, builder, step, log, out_dir) for step in searched}
    ladder = bool(spec.get("ablation"))
    reference = reference_step(spec)
    if ladder:
        rows = ladder_rows(store, builder, searches)
    else:
        search_trials = [t for t in store.trials if _role(t) in ("search", "grid")]
        finished = sorted([t for t in search_trials if metric in t.data.metrics], key=lambda r: r.data.metrics[metric],
                          reverse=_selection(spec)[1] == "max")
        others = [t for t in search_trials if t not in finished]
        keys = list(spec.get("search") or {})
        rows = [builder.of_trial(t, f"#{i + 1} {t.info.run_name}", keys) for i, t in enumerate(finished)] + \
               [builder.of_trial(t, t.info.run_name or t.info.run_id[:8], keys) for t in others]
    if not rows:
        raise RaysynthError(f"sweep {store.sweeps[-1].data.tags['sweep_id']} of `{experiment}` has no trial runs yet")
    title = f"{experiment}: {'ablation ladder' if ladder else 'search'}"
    note = header_note(store)
    lines = [f"# {title}", "", *note, ""]
    lines += render_ladder(rows, reference) if ladder else render_trials(rows, metric)
    chance = 100.0 / DATASETS.get(spec["dataset"]["name"]).num_classes if spec["dataset"]["name"] in DATASETS else 0.0
    warnings_ = _chance_warnings(rows, chance)
    if warnings_:
        lines += ["", *warnings_]
    failed = [r for r in rows if r.error]
    if failed:
        lines += ["", "Failed trials:", *[f"- {r.label}: {r.error}" for r in failed]]
    for search in searches.values():
        lines += ["", *render_search(search)]
    markdown = "\n".join(lines).rstrip() + "\n"
    (out_dir / "report.md").write_text(markdown)
    write_csv(out_dir / "report.csv", rows)
    (out_dir / "report.json").write_text(strict_json({
        "experiment": experiment, "sweeps": [s.data.tags["sweep_id"] for s in store.sweeps], "selection_metric": metric,
        "reference": reference if ladder else None, "rows": [_row_json(r) for r in rows],
        "searches": {step: {"selected": _row_json(s.selected) if s.selected else None, "selection_metric": s.metric,
                            "selected_value": s.selected_value, "trials": s.trials,
                            "confirmation": _row_json(s.confirmation) if s.confirmation else None,
                            "importances": s.importances, "importance_evaluator": s.evaluator, "pareto": s.pareto}
                     for step, s in searches.items()}}))
    subtitle = " ".join(note[-2:])
    if ladder:
        own_baseline = sizes_differ(store.sweep_spec) and any(row.values("baseline_accuracy") for row in rows)
        plot_ladder(out_dir / "report.png", rows, reference, title, subtitle, own_baseline)
    elif searches and next(iter(searches.values())).figures:
        import shutil

        shutil.copy(out_dir / next(iter(searches.values())).figures[0], out_dir / "report.png")
    names = ["report.md", "report.csv", "report.json", "report.png"] + [f for s in searches.values() for f in s.figures]
    for name in names:
        if (out_dir / name).exists():
            tracker.log_artifact(store.sweeps[-1].info.run_id, out_dir / name, "report")
    log(f"report written to {out_dir}/report.{{md,csv,json,png}} and logged to the sweep's run")
    return markdown
