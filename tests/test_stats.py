"""The report's statistics against scipy.stats computed directly on known per-seed numbers."""

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from raysynth.report import Row, compare, sampled_keys, search_keys, stopped_probes
from raysynth.stats import holm, paired_difference, summarize

# per-seed test accuracies of a 4-step ladder over 5 seeds
LADDER = {
    "real": [72.1, 70.4, 73.0, 71.2, 69.8],
    "a": [75.3, 74.9, 74.1, 76.0, 73.2],
    "b": [72.9, 70.1, 73.8, 71.0, 70.9],
    "c": [71.0, 69.9, 72.2, 70.0, 69.1],
}


def rows():
    return [Row(step, "FINISHED", per_seed={seed: {"accuracy": v} for seed, v in enumerate(values)})
            for step, values in LADDER.items()]


def test_paired_interval_and_p_value_match_scipy():
    a, b = np.array(LADDER["a"]), np.array(LADDER["real"])
    d = a - b
    low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    result = paired_difference(dict(enumerate(a)), dict(enumerate(b)))
    assert (result.mean, result.low, result.high, result.p_t) == pytest.approx(
        (d.mean(), low, high, stats.ttest_rel(a, b).pvalue), rel=1e-12)


def test_report_p_values_are_holm_adjusted_across_the_ladder():
    table = rows()
    compare(table, "real")
    raw = [stats.ttest_rel(LADDER[s], LADDER["real"]).pvalue for s in ("a", "b", "c")]
    order = np.argsort(raw)
    expected = np.empty(3)
    running = 0.0
    for rank, index in enumerate(order):  # Holm's step-down, written out
        running = max(running, min(1.0, (3 - rank) * raw[index]))
        expected[index] = running
    assert [r.p_holm for r in table[1:]] == pytest.approx(list(expected), rel=1e-12) and math.isnan(table[0].p_holm)


def test_differences_pair_only_the_seeds_both_steps_ran():
    result = paired_difference({0: 1.0, 1: 2.0, 2: 4.0}, {1: 1.0, 2: 1.0, 3: 9.0})
    assert result.seeds == (1, 2) and result.mean == pytest.approx(2.0)


def test_wilcoxon_appears_from_six_seeds():
    five = paired_difference({i: i + 0.5 * (i % 2) for i in range(5)}, {i: 0.0 for i in range(5)})
    six = paired_difference({i: 1.0 + i for i in range(6)}, {i: 0.0 for i in range(6)})
    assert math.isnan(five.p_wilcoxon) and six.p_wilcoxon == pytest.approx(stats.wilcoxon([1.0 + i for i in range(6)]).pvalue)


def test_a_fit_far_above_its_peers_is_named_in_the_row():
    from raysynth.report import FIT_LOSS, flag_degenerate_fits

    healthy = Row("scola", "FINISHED", per_seed={s: {FIT_LOSS: v} for s, v in enumerate([0.026, 0.030, 0.028])})
    degenerate = Row("scola", "FINISHED", per_seed={s: {FIT_LOSS: v} for s, v in enumerate([0.35, 0.026, 0.028])})
    flag_degenerate_fits([healthy, degenerate])
    assert healthy.note == "" and degenerate.note.startswith("seed 0's fit ended at loss 0.35")


def test_seed_spread_is_the_sample_std():
    assert summarize([1.0, 2.0, 4.0]).std == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))


def test_holm_leaves_missing_p_values_out_of_the_family():
    assert holm([0.01, math.nan, 0.04]) == pytest.approx([0.02, math.nan, 0.04], nan_ok=True)


def test_rows_near_chance_get_one_warning_line_naming_them():
    from raysynth.report import _chance_warnings

    table = [Row(step, "FINISHED", per_seed={0: {"accuracy": value}}) for step, value in (("a", 11.0), ("b", 40.0), ("c", 9.5))]
    lines = _chance_warnings(table, chance=10.0)
    assert len(lines) == 1 and "`a`, `c`" in lines[0] and "`b`" not in lines[0]


def test_a_selected_trial_shows_only_the_parameters_it_sampled():
    """A conditional parameter (`when:`) belongs to the selected configuration only where its condition held."""
    import yaml

    space = yaml.safe_load((Path(__file__).parent.parent / "search_spaces/cpu/learned_augmentation.yaml").read_text())
    searched = search_keys(space, "searched")
    affine = {"params.transform": "affine", "params.grid": "4", "params.fit.steps": "160"}
    diffeomorphic = {**affine, "params.transform": "diffeomorphic"}
    assert "grid" not in sampled_keys(affine, searched) and "grid" in sampled_keys(diffeomorphic, searched)


def test_a_search_whose_confirmation_has_not_run_says_so_instead_of_claiming_none_is_planned():
    from raysynth.report import Search, planned_confirm_seeds, render_search

    space = {"tune": {"confirm_seeds": [1, 2, 3]}, "ablation": [{"name": "own", "set": {"tune.confirm_seeds": [7]}}]}
    selected = Row("searched", "FINISHED", per_seed={0: {"accuracy": 70.0}}, params={"lr": "0.1"})
    text = "\n".join(render_search(Search("searched", "val_accuracy", 4, selected, 71.0, None, None,
                                          confirm_seeds=planned_confirm_seeds(space, "searched"))))
    assert planned_confirm_seeds(space, "own") == [7] and "seeds [1, 2, 3] has not finished yet" in text


def test_report_json_writes_an_undefined_p_value_as_null():
    import json

    from raysynth.report import strict_json

    text = strict_json({"p_wilcoxon": math.nan, "p_t": np.float64(0.25), "n": np.int64(3), "ci95": (math.inf, 1.0)})
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in strict JSON")) == \
        {"p_wilcoxon": None, "p_t": 0.25, "n": 3, "ci95": [None, 1.0]}


def test_a_ladder_row_is_also_paired_with_its_own_real_only_set_when_it_logged_one():
    from raysynth.report import render_ladder

    # a condensed set at 50 per class beside a 1-per-class ladder reference: only its own real set is a fair pair
    condensed = Row("dm_50", "FINISHED", per_seed={s: {"accuracy": a, "baseline_accuracy": b}
                                                   for s, (a, b) in enumerate([(83.0, 81.5), (82.6, 81.0), (83.4, 82.2)])})
    table = render_ladder([Row("random_1", "FINISHED", per_seed={s: {"accuracy": 48.0 + s} for s in range(3)}), condensed],
                          "random_1")
    d = paired_difference({0: 83.0, 1: 82.6, 2: 83.4}, {0: 81.5, 1: 81.0, 2: 82.2})
    assert "Δ vs real only [95 % CI]" in table[0] and f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]" in table[3]


def test_a_ladder_over_several_set_sizes_is_plotted_against_each_rows_own_real_set():
    import yaml

    from raysynth.report import sizes_differ

    spaces = {name: yaml.safe_load((Path(__file__).parent.parent / "search_spaces" / name).read_text())
              for name in ("condensation_table_cpu.yaml", "gan_comparison.yaml")}
    assert sizes_differ(spaces["condensation_table_cpu.yaml"]) and not sizes_differ(spaces["gan_comparison.yaml"])


def test_a_row_of_another_set_size_is_not_compared_with_the_reference_nor_in_its_holm_family():
    rows = [Row(label, "FINISHED", per_seed={s: {"accuracy": base + slope * s} for s in range(3)})
            for label, base, slope in (("random_1", 50.0, 3.0), ("dm_1", 65.0, 1.0), ("dm_50", 82.0, 0.5))]
    compare(rows, "random_1", sizes={"random_1": 1, "dm_1": 1, "dm_50": 50})
    alone = paired_difference(rows[1].values("accuracy"), rows[0].values("accuracy"))
    assert rows[2].difference is None and rows[2].other_size and rows[1].p_holm == pytest.approx(alone.p_t)


def test_all_sweeps_reports_the_union_of_the_steps_each_sweep_ran_with_only():
    from raysynth.report import merged_spec

    first = {"budget": {"epochs": 100}, "ablation": [{"name": "random_1"}, {"name": "dm_1", "params": {"lr": 1}}]}
    later = {"budget": {"epochs": 100}, "ablation": [{"name": "koopcon_1"}, {"name": "dm_1", "params": {"lr": 2}}]}
    merged = merged_spec([first, later])
    assert merged["ablation"] == [{"name": "random_1"}, {"name": "dm_1", "params": {"lr": 2}}, {"name": "koopcon_1"}]


def test_the_report_names_the_steps_that_run_at_their_own_budget():
    from raysynth.report import budget_overrides

    spec = {"ablation": [{"name": "dm_10"}, {"name": "dm_10_1000it", "set": {"budget.epochs": 1000}},
                         {"name": "dm_50", "set": {"dataset.images_per_class": 50}}]}
    assert budget_overrides(spec) == " Steps with their own budget: dm_10_1000it (budget.epochs 1000)."


def test_the_search_history_shows_the_trials_asha_stopped_at_their_last_probe():
    import optuna

    study = optuna.create_study(direction="maximize")
    for number, state in enumerate((optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                                    optuna.trial.TrialState.PRUNED)):
        trial = study.ask()
        trial.set_user_attr("tune_trial_id", f"t{number}")
        study.tell(trial, 70.0 if state == optuna.trial.TrialState.COMPLETE else None, state=state)
    # t2 was stopped before its first probe: nothing to show for it
    assert stopped_probes(study, {"t0": 71.0, "t1": 42.5}) == [(1, 42.5)]
