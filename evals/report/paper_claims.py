"""The paper's claims this profile can check, each with its verdict (``stats.verdict``: the 95%
interval over seeds, paired by seed) and the numbers behind it: accuracy against the other
methods and the base, SDPO's early rise, stall and late collapse, SRPO's routing and teacher
entropy over training, and the cost claims (with the rules before the interval,
``stats.COST_VERDICT_RULE``).
"""

from __future__ import annotations

import pandas as pd

from evals.report.cost import BREAKDOWN_PHASES, execution_policy, updates_text
from evals.report.records import PHASES, UNITS
from evals.report.stats import interval_text, verdict
from evals.report.windows import per_seed_best, per_seed_gain_over_base

METHODS = ("grpo", "sdpo", "srpo")


def _slope(df: pd.DataFrame, col: str) -> float:
    """The least-squares slope of ``col`` over the training step (``nan`` below 3 points)."""
    d = df.dropna(subset=[col])
    if len(d) < 3:
        return float("nan")
    x, y = d["step"].astype(float), d[col].astype(float)
    return float(((x - x.mean()) * (y - y.mean())).sum() / max(((x - x.mean()) ** 2).sum(), 1e-12))


def _paired(a: dict, b: dict, fn=lambda x, y: x - y) -> list[float]:
    """``fn`` of the two values of every seed both dicts have (seed -> value), in seed order."""
    return [fn(a[k], b[k]) for k in sorted(set(a) & set(b))]


def _mean_points(per_seed: dict) -> float:
    """The mean over seeds, in points (x100)."""
    return 100 * sum(per_seed.values()) / len(per_seed) if per_seed else float("nan")


def _in_window(steps: pd.DataFrame, method: str, benchmarks: list[str], budget: float, unit: str) -> pd.DataFrame:
    """``method``'s step records on ``benchmarks`` inside the budget window (in ``unit``)."""
    s = steps[(steps["method"] == method) & steps["benchmark"].isin(benchmarks)]
    return s[s[UNITS[unit]] <= budget * (1 + 1e-9) + 1e-9]


def _window_means(steps: pd.DataFrame, method: str, benchmarks: list[str], budget: float, unit: str,
                  col: str) -> dict:
    """seed -> mean of ``col`` over the steps inside the window, averaged over ``benchmarks``."""
    s = _in_window(steps, method, benchmarks, budget, unit)
    per_run = s.groupby(["benchmark", "seed"])[col].mean().reset_index()
    return {int(seed): g[col].mean() for seed, g in per_run.groupby("seed")
            if g["benchmark"].nunique() == len(benchmarks)}


def _with_phase_flops(steps: pd.DataFrame) -> pd.DataFrame:
    """Every phase's FLOPs column (0 where a phase was not run or not recorded) and their sum."""
    cols = {f"flops_{p}": steps[f"flops_{p}"].fillna(0.0) if f"flops_{p}" in steps else 0.0 for p in PHASES}
    out = steps.assign(**cols)
    return out.assign(flops_step=sum(out[c] for c in cols))


def _phase_decomposition_text(flops: pd.DataFrame, other: str, benchmarks: list[str], budget: float,
                              unit: str) -> str:
    """SRPO minus ``other`` in GFLOPs/step, phase by phase, averaged over the seeds both have:
    where the total difference comes from."""
    parts, n = [], 0
    for ph in BREAKDOWN_PHASES:
        s, o = (_window_means(flops, m, benchmarks, budget, unit, f"flops_{ph}") for m in ("srpo", other))
        diffs = _paired(s, o)
        n = len(diffs)
        parts.append(f"{ph} {sum(diffs) / n / 1e9:+.3f}" if n else f"{ph} –")
    return f"SRPO - {other.upper()} by phase, GFLOPs/step (mean over {n} seeds): " + ", ".join(parts)


def _policy_difference(steps: pd.DataFrame, other: str, benchmarks: list[str], budget: float,
                       unit: str) -> tuple[bool, str]:
    """(whether SRPO and ``other`` ran different execution policies in the window, a description)."""
    pol = {m: execution_policy(_in_window(steps, m, benchmarks, budget, unit)) for m in ("srpo", other)}
    yes_no = lambda m: "yes" if pol[m]["old_logprob_pass"] else "no"  # noqa: E731
    if pol["srpo"]["old_logprob_pass"] != pol[other]["old_logprob_pass"]:
        at = lambda m: f"{m} {yes_no(m)} at {updates_text(pol[m]['updates_per_step'])} updates/step"  # noqa: E731
        return True, f"old-log-prob pass: {at(other)}, {at('srpo')}"
    return False, f"old-log-prob pass {yes_no('srpo')} for both"


def _grpo_length_mechanism_absent(steps: pd.DataFrame, benchmarks: list[str], budget: float, unit: str) -> str | None:
    """The verdict when the mechanism the paper credits for SRPO's saving against GRPO (GRPO's
    responses growing longer than SRPO's) is not there: the slope of GRPO's mean response length
    over the window's steps, one per run, has a 95% interval that does not lie above 0. ``None``
    when the mechanism is present (or cannot be measured: no GRPO run), so the normal rule applies."""
    grpo = _in_window(steps, "grpo", benchmarks, budget, unit)
    if grpo.empty or "response_length_mean" not in grpo:
        return None
    slopes = [_slope(run, "response_length_mean") for _, run in grpo.groupby(["model", "benchmark", "seed"])]
    grows, iv = verdict(slopes, +1, "runs")
    if grows == "reproduced" or iv[3] == 0:
        return None
    return (f"mechanism absent in this profile (GRPO's response length does not grow: slope "
            f"{interval_text(iv, 1.0, 3, ' tokens/step')})")


def _add_claim(out: list[dict], text: str, values, sign: int, evidence: str, scale=100.0, digits=1, unit_txt=" pts",
               noun="seeds", what="difference", override=None) -> None:
    """Appends a claim with its verdict on ``values`` (paper direction ``sign``) and its evidence."""
    v, iv = verdict(values, sign, noun)
    # ``override``: a verdict fixed by a rule that comes before the interval (the cost claims')
    out.append({"claim": text, "verdict": override or v,
                "evidence": f"{evidence}; {what} {interval_text(iv, scale, digits, unit_txt)}"})


def _stall_claim(out: list[dict], model: str, best: dict, prev: dict, last: dict) -> None:
    """SDPO stalls from the second-to-last budget to the last: it gains less than SRPO."""
    gain = {m: _paired(best[m][last["label"]], best[m][prev["label"]]) for m in ("sdpo", "srpo")}
    seeds = sorted(set(best["sdpo"][last["label"]]) & set(best["srpo"][last["label"]])
                   & set(best["sdpo"][prev["label"]]) & set(best["srpo"][prev["label"]]))
    diff = [(best["sdpo"][last["label"]][k] - best["sdpo"][prev["label"]][k])
            - (best["srpo"][last["label"]][k] - best["srpo"][prev["label"]][k])
            for k in seeds]
    _add_claim(out, f"{model}: SDPO stalls from {prev['label']} to {last['label']} (gains less than SRPO)", diff, -1,
               f"gain {prev['label']}→{last['label']}: "
               f"SDPO {100 * sum(gain['sdpo']) / max(len(gain['sdpo']), 1):+.1f}, "
               f"SRPO {100 * sum(gain['srpo']) / max(len(gain['srpo']), 1):+.1f}")


def _collapse_claims(out: list[dict], val: pd.DataFrame, model: str, benchmarks: list[str]) -> None:
    """Per benchmark: SDPO falls further below its best validation by the end than SRPO."""
    for b in benchmarks:
        drop = {}
        for m in ("sdpo", "srpo"):
            runs = val[(val["model"] == model) & (val["method"] == m) & (val["benchmark"] == b)]
            drop[m] = {int(seed): r["avg_at_k"].max() - r.sort_values("step")["avg_at_k"].iloc[-1]
                       for seed, r in runs.groupby("seed")}
        _add_claim(out, f"{model}/{b}: SDPO collapses late "
                   "(falls further below its best validation by the end than SRPO)",
                   _paired(drop["sdpo"], drop["srpo"]), +1,
                   f"best minus last validation: SDPO {_mean_points(drop['sdpo']):.1f}, "
                   f"SRPO {_mean_points(drop['srpo']):.1f}")


def _accuracy_claims(out: list[dict], val: pd.DataFrame, model: str, budgets: list[dict], first: dict, prev: dict,
                     last: dict, unit: str, benchmarks: list[str]) -> None:
    """One model's accuracy claims: SRPO against GRPO and SDPO, every method against the base,
    SDPO's early rise, its stall and its late collapse."""
    best = {m: {b["label"]: per_seed_best(val, model, m, benchmarks, b["value"], unit) for b in budgets}
            for m in METHODS}
    for other, margin in (("grpo", "+3.4"), ("sdpo", "+6.3")):
        s, o = best["srpo"][last["label"]], best[other][last["label"]]
        _add_claim(out, f"{model}: SRPO beats {other.upper()} on the average at {last['label']} (paper 8B: {margin})",
                   _paired(s, o), +1, f"SRPO {_mean_points(s):.1f} vs {other.upper()} {_mean_points(o):.1f}")
    for m in METHODS:
        gain = per_seed_gain_over_base(val, model, m, benchmarks, last["value"], unit)
        _add_claim(out, f"{model}: {m.upper()} improves on the base at {last['label']} (the paper: every method does)",
                   list(gain.values()), +1,
                   "last validation within the budget minus the run's step-0 validation, mean over benchmarks")
    d, g = best["sdpo"][first["label"]], best["grpo"][first["label"]]
    _add_claim(out, f"{model}: SDPO rises faster than GRPO early ({first['label']})", _paired(d, g), +1,
               f"SDPO {_mean_points(d):.1f} vs GRPO {_mean_points(g):.1f}")
    if len(budgets) > 1:
        _stall_claim(out, model, best, prev, last)
    _collapse_claims(out, val, model, benchmarks)


def _training_dynamics_claims(out: list[dict], steps: pd.DataFrame, benchmarks: list[str]) -> None:
    """SRPO's SDPO-routed fraction falls and its teacher entropy rises: slopes, one per run."""
    srpo = steps[(steps["method"] == "srpo") & steps["benchmark"].isin(benchmarks)]
    runs = list(srpo.groupby(["model", "benchmark", "seed"]))
    fr = [_slope(r, "frac_sdpo") for _, r in runs]
    _add_claim(out, "SRPO's SDPO-routed fraction falls over training", fr, -1, f"{len(fr)} runs (benchmarks x seeds)",
               scale=1.0, digits=4, unit_txt="/step", noun="runs", what="slope")
    ent = [_slope(r, "teacher_entropy_mean") for _, r in runs]
    _add_claim(out, "SRPO's teacher entropy rises over training", ent, +1,
               f"{len(ent)} runs (benchmarks x seeds), nats",
               scale=1.0, digits=4, unit_txt="/step", noun="runs", what="slope")


def _teacher_tokens_claim(out: list[dict], steps: pd.DataFrame, window: float, unit: str,
                          benchmarks: list[str]) -> None:
    """SRPO runs the teacher on fewer tokens per step than SDPO (relative difference, paired by seed)."""
    tok = {m: _window_means(steps, m, benchmarks, window, unit, "tokens_teacher_forward") for m in ("srpo", "sdpo")}
    _add_claim(out, "SRPO runs the teacher on fewer tokens per step than SDPO",
               _paired(tok["srpo"], tok["sdpo"], lambda a, b: a / b - 1), -1,
               f"{sum(tok['srpo'].values()) / max(len(tok['srpo']), 1):.0f} vs "
               f"{sum(tok['sdpo'].values()) / max(len(tok['sdpo']), 1):.0f} tokens/step",
               scale=100.0, unit_txt="%")


def _cost_claims(out: list[dict], steps: pd.DataFrame, last: dict, unit: str, benchmarks: list[str],
                 paired_cost: dict | None) -> None:
    """SRPO is cheaper per step than GRPO and SDPO in the last window, in FLOPs, decided by
    ``stats.COST_VERDICT_RULE`` before the interval."""
    w = last["value"]
    flops = _with_phase_flops(steps)
    fl = {m: _window_means(flops, m, benchmarks, w, unit, "flops_step") for m in ("srpo", "grpo", "sdpo")}
    for other, paper in (("grpo", "-17.2%"), ("sdpo", "-9.4%")):
        ev = (f"{sum(fl['srpo'].values()) / max(len(fl['srpo']), 1) / 1e9:.3f} vs "
              f"{sum(fl[other].values()) / max(len(fl[other]), 1) / 1e9:.3f} GFLOPs/step")
        ev += "; " + _phase_decomposition_text(flops, other, benchmarks, w, unit)
        policy_diff, policy_txt = _policy_difference(flops, other, benchmarks, w, unit)
        ev += f"; execution policy: {policy_txt}"
        if paired_cost and other in paired_cost["methods"] and "srpo" in paired_cost["methods"]:
            ps, po = paired_cost["methods"]["srpo"]["median"], paired_cost["methods"][other]["median"]
            ev += f"; paired wall-clock {ps:.3f} vs {po:.3f} s/step ({(ps / po - 1) * 100:+.1f}%)"
        # the like-for-like guard first: a difference in execution policy is not a difference in method
        override = f"not like-for-like ({policy_txt})" if policy_diff else None
        if override is None and other == "grpo":
            override = _grpo_length_mechanism_absent(steps, benchmarks, w, unit)
        _add_claim(out, f"SRPO is cheaper per step than {other.upper()} in the {last['label']} window "
                   f"(FLOPs; paper wall-clock: {paper})",
                   _paired(fl["srpo"], fl[other], lambda a, b: a / b - 1), -1, ev, scale=100.0, unit_txt="%",
                   override=override)


def claims(steps: pd.DataFrame, val: pd.DataFrame, budgets: list[dict], unit: str, benchmarks: list[str],
           paired_cost: dict | None = None) -> list[dict]:
    """Every claim of the paper this profile can check, each with its verdict (``verdict``: the
    95% interval over seeds, paired by seed) and the numbers behind it."""
    out = []
    if val.empty:
        return out
    first, prev, last = budgets[0], budgets[-2] if len(budgets) > 1 else budgets[0], budgets[-1]
    for model in sorted(val["model"].unique()):
        _accuracy_claims(out, val, model, budgets, first, prev, last, unit, benchmarks)
    if not steps.empty:
        _training_dynamics_claims(out, steps, benchmarks)
        _teacher_tokens_claim(out, steps, last["value"], unit, benchmarks)
        _cost_claims(out, steps, last, unit, benchmarks, paired_cost)
    return out
