"""Budget windows in every unit and the verdict rule, on hand-made records (evals.report)."""

import math

import pandas as pd
import pytest

from evals import report


def test_interval_matches_hand_computed_t_interval():
    mu, lo, hi, n = report.interval([1.0, 2.0, 3.0, 4.0])
    sd = math.sqrt(sum((v - 2.5) ** 2 for v in [1, 2, 3, 4]) / 3)
    half = 3.182446 * sd / 2  # t_0.975 with 3 degrees of freedom
    assert (mu, n) == (2.5, 4)
    assert lo == pytest.approx(2.5 - half) and hi == pytest.approx(2.5 + half)
    assert report.interval([0.3]) == (0.3, -math.inf, math.inf, 1)


# printed two-sided 95% Student t quantiles (three decimals), including the degrees of freedom a
# step table skipped: 11, 13 and 14 (the old table answered them with df 12's and df 15's value)
T975_PRINTED = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 7: 2.365, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160,
                14: 2.145, 15: 2.131, 25: 2.060, 40: 2.021, 120: 1.980}


@pytest.mark.parametrize("df, q", sorted(T975_PRINTED.items()))
def test_t_quantile_is_exact(df, q):
    assert round(report._t975(df), 3) == q


def test_interval_uses_the_exact_quantile_between_table_rows():
    vals = [0.1 * i for i in range(12)]  # df = 11
    mu, lo, hi, n = report.interval(vals)
    sd = math.sqrt(sum((v - mu) ** 2 for v in vals) / 11)
    assert n == 12 and (hi - lo) / 2 == pytest.approx(2.200985 * sd / math.sqrt(12), rel=1e-6)
    assert (hi - lo) / 2 > 2.179 * sd / math.sqrt(12)  # wider than the old table's (df 12) interval


@pytest.mark.parametrize(
    "values, sign, expected",
    [
        ([0.05, 0.06, 0.04, 0.05], +1, "reproduced"),  # all clearly positive
        ([0.05, 0.06, 0.04, 0.05], -1, "contradicted"),  # clearly the other way
        ([0.05, -0.04, 0.06, -0.05], +1, "inconclusive (4 seeds)"),  # the interval straddles zero
        ([-0.02, -0.03, -0.025, -0.022], -1, "reproduced"),
        ([0.2, 0.01], +1, "inconclusive (2 seeds)"),  # positive mean, too few seeds for the spread
        ([0.1], +1, "inconclusive (1 seeds)"),  # one seed never decides
        ([], +1, "n/a"),
    ],
)
def test_verdict_rule_on_hand_made_seed_tables(values, sign, expected):
    assert report.verdict(values, sign)[0] == expected


def _val_records():
    """Two runs; validation every 2 steps with the cumulative counters the trainer records."""
    rows = []
    for method, accs in (("grpo", [0.2, 0.5, 0.6, 0.9]), ("srpo", [0.2, 0.7, 0.8, 0.7])):
        for i, acc in enumerate(accs):
            step = 2 * i
            rows.append({"model": "m", "benchmark": "b", "method": method, "seed": 0, "step": step, "avg_at_k": acc,
                         "wall_seconds": 10.0 * step * (2 if method == "grpo" else 1),  # grpo's machine was busy
                         "cum_flops": 1e9 * step * (1.5 if method == "grpo" else 1.0), "cum_tokens": 100 * step})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "unit, budget, expected",
    [
        ("steps", 2, {"grpo": 0.5, "srpo": 0.7}),
        ("steps", 6, {"grpo": 0.9, "srpo": 0.8}),
        ("flops", 4e9, {"grpo": 0.5, "srpo": 0.8}),  # grpo costs 1.5x the FLOPs per step
        ("tokens", 400, {"grpo": 0.6, "srpo": 0.8}),
        ("seconds", 40, {"grpo": 0.5, "srpo": 0.8}),
    ],
)
def test_budget_windows_in_each_unit(unit, budget, expected):
    best = report.best_within(_val_records(), budget, unit).set_index("method")["avg_at_k"].to_dict()
    assert best == pytest.approx(expected)


def test_table1_base_row_is_the_step0_validation():
    val = _val_records()
    t1 = report.table1(val, pd.DataFrame(), [{"label": "1h", "paper_hours": 1, "value": 2}], ["grpo", "srpo"],
                       pd.DataFrame(), {}, "steps")
    base = t1[(t1["method"] == "base") & (t1["benchmark"] == "b")]
    assert float(base["ours_mean"].iloc[0]) == pytest.approx(0.2)


def test_claims_use_paired_intervals():
    rows = []
    for seed in range(4):
        for method, acc in (("grpo", 0.50), ("sdpo", 0.40), ("srpo", 0.60)):
            for step in (0, 2, 4):
                rows.append({"model": "m", "benchmark": "b", "method": method, "seed": seed, "step": step,
                             "avg_at_k": 0.2 if step == 0 else acc + 0.01 * seed + 0.005 * step,
                             "cum_flops": step * 1e9,
                             "wall_seconds": step, "cum_tokens": step})
    val = pd.DataFrame(rows)
    budgets = [{"label": "1h", "paper_hours": 1, "value": 2e9}, {"label": "10h", "paper_hours": 10, "value": 4e9}]
    out = {r["claim"]: r for r in report.claims(pd.DataFrame(), val, budgets, "flops", ["b"])}
    assert out["m: SRPO beats GRPO on the average at 10h (paper 8B: +3.4)"]["verdict"] == "reproduced"
    assert out["m: SDPO rises faster than GRPO early (1h)"]["verdict"] == "contradicted"
    assert "95% CI" in out["m: SRPO beats SDPO on the average at 10h (paper 8B: +6.3)"]["evidence"]
    assert out["m: SRPO improves on the base at 10h (the paper: every method does)"]["verdict"] == "reproduced"


def test_improvement_over_the_base_is_the_last_validation_not_the_best():
    """A run that rises and falls back to its start has not improved, though its best is above it;
    validations past the budget do not count."""
    rows = []
    for seed, path in enumerate([(0.3, 0.6, 0.3, 0.9), (0.4, 0.7, 0.4, 0.9), (0.2, 0.5, 0.25, 0.9)]):
        for step, acc in enumerate(path):
            rows.append({"model": "m", "benchmark": "b", "method": "grpo", "seed": seed, "step": step, "avg_at_k": acc,
                         "cum_flops": step * 1e9, "wall_seconds": step, "cum_tokens": step})
    val = pd.DataFrame(rows)
    gain = report.per_seed_gain_over_base(val, "m", "grpo", ["b"], 2e9, "flops")
    assert gain == pytest.approx({0: 0.0, 1: 0.0, 2: 0.05})
    assert report.per_seed_gain_over_base(val, "m", "grpo", ["b"], 3e9, "flops") == pytest.approx({0: 0.6, 1: 0.5,
                                                                                                   2: 0.7})
    assert report.per_seed_gain_over_base(val[val["step"] > 0], "m", "grpo", ["b"], 3e9,
                                          "flops") == {}  # no step 0: no base


# ----------------------------------------------------------------------------- cost claims

COST_BUDGETS = [{"label": "1h", "paper_hours": 1, "value": 3}, {"label": "10h", "paper_hours": 10, "value": 6}]
# GFLOPs per step by phase: SRPO generates less (shorter responses) but runs the teacher a little
PHASE_GFLOPS = {"grpo": {"generate": 12.0, "teacher_forward": 0.0, "update": 6.0},
                "sdpo": {"generate": 12.0, "teacher_forward": 4.0, "update": 6.0},
                "srpo": {"generate": 8.0, "teacher_forward": 1.0, "update": 6.0}}
UPDATES = {"grpo": 4, "sdpo": 1, "srpo": 1}


def _cost_steps(old_logprob_paid_by, grpo_length_slopes):
    """Step records as ``load_runs`` flattens them: 3 methods x 4 seeds x steps 1..6, one
    benchmark. ``old_logprob_paid_by``: the methods whose steps pay a 3-GFLOP old-log-prob pass;
    ``grpo_length_slopes``: per seed, how fast GRPO's mean response length grows (tokens/step)."""
    rows = []
    for method, gflops in PHASE_GFLOPS.items():
        for seed in range(4):
            for step in range(1, 7):
                phase = {**gflops, "old_logprob": 3.0 if method in old_logprob_paid_by else 0.0, "reward": 0.0,
                         "teacher_ema": 0.0}
                phase["update"] += 0.02 * seed if method == "srpo" else 0.0  # a seed-to-seed spread
                length = 100 + grpo_length_slopes[seed] * step if method == "grpo" else 80.0
                row = {"model": "m", "benchmark": "b", "method": method, "seed": seed, "step": step,
                       "updates": UPDATES[method],
                       "cum_flops": step * 2e10, "wall_seconds": float(step), "cum_tokens": step * 100,
                       "seconds_step": 1.0,
                       "frac_sdpo": 0.0 if method == "grpo" else 0.5,
                       "response_length_mean": length + (-1) ** step * 0.3,
                       "teacher_entropy_mean": None if method == "grpo" else 1.0}
                for ph in report.PHASES:
                    row[f"flops_{ph}"] = phase[ph] * 1e9
                    row[f"seconds_{ph}"] = phase[ph] / 100
                    row[f"tokens_{ph}"] = phase[ph] * 10
                rows.append(row)
    return pd.DataFrame(rows)


def _cost_val():
    """Minimal validation records so that ``claims`` runs (its cost claims only read steps)."""
    return pd.DataFrame([{"model": "m", "benchmark": "b", "method": m, "seed": s, "step": st, "avg_at_k": 0.5,
                          "cum_flops": st * 2e10,
                          "wall_seconds": float(st),
                          "cum_tokens": st * 100} for m in PHASE_GFLOPS for s in range(4) for st in (0, 3, 6)])


GROWS = [5.0, 5.5, 6.0, 6.5]
FLAT = [0.5, -0.5, 0.4, -0.4]  # the interval over the four runs contains 0


def _cost_claims(old_logprob_paid_by, grpo_length_slopes):
    out = report.claims(_cost_steps(old_logprob_paid_by, grpo_length_slopes), _cost_val(), COST_BUDGETS, "steps", ["b"])
    by = {other: r for r in out for other in ("grpo",
                                              "sdpo") if r["claim"].startswith("SRPO is cheaper per step than "
                                                                               f"{other.upper()}")}
    assert set(by) == {"grpo", "sdpo"}
    return by


def test_cost_claim_guard_fires_when_execution_policies_differ():
    by = _cost_claims(old_logprob_paid_by={"grpo"}, grpo_length_slopes=GROWS)  # optim.old_logprob=auto
    assert by["grpo"]["verdict"] == ("not like-for-like (old-log-prob pass: grpo yes at 4 updates/step, "
                                     "srpo no at 1 updates/step)")
    # SDPO and SRPO both skip the pass: like for like, and SRPO's teacher runs on fewer samples
    assert by["sdpo"]["verdict"] == "reproduced"
    # the measured difference stays in the evidence
    assert "difference -28.4% [95% CI -28.6, -28.2], n=4" in by["grpo"]["evidence"]


def test_cost_claim_guard_does_not_fire_when_every_method_pays_the_pass():
    by = _cost_claims(old_logprob_paid_by={"grpo", "sdpo", "srpo"},
                      grpo_length_slopes=GROWS)  # optim.old_logprob=always
    assert by["grpo"]["verdict"] == "reproduced"
    assert "old-log-prob pass yes for both" in by["grpo"]["evidence"]


def test_mechanism_rule_fires_when_grpo_length_does_not_grow():
    by = _cost_claims(old_logprob_paid_by={"grpo", "sdpo", "srpo"}, grpo_length_slopes=FLAT)
    assert by["grpo"]["verdict"].startswith("mechanism absent in this profile (GRPO's response length does not grow: "
                                            "slope +0.051 tokens/step "
                                            "[95% CI -0.780, +0.883], n=4)")
    # the FLOPs difference is still reported
    assert "difference -14.1% [95% CI -14.3, -13.9], n=4" in by["grpo"]["evidence"]
    # against SDPO the mechanism (teacher on fewer samples) can always occur: only the guard applies
    assert by["sdpo"]["verdict"] == "reproduced"


def test_mechanism_rule_fires_when_grpo_length_shrinks():
    by = _cost_claims(old_logprob_paid_by={"grpo", "sdpo", "srpo"}, grpo_length_slopes=[-5.0, -5.5, -6.0, -6.5])
    assert by["grpo"]["verdict"].startswith("mechanism absent in this profile")


def test_cost_claims_carry_the_phase_decomposition():
    by = _cost_claims(old_logprob_paid_by={"grpo"}, grpo_length_slopes=GROWS)
    assert ("SRPO - GRPO by phase, GFLOPs/step (mean over 4 seeds): generate -4.000, old_logprob -3.000, "
            "teacher_forward +1.000, "
            "update +0.030") in by["grpo"]["evidence"]
    assert ("SRPO - SDPO by phase, GFLOPs/step (mean over 4 seeds): generate -4.000, old_logprob +0.000, "
            "teacher_forward -3.000, "
            "update +0.030") in by["sdpo"]["evidence"]


def test_cost_markdown_shows_phase_breakdown_policy_and_configuration_sentence():
    cost = report.cost_table(_cost_steps({"grpo"}, GROWS), COST_BUDGETS, ["grpo", "sdpo", "srpo"], ["b"], "steps")
    assert cost.set_index(["method", "budget"])["old_logprob_pass"].to_dict() == {
        (m, b): m == "grpo" for m in ("grpo", "sdpo", "srpo") for b in ("1h", "10h")}
    md = report.cost_markdown(cost, pd.DataFrame(), COST_BUDGETS, unit="steps")
    assert ("| model | benchmarks | method | window | generate | old_logprob | teacher_forward | update | total "
            "| old-log-prob pass | updates/step |") in md
    assert "| m | b | grpo | 10h | 12.000 | 3.000 | 0.000 | 6.000 | 21.000 | yes | 4 |" in md
    assert "| m | b | srpo | 10h | 8.000 | 0.000 | 1.000 | 6.030 | 15.030 | no | 1 |" in md
    assert ("old_logprob: paid by grpo only (at 4 updates/step; sdpo, srpo make 1 and skip it: "
            "optim.old_logprob=auto") in md
    assert "not like-for-like" in md and "mechanism absent in this profile" in md  # the rule is printed with the table

    same = report.cost_table(_cost_steps({"grpo", "sdpo", "srpo"}, GROWS), COST_BUDGETS, ["grpo", "sdpo", "srpo"],
                             ["b"], "steps")
    md_same = report.cost_markdown(same, pd.DataFrame(), COST_BUDGETS, unit="steps")
    assert "none: every method runs the same execution policy (old-log-prob pass: yes)." in md_same
    assert "paid by" not in md_same
