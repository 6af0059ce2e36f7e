"""Budget windows in every unit and the verdict rule, on hand-made records (srpo_ref.report)."""

import math

import pandas as pd
import pytest

from srpo_ref import report


def test_interval_matches_hand_computed_t_interval():
    mu, lo, hi, n = report.interval([1.0, 2.0, 3.0, 4.0])
    sd = math.sqrt(sum((v - 2.5) ** 2 for v in [1, 2, 3, 4]) / 3)
    half = 3.182 * sd / 2
    assert (mu, n) == (2.5, 4)
    assert lo == pytest.approx(2.5 - half) and hi == pytest.approx(2.5 + half)
    assert report.interval([0.3]) == (0.3, -math.inf, math.inf, 1)


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
    t1 = report.table1(val, pd.DataFrame(), [{"label": "1h", "paper_hours": 1, "value": 2}], ["grpo", "srpo"], pd.DataFrame(), {}, "steps")
    base = t1[(t1["method"] == "base") & (t1["benchmark"] == "b")]
    assert float(base["ours_mean"].iloc[0]) == pytest.approx(0.2)


def test_claims_use_paired_intervals():
    rows = []
    for seed in range(4):
        for method, acc in (("grpo", 0.50), ("sdpo", 0.40), ("srpo", 0.60)):
            for step in (0, 2, 4):
                rows.append({"model": "m", "benchmark": "b", "method": method, "seed": seed, "step": step,
                             "avg_at_k": 0.2 if step == 0 else acc + 0.01 * seed + 0.005 * step, "cum_flops": step * 1e9,
                             "wall_seconds": step, "cum_tokens": step})
    val = pd.DataFrame(rows)
    budgets = [{"label": "1h", "paper_hours": 1, "value": 2e9}, {"label": "10h", "paper_hours": 10, "value": 4e9}]
    out = {r["claim"]: r for r in report.claims(pd.DataFrame(), val, budgets, "flops", ["b"])}
    assert out["m: SRPO beats GRPO on the average at 10h (paper 8B: +3.4)"]["verdict"] == "reproduced"
    assert out["m: SDPO rises faster than GRPO early (1h)"]["verdict"] == "contradicted"
    assert "95% CI" in out["m: SRPO beats SDPO on the average at 10h (paper 8B: +6.3)"]["evidence"]
