"""The accuracy tables: Table 1 (best validation within each budget), SRPO's margins against the
paper's, Table 2 (ablations) and the final-evaluation tables, each with its Markdown.

The paper's numbers stand beside ours where they exist (``../shared/paper/*.csv``), with the
difference and the spread across seeds.
"""

from __future__ import annotations

import math

import pandas as pd

from evals.report.stats import mean_std, mean_std_text
from evals.report.windows import base_validation, best_within

PAPER_METHOD_NAMES = {"srpo_no_dw": "srpo_no_dynamic_weighting", "adv_mix": "advantage_mix_lambda0.9"}


def _paper_value(paper: pd.DataFrame, model: str | None, method: str, benchmark: str, budget_h) -> float | None:
    if paper.empty or model is None:
        return None
    hit = paper[(paper["model"] == model) & (paper["method"] == method) & (paper["benchmark"] == benchmark)
                & (paper["budget_h"] == budget_h)]
    return float(hit["avg16"].iloc[0]) / 100 if len(hit) else None


# ----------------------------------------------------------------------------- Table 1


def table1(val: pd.DataFrame, evals: pd.DataFrame, budgets: list[dict], methods: list[str], paper: pd.DataFrame,
           paper_models: dict[str, str], unit: str = "seconds") -> pd.DataFrame:
    """Best avg@k within each budget, per model x benchmark x method, mean ± std over seeds,
    plus the benchmark average; the base row is the step-0 validation (the same protocol and
    questions as every other row). ``evals`` is unused (kept for the callers' signature)."""
    rows = []
    if val.empty:
        return pd.DataFrame()
    for model in sorted(val["model"].unique()):
        pm = paper_models.get(model)
        bench = sorted(val[val["model"] == model]["benchmark"].unique())
        base = {b: base_validation(val, model, b) for b in bench}
        for b in bench + ["average"]:
            mu = sum(base.values()) / len(base) if b == "average" else base[b]
            if not math.isnan(mu):
                p = _paper_value(paper, pm, "base", b, 0)
                rows.append({"model": model, "benchmark": b, "method": "base", "budget": "0", "ours_mean": mu,
                             "ours_std": 0.0, "seeds": 1, "paper": p,
                             "delta": None if p is None or math.isnan(mu) else mu - p})
            for m in methods:
                for bud in budgets:
                    best = best_within(val[(val["model"] == model) & (val["method"] == m)], bud["value"], unit)
                    if b == "average":
                        per_seed = best[best["benchmark"].isin(bench)].groupby("seed")
                        # average only over seeds that have every benchmark
                        seeds_vals = [g["avg_at_k"].mean() for _, g in per_seed
                                      if g["benchmark"].nunique() == len(bench)]
                    else:
                        seeds_vals = list(best[best["benchmark"] == b]["avg_at_k"])
                    if not seeds_vals:
                        continue
                    mu, sd, n = mean_std(seeds_vals)
                    p = _paper_value(paper, pm, m, b, bud["paper_hours"])
                    rows.append({"model": model, "benchmark": b, "method": m, "budget": bud["label"], "ours_mean": mu,
                                 "ours_std": sd, "seeds": n, "paper": p, "delta": None if p is None else mu - p})
    return pd.DataFrame(rows)


def table1_markdown(t1: pd.DataFrame, budgets: list[dict]) -> str:
    """Table 1 in Markdown, one block per model: avg@k x100, ours / the paper's (Δ) where it has one."""
    if t1.empty:
        return "_No validation records._\n"
    out = []
    for model, g in t1.groupby("model", sort=False):
        has_paper = g["paper"].notna().any()
        head = ["benchmark", "method"] + [f"{b['label']} ours" + (" / paper (Δ)" if has_paper else "") for b in budgets]
        out += [f"**{model}** (avg@k ×100, mean ± std over seeds)", "", "| " + " | ".join(head) + " |",
                "|" + "---|" * len(head)]
        for (b, m), gg in g.groupby(["benchmark", "method"], sort=False):
            cells = [b, m]
            for bud in budgets:
                r = gg[gg["budget"] == (bud["label"] if m != "base" else "0")]
                if r.empty:
                    cells.append("–")
                    continue
                r = r.iloc[0]
                c = mean_std_text(r["ours_mean"], r["ours_std"], r["seeds"])
                if has_paper:
                    has_delta = r["delta"] is not None and not pd.isna(r["delta"])
                    c += f" / {mean_std_text(r['paper'])}" + (f" ({r['delta'] * 100:+.1f})" if has_delta else "")
                cells.append(c)
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def shape_comparison(t1: pd.DataFrame, paper: pd.DataFrame, budgets: list[dict],
                     reference_model: str = "Qwen3-8B") -> pd.DataFrame:
    """SRPO's margin over GRPO and SDPO on the benchmark average, ours against the paper's:
    the comparison that still means something when our model and tasks are not the paper's."""
    rows = []
    if t1.empty:
        return pd.DataFrame()
    avg = t1[t1["benchmark"] == "average"]
    for model in avg["model"].unique():
        for bud in budgets:
            a = avg[(avg["model"] == model) & (avg["budget"] == bud["label"])].set_index("method")["ours_mean"]
            for other in ("grpo", "sdpo"):
                if "srpo" not in a or other not in a:
                    continue
                p_s = _paper_value(paper, reference_model, "srpo", "average", bud["paper_hours"])
                p_o = _paper_value(paper, reference_model, other, "average", bud["paper_hours"])
                rows.append({"model": model, "budget": bud["label"], "comparison": f"srpo - {other}",
                             "ours": a["srpo"] - a[other],
                             f"paper ({reference_model})": None if p_s is None or p_o is None else p_s - p_o})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- Table 2


def table2(val: pd.DataFrame, budgets: list[dict], variants: list[str], benchmarks: list[str], paper2: pd.DataFrame,
           reference_model: str = "Qwen3-8B", unit: str = "seconds") -> pd.DataFrame:
    """The ablations: best avg@k within each budget, averaged over ``benchmarks``, per variant,
    mean ± std over seeds, beside the paper's (Table 2 of ``reference_model``)."""
    rows = []
    if val.empty:
        return pd.DataFrame()
    for model in sorted(val["model"].unique()):
        for v in variants:
            for bud in budgets:
                best = best_within(val[(val["model"] == model) & (val["method"] == v)
                                       & (val["benchmark"].isin(benchmarks))], bud["value"], unit)
                per_seed = [g["avg_at_k"].mean() for _, g in best.groupby("seed")
                            if g["benchmark"].nunique() == len(benchmarks)]
                if not per_seed:
                    continue
                mu, sd, n = mean_std(per_seed)
                p = None
                if not paper2.empty:
                    hit = paper2[(paper2["model"] == reference_model)
                                 & (paper2["variant"] == PAPER_METHOD_NAMES.get(v, v))
                                 & (paper2["budget_h"] == bud["paper_hours"])]
                    p = float(hit.iloc[0, -1]) / 100 if len(hit) else None
                rows.append({"model": model, "variant": v, "budget": bud["label"], "ours_mean": mu, "ours_std": sd,
                             "seeds": n, f"paper ({reference_model})": p})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- evaluation tables


def final_eval_table(evals: pd.DataFrame) -> pd.DataFrame:
    """The final checkpoints' evaluations, per model x benchmark x method, averaged over seeds."""
    if evals.empty:
        return pd.DataFrame()
    g = evals.groupby(["model", "benchmark", "method"], dropna=False)
    out = g.agg(avg_at_k=("avg_at_k", "mean"),
                avg_at_k_seed_std=("avg_at_k", lambda x: x.std(ddof=1) if len(x) > 1 else 0.0),
                stderr=("avg_at_k_stderr", "mean"), pass_at_1=("pass_at_1", "mean"),
                truncation=("truncation_rate", "mean"), length=("response_length_mean", "mean"),
                seeds=("avg_at_k", "size"), tests=("tests", "first")).reset_index()
    return out


def eval_markdown(df: pd.DataFrame, benchmarks: list[str] | None = None,
                  empty_note: str = "_Not evaluated in this profile._") -> str:
    """``final_eval_table`` in Markdown, restricted to ``benchmarks`` (``empty_note`` when none is there)."""
    if df.empty:
        return empty_note + "\n"
    if benchmarks is not None:
        df = df[df["benchmark"].isin(benchmarks)]
        if df.empty:
            return empty_note + "\n"
    lines = ["| model | benchmark | method | avg@k ×100 (± seed std) | bootstrap s.e. | pass@1 | truncation | "
             "mean length | seeds | tests |", "|" + "---|" * 10]
    for r in df.itertuples():
        cell = mean_std_text(r.avg_at_k, r.avg_at_k_seed_std, r.seeds)
        lines.append(f"| {r.model} | {r.benchmark} | {r.method} | {cell} | {r.stderr * 100:.1f} | "
                     f"{r.pass_at_1 * 100:.1f} | {r.truncation * 100:.1f}% | {r.length:.1f} | {r.seeds} | {r.tests} |")
    return "\n".join(lines) + "\n"
