"""Budget windows over the validation records: the best or last validation a run reached
within a budget, per seed.

Budgets: the paper reports the best validation avg@16 reached within 1h, 5h and 10h of training
wall-clock (Table 1). Smaller profiles scale the windows (``budgets`` in the pipeline config);
labels keep the paper's names. A budget counts in its unit (``records.UNITS``).
"""

from __future__ import annotations

import pandas as pd

from evals.report.records import UNITS


def best_within(val: pd.DataFrame, budget: float, unit: str = "seconds") -> pd.DataFrame:
    """Best avg@k per run among validations done within ``budget`` (in ``unit``) of training."""
    within = val[val[UNITS[unit]] <= budget * (1 + 1e-9) + 1e-9]
    return within.groupby(["model", "benchmark", "method", "seed"], as_index=False)["avg_at_k"].max()


def per_seed_best(val: pd.DataFrame, model: str, method: str, benchmarks: list[str], budget: float,
                  unit: str) -> dict[int, float]:
    """seed -> best avg@k within the budget, averaged over ``benchmarks`` (seeds with every one)."""
    best = best_within(val[(val["model"] == model) & (val["method"] == method) & (val["benchmark"].isin(benchmarks))],
                       budget, unit)
    return {int(seed): g["avg_at_k"].mean() for seed, g in best.groupby("seed")
            if g["benchmark"].nunique() == len(benchmarks)}


def per_seed_gain_over_base(val: pd.DataFrame, model: str, method: str, benchmarks: list[str], budget: float,
                            unit: str) -> dict[int, float]:
    """seed -> the last validation within the budget minus that run's step-0 validation, averaged
    over ``benchmarks``. The last, not the best: a maximum over validations that include step 0
    is never below it, and would show a gain from noise alone."""
    runs = val[(val["model"] == model) & (val["method"] == method) & (val["benchmark"].isin(benchmarks))]
    within = runs[runs[UNITS[unit]] <= budget * (1 + 1e-9) + 1e-9].sort_values("step")
    out = {}
    for seed, g in within.groupby("seed"):
        per_b = [r["avg_at_k"].iloc[-1] - r["avg_at_k"].iloc[0] for _, r in g.groupby("benchmark")
                 if r["step"].iloc[0] == 0]
        if len(per_b) == len(benchmarks):
            out[int(seed)] = sum(per_b) / len(per_b)
    return out


def base_validation(val: pd.DataFrame, model: str, benchmark: str) -> float:
    """The base model under the validation protocol: the step-0 validations of every run."""
    v = val[(val["model"] == model) & (val["benchmark"] == benchmark) & (val["step"] == 0)]
    return float(v["avg_at_k"].mean()) if len(v) else float("nan")
