"""Tables, compute-cost accounting, figures and the report, from the runs' own records.

Inputs (all written by ``srpo_ref.trainer`` and ``evals.run``):

    RUNS/<model>/<benchmark>/<method>/seed<k>/{steps.jsonl, val.jsonl, config.yaml}
    EVALS/<model>/base/<benchmark>/results.json
    EVALS/<model>/<train benchmark>/<method>/seed<k>/<benchmark>/results.json

Budgets: the paper reports the best validation avg@16 reached within 1h, 5h and 10h of training
wall-clock (Table 1) and the mean seconds per step within those windows (cost). Smaller profiles
scale the windows (``budgets`` in the pipeline config); labels keep the paper's names. A budget
has a unit (``budget_unit``): ``seconds`` (the paper's; GPU profiles) or a unit the machine's load
cannot change, ``flops``, ``tokens`` or ``steps`` (the CPU profiles), read from the cumulative
counters every step and validation record carries.

Verdicts (``verdict``): a claim is *reproduced* only when the 95% t-interval over seeds (paired
by seed) of the quantity it is about excludes zero in the paper's direction, *contradicted* when
it excludes zero the other way, and *inconclusive (n seeds)* otherwise. The cost claims have two
rules before that one (``COST_VERDICT_RULE``): *not like-for-like* when the two methods ran
different execution policies, and *mechanism absent in this profile* against GRPO when GRPO's
response length does not grow.
Every table is written as CSV and Markdown; the paper's numbers stand beside ours where they
exist (``../shared/paper/*.csv``), with the difference and the spread across seeds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

PAPER_METHOD_NAMES = {"srpo_no_dw": "srpo_no_dynamic_weighting", "adv_mix": "advantage_mix_lambda0.9"}
PHASES = ("generate", "reward", "old_logprob", "teacher_forward", "update", "teacher_ema")
UNITS = {"seconds": "wall_seconds", "flops": "cum_flops", "tokens": "cum_tokens", "steps": "step"}
UNIT_LABELS = {"seconds": "training wall-clock (s)", "flops": "training FLOPs", "tokens": "training tokens", "steps": "training steps"}


def budget_text(budgets: list[dict], unit: str) -> str:
    fmt = {"seconds": lambda v: f"{v:g} s", "flops": lambda v: f"{v:.3g} FLOPs", "tokens": lambda v: f"{v:.3g} tokens",
           "steps": lambda v: f"{v:g} steps"}[unit]
    return ", ".join(f"{b['label']} = {fmt(b['value'])}" for b in budgets)


# ----------------------------------------------------------------------------- verdicts

def precheck_markdown(files: list) -> str:
    """The pre-checks table (one row per ``evals/prechecks.py`` JSON file), or a line saying none
    were configured. Open-answer tasks have no chance level: their cell reads n/a."""
    if not files:
        return "_No pre-checks configured for this profile._\n"
    iv = lambda d: f"{100 * d['mean']:.1f} [{100 * d['low']:.1f}, {100 * d['high']:.1f}]"  # noqa: E731
    lines = ["| model / benchmark | questions x k | base avg@k, % [95% CI] | chance | format compliance | truncated | "
             "length p50 / p90 | teacher vs student accuracy, % (questions) | teacher - student, pts [95% CI] |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f in files:
        r = json.loads(Path(f).read_text())
        st, b, t = r["student"], r["base"], r["teacher"]
        tv = (f"{100 * t['teacher_accuracy']:.1f} vs {100 * t['student_accuracy']:.1f} ({t['questions']})"
              if t.get("questions") else "n/a (no correct sample)")
        td = iv(t["teacher_minus_student"]) if t.get("questions") else "n/a"
        chance = "n/a" if b.get("chance") is None else f"{100 * b['chance']:.0f}"
        lines.append(f"| {Path(f).parent.name} / {r['benchmark']} | {r['questions']} x {r['k']} | {iv(b['avg_at_k'])} | "
                     f"{chance} | {100 * st['format_compliance']:.1f}% | {100 * st['truncated']:.1f}% | "
                     f"{st['length_p50']} / {st['length_p90']} | {tv} | {td} |")
    return "\n".join(lines) + "\n"


def task_choice_markdown(files: list) -> str:
    """The report's task-choice section: every candidate ``evals/task_choice.py`` tried (its
    ``candidates.md``, with ``candidates.json`` beside it for the gate), or "" when none is named."""
    if not files:
        return ""
    md = Path(files[0])
    table = json.loads(md.with_suffix(".json").read_text()) if md.with_suffix(".json").exists() else {}
    g = table.get("gate", {})
    passed = [r["candidate"] for r in table.get("rows", []) if r.get("gate", {}).get("passes")]
    rule = (f"base avg@k in [{100 * g['base_low']:.0f}%, {100 * g['base_high']:.0f}%] with its 95% interval above 0; "
            f"format compliance at least {100 * g['format']:.0f}%; self-teacher minus student at least "
            f"{100 * g['teacher_gain']:.0f} points with its 95% interval above 0") if g else "see evals/task_choice.py"
    return f"""## Task choice (before any training run)

Every candidate tried (task, format warm-up, response budget), measured on training questions at the rollout settings
after its own warm-up; the gate was fixed before the first was measured. Gate: {rule}. Trained on: {passed[0] if passed else 'none (no candidate passed)'}.
From `{md}`:

{md.read_text().strip()}

"""


def _t975(df: int) -> float:
    """The exact two-sided 95% Student t quantile for ``df`` degrees of freedom (scipy)."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def interval(values) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)``: the 95% t-interval of the mean of ``values`` (differences paired
    by seed, or one value per run). Fewer than two values give an infinite interval."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(vals)
    if n == 0:
        return float("nan"), -math.inf, math.inf, 0
    mu = sum(vals) / n
    if n < 2:
        return mu, -math.inf, math.inf, n
    sd = math.sqrt(sum((v - mu) ** 2 for v in vals) / (n - 1))
    half = _t975(n - 1) * sd / math.sqrt(n)
    return mu, mu - half, mu + half, n


def verdict(values, expected_sign: int, noun: str = "seeds") -> tuple[str, tuple[float, float, float, int]]:
    """The verdict on a claim whose paper direction is ``expected_sign`` (+1: the quantity is
    positive, -1: negative), from per-seed values of the quantity (or per-run: ``noun``)."""
    mu, lo, hi, n = interval(values)
    if n == 0:
        return "n/a", (mu, lo, hi, n)
    if (expected_sign > 0 and lo > 0) or (expected_sign < 0 and hi < 0):
        return "reproduced", (mu, lo, hi, n)
    if (expected_sign > 0 and hi < 0) or (expected_sign < 0 and lo > 0):
        return "contradicted", (mu, lo, hi, n)
    return f"inconclusive ({n} {noun})", (mu, lo, hi, n)


def interval_text(iv: tuple[float, float, float, int], scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
    mu, lo, hi, n = iv
    if n < 2:
        return f"{mu * scale:+.{digits}f}{unit} (n={n}, no interval)"
    return f"{mu * scale:+.{digits}f}{unit} [95% CI {lo * scale:+.{digits}f}, {hi * scale:+.{digits}f}], n={n}"


# ----------------------------------------------------------------------------- loading


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []


def load_runs(runs_root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(steps, val): one row per step record / validation record, with run keys as columns."""
    steps, vals = [], []
    for steps_path in sorted(Path(runs_root).glob("*/*/*/seed*/steps.jsonl")):
        run = steps_path.parent
        key = {"model": run.parts[-4], "benchmark": run.parts[-3], "method": run.parts[-2], "seed": int(run.name[4:])}
        for r in _jsonl(steps_path):
            flat = {**key, **{k: v for k, v in r.items() if not isinstance(v, dict)}}
            for group in ("seconds", "tokens", "flops"):
                for phase, v in r.get(group, {}).items():
                    flat[f"{group}_{phase}"] = v
            steps.append(flat)
        vals += [{**key, **v} for v in _jsonl(run / "val.jsonl")]
    return pd.DataFrame(steps), pd.DataFrame(vals)


def load_evals(evals_root: Path) -> pd.DataFrame:
    rows = []
    for res in sorted(Path(evals_root).glob("**/results.json")):
        rel = res.relative_to(evals_root).parts
        r = json.loads(res.read_text())
        if rel[1] == "base":
            key = {"model": rel[0], "train_benchmark": None, "method": "base", "seed": None, "benchmark": rel[2]}
        else:
            key = {"model": rel[0], "train_benchmark": rel[1], "method": rel[2], "seed": int(rel[3][4:]), "benchmark": rel[4]}
        rows.append({**key, **r["metrics"], "tests": r.get("tests")})
    return pd.DataFrame(rows)


def load_paper(paper_dir: Path) -> dict[str, pd.DataFrame]:
    paper_dir = Path(paper_dir)
    out = {}
    for name in ("table1_avg16", "table2_ablations", "cost_seconds_per_step"):
        p = paper_dir / f"{name}.csv"
        out[name] = pd.read_csv(p) if p.exists() else pd.DataFrame()
    return out


# ----------------------------------------------------------------------------- helpers


def _mean_std(values) -> tuple[float, float, int]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return float("nan"), float("nan"), 0
    mu = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mu) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mu, sd, len(vals)


def _fmt(mu, sd=None, n=None, scale=100.0) -> str:
    if mu is None or (isinstance(mu, float) and math.isnan(mu)):
        return "–"
    s = f"{mu * scale:.1f}"
    if sd is not None and n and n > 1:
        s += f" ± {sd * scale:.1f}"
    return s


def best_within(val: pd.DataFrame, budget: float, unit: str = "seconds") -> pd.DataFrame:
    """Best avg@k per run among validations done within ``budget`` (in ``unit``) of training."""
    within = val[val[UNITS[unit]] <= budget * (1 + 1e-9) + 1e-9]
    return within.groupby(["model", "benchmark", "method", "seed"], as_index=False)["avg_at_k"].max()


def per_seed_best(val: pd.DataFrame, model: str, method: str, benchmarks: list[str], budget: float, unit: str) -> dict[int, float]:
    """seed -> best avg@k within the budget, averaged over ``benchmarks`` (seeds with every one)."""
    best = best_within(val[(val["model"] == model) & (val["method"] == method) & (val["benchmark"].isin(benchmarks))], budget, unit)
    return {int(seed): g["avg_at_k"].mean() for seed, g in best.groupby("seed") if g["benchmark"].nunique() == len(benchmarks)}


def per_seed_gain_over_base(val: pd.DataFrame, model: str, method: str, benchmarks: list[str], budget: float, unit: str) -> dict[int, float]:
    """seed -> the last validation within the budget minus that run's step-0 validation, averaged
    over ``benchmarks``. The last, not the best: a maximum over validations that include step 0
    is never below it, and would show a gain from noise alone."""
    runs = val[(val["model"] == model) & (val["method"] == method) & (val["benchmark"].isin(benchmarks))]
    within = runs[runs[UNITS[unit]] <= budget * (1 + 1e-9) + 1e-9].sort_values("step")
    out = {}
    for seed, g in within.groupby("seed"):
        per_b = [r["avg_at_k"].iloc[-1] - r["avg_at_k"].iloc[0] for _, r in g.groupby("benchmark") if r["step"].iloc[0] == 0]
        if len(per_b) == len(benchmarks):
            out[int(seed)] = sum(per_b) / len(per_b)
    return out


def base_validation(val: pd.DataFrame, model: str, benchmark: str) -> float:
    """The base model under the validation protocol: the step-0 validations of every run."""
    v = val[(val["model"] == model) & (val["benchmark"] == benchmark) & (val["step"] == 0)]
    return float(v["avg_at_k"].mean()) if len(v) else float("nan")


def _paper_value(paper: pd.DataFrame, model: str | None, method: str, benchmark: str, budget_h) -> float | None:
    if paper.empty or model is None:
        return None
    hit = paper[(paper["model"] == model) & (paper["method"] == method) & (paper["benchmark"] == benchmark) & (paper["budget_h"] == budget_h)]
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
                rows.append({"model": model, "benchmark": b, "method": "base", "budget": "0", "ours_mean": mu, "ours_std": 0.0,
                             "seeds": 1, "paper": p, "delta": None if p is None or math.isnan(mu) else mu - p})
            for m in methods:
                for bud in budgets:
                    best = best_within(val[(val["model"] == model) & (val["method"] == m)], bud["value"], unit)
                    if b == "average":
                        per_seed = best[best["benchmark"].isin(bench)].groupby("seed")
                        # average only over seeds that have every benchmark
                        seeds_vals = [g["avg_at_k"].mean() for _, g in per_seed if g["benchmark"].nunique() == len(bench)]
                    else:
                        seeds_vals = list(best[best["benchmark"] == b]["avg_at_k"])
                    if not seeds_vals:
                        continue
                    mu, sd, n = _mean_std(seeds_vals)
                    p = _paper_value(paper, pm, m, b, bud["paper_hours"])
                    rows.append({"model": model, "benchmark": b, "method": m, "budget": bud["label"], "ours_mean": mu, "ours_std": sd,
                                 "seeds": n, "paper": p, "delta": None if p is None else mu - p})
    return pd.DataFrame(rows)


def table1_markdown(t1: pd.DataFrame, budgets: list[dict]) -> str:
    if t1.empty:
        return "_No validation records._\n"
    out = []
    for model, g in t1.groupby("model", sort=False):
        has_paper = g["paper"].notna().any()
        head = ["benchmark", "method"] + [f"{b['label']} ours" + (" / paper (Δ)" if has_paper else "") for b in budgets]
        out += [f"**{model}** (avg@k ×100, mean ± std over seeds)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for (b, m), gg in g.groupby(["benchmark", "method"], sort=False):
            cells = [b, m]
            for bud in budgets:
                r = gg[gg["budget"] == (bud["label"] if m != "base" else "0")]
                if r.empty:
                    cells.append("–")
                    continue
                r = r.iloc[0]
                c = _fmt(r["ours_mean"], r["ours_std"], r["seeds"])
                if has_paper:
                    c += f" / {_fmt(r['paper'])}" + (f" ({r['delta'] * 100:+.1f})" if r["delta"] is not None and not pd.isna(r["delta"]) else "")
                cells.append(c)
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def shape_comparison(t1: pd.DataFrame, paper: pd.DataFrame, budgets: list[dict], reference_model: str = "Qwen3-8B") -> pd.DataFrame:
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
                rows.append({"model": model, "budget": bud["label"], "comparison": f"srpo - {other}", "ours": a["srpo"] - a[other],
                             f"paper ({reference_model})": None if p_s is None or p_o is None else p_s - p_o})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- Table 2


def table2(val: pd.DataFrame, budgets: list[dict], variants: list[str], benchmarks: list[str], paper2: pd.DataFrame,
           reference_model: str = "Qwen3-8B", unit: str = "seconds") -> pd.DataFrame:
    rows = []
    if val.empty:
        return pd.DataFrame()
    for model in sorted(val["model"].unique()):
        for v in variants:
            for bud in budgets:
                best = best_within(val[(val["model"] == model) & (val["method"] == v) & (val["benchmark"].isin(benchmarks))], bud["value"], unit)
                per_seed = [g["avg_at_k"].mean() for _, g in best.groupby("seed") if g["benchmark"].nunique() == len(benchmarks)]
                if not per_seed:
                    continue
                mu, sd, n = _mean_std(per_seed)
                p = None
                if not paper2.empty:
                    hit = paper2[(paper2["model"] == reference_model) & (paper2["variant"] == PAPER_METHOD_NAMES.get(v, v)) & (paper2["budget_h"] == bud["paper_hours"])]
                    p = float(hit.iloc[0, -1]) / 100 if len(hit) else None
                rows.append({"model": model, "variant": v, "budget": bud["label"], "ours_mean": mu, "ours_std": sd, "seeds": n,
                             f"paper ({reference_model})": p})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- cost


# the phases whose FLOPs the breakdown and the cost claims' decomposition show
BREAKDOWN_PHASES = ("generate", "old_logprob", "teacher_forward", "update")

# Fixed before any run: when a cost claim is decided, and when it is not.
COST_VERDICT_RULE = (
    "Cost claims (SRPO cheaper per step than GRPO / SDPO, in FLOPs) compare like with like: when SRPO and the other method "
    "differ in execution policy in the window (one pays the old-log-prob pass and the other does not), the verdict is "
    "*not like-for-like (what differs)*, never reproduced or contradicted. Against GRPO the paper attributes the saving to "
    "(i) the teacher running on routed samples only and (ii) SRPO's responses being shorter than GRPO's, whose length grows "
    "over training; so when the 95% t-interval over GRPO runs (model x benchmark x seed) of the least-squares slope of "
    "GRPO's mean response length over the window's steps contains 0 or lies below it, the verdict is *mechanism absent in "
    "this profile* and the measured FLOPs difference stays in the evidence. Against SDPO (teacher on fewer samples, which "
    "can always occur) only the like-for-like guard applies. Otherwise the report's verdict rule (the 95% t-interval over seeds) decides. The evidence of both "
    "carries SRPO minus the other method in GFLOPs/step per phase, averaged over seeds.")


def _pays_old_logprob(steps: pd.DataFrame) -> bool:
    """Whether these steps paid the old-log-prob pass (its FLOPs are recorded as > 0)."""
    return bool("flops_old_logprob" in steps and (steps["flops_old_logprob"].fillna(0) > 0).any())


def _updates_per_step(steps: pd.DataFrame) -> float:
    """Optimizer updates per step (``nan`` for records written before the trainer recorded them)."""
    return float(steps["updates"].mean()) if "updates" in steps and steps["updates"].notna().any() else float("nan")


def _execution_policy(steps: pd.DataFrame) -> dict:
    """What a method's steps executed, as opposed to what the method is: the columns of the
    cost table that say whether two rows can be compared like with like."""
    return {"old_logprob_pass": _pays_old_logprob(steps), "updates_per_step": _updates_per_step(steps)}


def _updates_text(updates: float) -> str:
    return "?" if pd.isna(updates) else f"{updates:g}"


def configuration_differences(cost: pd.DataFrame) -> str:
    """One sentence naming the phases that differ between methods by configuration rather than by
    method: today the old-log-prob pass, which ``optim.old_logprob=auto`` runs only for steps
    with several optimizer updates (GRPO's mini-batches)."""
    head = "Phases that differ between methods by configuration, not by method: "
    if cost.empty or "old_logprob_pass" not in cost:
        return head + "unknown (no execution-policy columns)."
    by_method = cost.groupby("method", sort=False)
    pays = by_method["old_logprob_pass"].any()
    updates = by_method["updates_per_step"].mean()
    payers, others = [m for m in pays.index if pays[m]], [m for m in pays.index if not pays[m]]
    if payers and others:
        upd = lambda ms: "/".join(sorted({_updates_text(updates[m]) for m in ms}))  # noqa: E731
        return (head + f"old_logprob: paid by {', '.join(payers)} only (at {upd(payers)} updates/step; {', '.join(others)} make "
                f"{upd(others)} and skip it: optim.old_logprob=auto runs it only for steps with several updates), so the FLOPs "
                "columns compare those methods under different execution policies.")
    return head + f"none: every method runs the same execution policy (old-log-prob pass: {'yes' if payers else 'no'})."


def cost_table(steps: pd.DataFrame, budgets: list[dict], methods: list[str], benchmarks: list[str] | None = None,
               unit: str = "seconds") -> pd.DataFrame:
    """FLOPs per step (the deterministic cost), seconds per step (total and per phase; read from
    the training jobs, so it depends on the machine's load), tokens per step and the
    teacher-forward share, averaged over the steps inside each window (``unit``), first per run,
    then over runs. Only runs on ``benchmarks`` count, so every method is compared on the same
    tasks."""
    rows = []
    if steps.empty:
        return pd.DataFrame()
    if benchmarks is not None:
        steps = steps[steps["benchmark"].isin(benchmarks)]
        if steps.empty:
            return pd.DataFrame()
    for model in sorted(steps["model"].unique()):
        for m in methods:
            s = steps[(steps["model"] == model) & (steps["method"] == m)]
            if s.empty:
                continue
            for bud in budgets:
                w = s[s[UNITS[unit]] <= bud["value"] * (1 + 1e-9) + 1e-9]
                if w.empty:
                    continue
                per_run = w.groupby(["benchmark", "seed"]).mean(numeric_only=True)
                row = {"model": model, "benchmarks": "+".join(sorted(s["benchmark"].unique())), "method": m, "budget": bud["label"],
                       "runs": len(per_run), "steps": len(w),
                       "s_per_step": per_run["seconds_step"].mean(), "s_per_step_std": per_run["seconds_step"].std(ddof=1) if len(per_run) > 1 else 0.0}
                for ph in PHASES:
                    row[f"s_{ph}"] = per_run.get(f"seconds_{ph}", pd.Series([0.0])).mean()
                    row[f"tokens_{ph}"] = per_run.get(f"tokens_{ph}", pd.Series([0.0])).mean()
                    row[f"flops_{ph}"] = per_run.get(f"flops_{ph}", pd.Series([0.0])).mean()
                total_flops = sum(row[f"flops_{ph}"] for ph in PHASES)
                row["flops_total"] = total_flops
                row["flops_per_step"] = total_flops
                row["teacher_forward_share_time"] = row["s_teacher_forward"] / row["s_per_step"] if row["s_per_step"] else float("nan")
                row["teacher_forward_share_flops"] = row["flops_teacher_forward"] / total_flops if total_flops else float("nan")
                row["frac_sdpo"] = per_run["frac_sdpo"].mean()
                row["response_length"] = per_run["response_length_mean"].mean()
                row.update(_execution_policy(w))
                rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for other in ("grpo", "sdpo"):
        for col, name in (("flops_per_step", f"flops_vs_{other}"), ("s_per_step", f"vs_{other}")):
            ref = df[df["method"] == other].set_index(["model", "benchmarks", "budget"])[col]
            df[name] = [getattr(r, col) / ref[(r.model, r.benchmarks, r.budget)] - 1 if (r.model, r.benchmarks, r.budget) in ref.index else float("nan")
                        for r in df.itertuples()]
    return df


def phase_breakdown_markdown(cost: pd.DataFrame) -> list[str]:
    """GFLOPs per step by phase, with each row's execution policy beside it, so that a difference
    in total FLOPs can be traced to the phase (and the configuration) it comes from."""
    lines = ["FLOPs per step by phase (GFLOPs/step) and execution policy:", "",
             "| model | benchmarks | method | window | " + " | ".join(BREAKDOWN_PHASES) + " | total | old-log-prob pass | updates/step |",
             "|" + "---|" * (len(BREAKDOWN_PHASES) + 7)]
    for r in cost.to_dict("records"):
        phases = " | ".join(f"{r.get(f'flops_{ph}', 0.0) / 1e9:.3f}" for ph in BREAKDOWN_PHASES)
        pays = r.get("old_logprob_pass")
        lines.append(f"| {r['model']} | {r['benchmarks']} | {r['method']} | {r['budget']} | {phases} | {r['flops_per_step'] / 1e9:.3f} | "
                     f"{'?' if pays is None else 'yes' if pays else 'no'} | {_updates_text(r.get('updates_per_step', float('nan')))} |")
    return lines


def cost_markdown(cost: pd.DataFrame, paper_cost: pd.DataFrame, budgets: list[dict], reference_model: str = "Qwen3-8B",
                  unit: str = "seconds", paired: dict | None = None) -> str:
    """The cost table: FLOPs per step first (deterministic), then the training jobs' seconds, and
    below it the paired wall-clock benchmark (``benchmarks/step_cost.py``) when given."""
    if cost.empty:
        return "_No step records._\n"
    lines = [f"Windows in {UNIT_LABELS[unit]}. FLOPs per step are the primary, deterministic cost; seconds per step come from "
             "the training jobs (two at a time on the machine, so they move with its load) and are shown beside them.", "",
             "| model | benchmarks | method | window | GFLOPs/step | vs GRPO (FLOPs) | vs SDPO (FLOPs) | s/step (jobs) | s/step (paper 8B) | "
             "generate | teacher fwd | update | old logp | teacher-fwd share (time / FLOPs) | SDPO-routed | resp. len |",
             "|" + "---|" * 16]
    pct = lambda x: "–" if pd.isna(x) else f"{x * 100:+.1f}%"
    for r in cost.itertuples():
        p = None
        if not paper_cost.empty:
            bud = next(b for b in budgets if b["label"] == r.budget)
            hit = paper_cost[(paper_cost["model"] == reference_model) & (paper_cost["window_h"] == bud["paper_hours"])]
            col = f"{r.method}_s_per_step"
            p = float(hit[col].iloc[0]) if len(hit) and col in hit else None
        lines.append(f"| {r.model} | {r.benchmarks} | {r.method} | {r.budget} | {r.flops_per_step / 1e9:.3f} | {pct(r.flops_vs_grpo)} | "
                     f"{pct(r.flops_vs_sdpo)} | {r.s_per_step:.3f} | {'–' if p is None else f'{p:.1f}'} | {r.s_generate:.3f} | "
                     f"{r.s_teacher_forward:.3f} | {r.s_update:.3f} | {r.s_old_logprob:.3f} | {r.teacher_forward_share_time * 100:.1f}% / "
                     f"{r.teacher_forward_share_flops * 100:.1f}% | {r.frac_sdpo:.2f} | {r.response_length:.1f} |")
    lines += ["", *phase_breakdown_markdown(cost), "", configuration_differences(cost), "", COST_VERDICT_RULE]
    if paired:
        lines += ["", f"Paired wall-clock benchmark (`benchmarks/step_cost.py`: methods interleaved in one process, same prompts and "
                  f"seeds, {paired['rounds']} rounds on {paired['benchmark']}): median s/step [min, max]", "",
                  "| method | median s/step | min | max | GFLOPs/step | vs GRPO (median of paired ratios [min, max]) |", "|---|---|---|---|---|---|"]
        for m, v in paired["methods"].items():
            ratio = v.get("ratio_vs_grpo")
            rtxt = "–" if ratio is None else f"{(ratio['median'] - 1) * 100:+.1f}% [{(ratio['min'] - 1) * 100:+.1f}%, {(ratio['max'] - 1) * 100:+.1f}%]"
            lines.append(f"| {m} | {v['median']:.3f} | {v['min']:.3f} | {v['max']:.3f} | {v['flops_per_step'] / 1e9:.3f} | {rtxt} |")
    paper_line = ""
    if not paper_cost.empty:
        p = paper_cost[paper_cost["model"] == reference_model]
        last = p[p["window_h"] == p["window_h"].max()].iloc[0]
        paper_line = (f"\nPaper ({reference_model}, {int(last['window_h'])}h window, wall-clock): SRPO {last['srpo_s_per_step']:.1f} s/step vs GRPO "
                      f"{last['grpo_s_per_step']:.1f} ({(last['srpo_s_per_step'] / last['grpo_s_per_step'] - 1) * 100:+.1f}%) and SDPO "
                      f"{last['sdpo_s_per_step']:.1f} ({(last['srpo_s_per_step'] / last['sdpo_s_per_step'] - 1) * 100:+.1f}%).\n")
    return "\n".join(lines) + "\n" + paper_line


# ----------------------------------------------------------------------------- evaluation tables


def final_eval_table(evals: pd.DataFrame) -> pd.DataFrame:
    if evals.empty:
        return pd.DataFrame()
    g = evals.groupby(["model", "benchmark", "method"], dropna=False)
    out = g.agg(avg_at_k=("avg_at_k", "mean"), avg_at_k_seed_std=("avg_at_k", lambda x: x.std(ddof=1) if len(x) > 1 else 0.0),
                stderr=("avg_at_k_stderr", "mean"), pass_at_1=("pass_at_1", "mean"), truncation=("truncation_rate", "mean"),
                length=("response_length_mean", "mean"), seeds=("avg_at_k", "size"), tests=("tests", "first")).reset_index()
    return out


def eval_markdown(df: pd.DataFrame, benchmarks: list[str] | None = None, empty_note: str = "_Not evaluated in this profile._") -> str:
    if df.empty:
        return empty_note + "\n"
    if benchmarks is not None:
        df = df[df["benchmark"].isin(benchmarks)]
        if df.empty:
            return empty_note + "\n"
    lines = ["| model | benchmark | method | avg@k ×100 (± seed std) | bootstrap s.e. | pass@1 | truncation | mean length | seeds | tests |", "|" + "---|" * 10]
    for r in df.itertuples():
        lines.append(f"| {r.model} | {r.benchmark} | {r.method} | {_fmt(r.avg_at_k, r.avg_at_k_seed_std, r.seeds)} | {r.stderr * 100:.1f} | "
                     f"{r.pass_at_1 * 100:.1f} | {r.truncation * 100:.1f}% | {r.length:.1f} | {r.seeds} | {r.tests} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- figures

_NO_DATE = {"png": None, "pdf": {"CreationDate": None}}  # reproducible files: no timestamp inside
METHOD_COLORS = {"grpo": "#1f77b4", "sdpo": "#d62728", "srpo": "#2ca02c", "srpo_no_dw": "#9467bd", "adv_mix": "#ff7f0e",
                 "sdpo_failed_only": "#8c564b", "sdpo_correct_only": "#e377c2"}


def _band_plot(ax, df: pd.DataFrame, x: str, y: str, method: str, window: int = 1):
    """Mean over seeds (after a rolling mean within each run) with a min-max band."""
    curves = []
    for _, run in df.groupby(["benchmark", "seed"]):
        run = run.sort_values(x)
        curves.append(pd.Series(run[y].rolling(window, min_periods=1).mean().values, index=run[x].values))
    if not curves:
        return
    grid = sorted(set().union(*[set(c.index) for c in curves]))
    mat = pd.concat([c.reindex(grid).interpolate(limit_area="inside") for c in curves], axis=1)
    color = METHOD_COLORS.get(method)
    ax.plot(grid, mat.mean(axis=1), label=method, color=color, lw=1.8)
    if mat.shape[1] > 1:
        ax.fill_between(grid, mat.min(axis=1), mat.max(axis=1), color=color, alpha=0.18, lw=0)


def figures(steps: pd.DataFrame, val: pd.DataFrame, cost: pd.DataFrame, methods: list[str], out_dir: Path, time_unit: str = "s",
            unit: str = "seconds") -> list[Path]:
    """Writes PNG and PDF figures; returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scale = {"s": 1.0, "min": 60.0, "h": 3600.0}[time_unit] if unit == "seconds" else {"flops": 1e9, "tokens": 1e3, "steps": 1.0}[unit]
    xlabel = f"training wall-clock ({time_unit})" if unit == "seconds" else {"flops": "training GFLOPs", "tokens": "training tokens (thousands)",
                                                                             "steps": "training steps"}[unit]
    written = []

    def save(fig, name):
        fig.tight_layout()
        for ext in ("png", "pdf"):
            fig.savefig(out_dir / f"{name}.{ext}", dpi=130, metadata=_NO_DATE[ext])
        plt.close(fig)
        written.append(out_dir / f"{name}.png")

    if not val.empty:
        _accuracy_figures(plt, val, methods, unit, scale, xlabel, save)
    if not steps.empty:
        _training_curves(plt, steps, methods, out_dir, written)
    if not cost.empty:
        _cost_figures(plt, cost, unit, save)
    return written


def _accuracy_figures(plt, val: pd.DataFrame, methods: list[str], unit: str, scale: float, xlabel: str, save) -> None:
    """Validation accuracy against the budget's unit, per model: one panel per benchmark and the average."""
    v = val.assign(t=val[UNITS[unit]] / scale)
    for model in v["model"].unique():
        vm = v[v["model"] == model]
        bench = sorted(vm["benchmark"].unique())
        fig, axes = plt.subplots(1, len(bench) + 1, figsize=(4.2 * (len(bench) + 1), 3.4), squeeze=False)
        for ax, b in zip(axes[0], bench + ["average"]):
            for m in methods:
                d = vm[vm["method"] == m]
                if b == "average":
                    d = d.groupby(["seed", "step"], as_index=False).agg(avg_at_k=("avg_at_k", "mean"), t=("t", "mean"), n=("benchmark", "nunique"))
                    d = d[d["n"] == len(bench)].assign(benchmark="average")
                else:
                    d = d[d["benchmark"] == b]
                if len(d):
                    _band_plot(ax, d, "t", "avg_at_k", m, window=2)
            ax.set_title(b if b != "average" else f"average of {len(bench)}")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("validation avg@k")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.suptitle(f"{model}: validation accuracy against {xlabel.split(' (')[0]} (rolling mean; band = min-max over seeds)", fontsize=10)
        save(fig, f"accuracy_vs_cost_{model}")


def _training_curves(plt, steps: pd.DataFrame, methods: list[str], out_dir: Path, written: list) -> None:
    """Response length, seconds per step, routing, teacher entropy and accuracy over training steps."""
    bench = sorted(steps["benchmark"].unique())

    def per_benchmark(panels, name, title):
        """One row per metric, one column per benchmark; curves over training steps."""
        fig, axes = plt.subplots(len(panels), len(bench), figsize=(4.6 * len(bench) + 1.6, 3.1 * len(panels)), squeeze=False)
        for row, (col, label, only_routed) in enumerate(panels):
            for j, b in enumerate(bench):
                ax = axes[row][j]
                for m in methods:
                    if only_routed and m == "grpo":
                        continue
                    d = steps[(steps["method"] == m) & (steps["benchmark"] == b)].dropna(subset=[col])
                    if len(d):
                        _band_plot(ax, d, "step", col, m, window=3)
                ax.set_title(f"{b}: {label}", fontsize=9)
                ax.set_xlabel("training step")
                ax.grid(alpha=0.3)
        handles, labels = axes[0][0].get_legend_handles_labels()
        for row in axes:
            for ax in row:
                for h, l in zip(*ax.get_legend_handles_labels()):
                    if l not in labels:
                        handles.append(h), labels.append(l)
        fig.legend(handles, labels, loc="center right", fontsize=8)
        fig.suptitle(f"{title} (rolling mean of 3 steps; band = min-max over seeds)", fontsize=10)
        fig.tight_layout(rect=(0, 0, 1 - 1.3 / fig.get_figwidth(), 1))
        for ext in ("png", "pdf"):
            fig.savefig(out_dir / f"{name}.{ext}", dpi=130, metadata=_NO_DATE[ext])
        plt.close(fig)
        written.append(out_dir / f"{name}.png")

    per_benchmark([("response_length_mean", "mean response length (tokens)", False)], "response_length", "Response length over training")
    per_benchmark([("seconds_step", "seconds per step", False)], "seconds_per_step", "Seconds per training step")
    per_benchmark([("frac_sdpo", "fraction routed to SDPO", True), ("teacher_entropy_mean", "teacher entropy on SDPO tokens (nats)", True),
                   ("accuracy", "training accuracy", False)], "routing_and_entropy", "Routing, teacher entropy and training accuracy")


def _cost_figures(plt, cost: pd.DataFrame, unit: str, save) -> None:
    """Where a step's cost goes, by phase, per model (the last window)."""
    last = cost[cost["budget"] == cost["budget"].iloc[-1]] if "budget" in cost else cost
    last = last[last["benchmarks"] == last["benchmarks"].iloc[0]]  # the main block
    for model in last["model"].unique():
        c = last[last["model"] == model].set_index("method")
        fig, ax = plt.subplots(figsize=(8.0, 3.8))
        bottom = pd.Series(0.0, index=c.index)
        # the profile's own unit: seconds for wall-clock budgets; otherwise the deterministic
        # FLOPs (seconds then depend on the machine's load)
        prefix, divisor, ylabel, what = (("s_", 1.0, "seconds per step", "time") if unit == "seconds"
                                         else ("flops_", 1e9, "GFLOPs per step", "compute"))
        for ph in PHASES:
            vals = c[f"{prefix}{ph}"].fillna(0.0) / divisor
            if vals.sum() > 0:
                ax.bar(c.index, vals, bottom=bottom, label=ph)
                bottom += vals
        ax.set_ylabel(ylabel)
        ax.set_title(f"{model}: where a step's {what} goes (window {last['budget'].iloc[0]})", fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(alpha=0.3, axis="y")
        save(fig, f"cost_phases_{model}")


# ----------------------------------------------------------------------------- the paper's claims


def _slope(df: pd.DataFrame, col: str) -> float:
    d = df.dropna(subset=[col])
    if len(d) < 3:
        return float("nan")
    x, y = d["step"].astype(float), d[col].astype(float)
    return float(((x - x.mean()) * (y - y.mean())).sum() / max(((x - x.mean()) ** 2).sum(), 1e-12))


def _paired(a: dict, b: dict, fn=lambda x, y: x - y) -> list[float]:
    return [fn(a[k], b[k]) for k in sorted(set(a) & set(b))]


def _in_window(steps: pd.DataFrame, method: str, benchmarks: list[str], budget: float, unit: str) -> pd.DataFrame:
    s = steps[(steps["method"] == method) & steps["benchmark"].isin(benchmarks)]
    return s[s[UNITS[unit]] <= budget * (1 + 1e-9) + 1e-9]


def _window_means(steps: pd.DataFrame, method: str, benchmarks: list[str], budget: float, unit: str, col: str) -> dict:
    """seed -> mean of ``col`` over the steps inside the window, averaged over ``benchmarks``."""
    s = _in_window(steps, method, benchmarks, budget, unit)
    per_run = s.groupby(["benchmark", "seed"])[col].mean().reset_index()
    return {int(seed): g[col].mean() for seed, g in per_run.groupby("seed") if g["benchmark"].nunique() == len(benchmarks)}


def _with_phase_flops(steps: pd.DataFrame) -> pd.DataFrame:
    """Every phase's FLOPs column (0 where a phase was not run or not recorded) and their sum."""
    cols = {f"flops_{p}": steps[f"flops_{p}"].fillna(0.0) if f"flops_{p}" in steps else 0.0 for p in PHASES}
    out = steps.assign(**cols)
    return out.assign(flops_step=sum(out[c] for c in cols))


def _phase_decomposition_text(flops: pd.DataFrame, other: str, benchmarks: list[str], budget: float, unit: str) -> str:
    """SRPO minus ``other`` in GFLOPs/step, phase by phase, averaged over the seeds both have:
    where the total difference comes from."""
    parts, n = [], 0
    for ph in BREAKDOWN_PHASES:
        s, o = (_window_means(flops, m, benchmarks, budget, unit, f"flops_{ph}") for m in ("srpo", other))
        diffs = _paired(s, o)
        n = len(diffs)
        parts.append(f"{ph} {sum(diffs) / n / 1e9:+.3f}" if n else f"{ph} –")
    return f"SRPO - {other.upper()} by phase, GFLOPs/step (mean over {n} seeds): " + ", ".join(parts)


def _policy_difference(steps: pd.DataFrame, other: str, benchmarks: list[str], budget: float, unit: str) -> tuple[bool, str]:
    """(whether SRPO and ``other`` ran different execution policies in the window, a description)."""
    pol = {m: _execution_policy(_in_window(steps, m, benchmarks, budget, unit)) for m in ("srpo", other)}
    yes_no = lambda m: "yes" if pol[m]["old_logprob_pass"] else "no"  # noqa: E731
    if pol["srpo"]["old_logprob_pass"] != pol[other]["old_logprob_pass"]:
        at = lambda m: f"{m} {yes_no(m)} at {_updates_text(pol[m]['updates_per_step'])} updates/step"  # noqa: E731
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


def claims(steps: pd.DataFrame, val: pd.DataFrame, budgets: list[dict], unit: str, benchmarks: list[str],
           paired_cost: dict | None = None) -> list[dict]:
    """Every claim of the paper this profile can check, each with its verdict (``verdict``: the
    95% interval over seeds, paired by seed) and the numbers behind it."""
    out = []

    def add(text, values, sign, evidence, scale=100.0, digits=1, unit_txt=" pts", noun="seeds", what="difference", override=None):
        v, iv = verdict(values, sign, noun)
        # ``override``: a verdict fixed by a rule that comes before the interval (the cost claims')
        out.append({"claim": text, "verdict": override or v, "evidence": f"{evidence}; {what} {interval_text(iv, scale, digits, unit_txt)}"})

    if val.empty:
        return out
    first, prev, last = budgets[0], budgets[-2] if len(budgets) > 1 else budgets[0], budgets[-1]
    for model in sorted(val["model"].unique()):
        best = {m: {b["label"]: per_seed_best(val, model, m, benchmarks, b["value"], unit) for b in budgets}
                for m in ("grpo", "sdpo", "srpo")}
        mean = lambda d: 100 * sum(d.values()) / len(d) if d else float("nan")
        for other, margin in (("grpo", "+3.4"), ("sdpo", "+6.3")):
            s, o = best["srpo"][last["label"]], best[other][last["label"]]
            add(f"{model}: SRPO beats {other.upper()} on the average at {last['label']} (paper 8B: {margin})", _paired(s, o), +1,
                f"SRPO {mean(s):.1f} vs {other.upper()} {mean(o):.1f}")
        for m in ("grpo", "sdpo", "srpo"):
            gain = per_seed_gain_over_base(val, model, m, benchmarks, last["value"], unit)
            add(f"{model}: {m.upper()} improves on the base at {last['label']} (the paper: every method does)", list(gain.values()), +1,
                "last validation within the budget minus the run's step-0 validation, mean over benchmarks")
        d, g = best["sdpo"][first["label"]], best["grpo"][first["label"]]
        add(f"{model}: SDPO rises faster than GRPO early ({first['label']})", _paired(d, g), +1, f"SDPO {mean(d):.1f} vs GRPO {mean(g):.1f}")
        if len(budgets) > 1:
            gain = {m: _paired(best[m][last["label"]], best[m][prev["label"]]) for m in ("sdpo", "srpo")}
            seeds = sorted(set(best["sdpo"][last["label"]]) & set(best["srpo"][last["label"]]) & set(best["sdpo"][prev["label"]])
                           & set(best["srpo"][prev["label"]]))
            diff = [(best["sdpo"][last["label"]][k] - best["sdpo"][prev["label"]][k]) - (best["srpo"][last["label"]][k] - best["srpo"][prev["label"]][k])
                    for k in seeds]
            add(f"{model}: SDPO stalls from {prev['label']} to {last['label']} (gains less than SRPO)", diff, -1,
                f"gain {prev['label']}→{last['label']}: SDPO {100 * sum(gain['sdpo']) / max(len(gain['sdpo']), 1):+.1f}, "
                f"SRPO {100 * sum(gain['srpo']) / max(len(gain['srpo']), 1):+.1f}")
        for b in benchmarks:
            drop = {}
            for m in ("sdpo", "srpo"):
                runs = val[(val["model"] == model) & (val["method"] == m) & (val["benchmark"] == b)]
                drop[m] = {int(seed): r["avg_at_k"].max() - r.sort_values("step")["avg_at_k"].iloc[-1] for seed, r in runs.groupby("seed")}
            add(f"{model}/{b}: SDPO collapses late (falls further below its best validation by the end than SRPO)",
                _paired(drop["sdpo"], drop["srpo"]), +1,
                f"best minus last validation: SDPO {mean(drop['sdpo']):.1f}, SRPO {mean(drop['srpo']):.1f}")
    if not steps.empty:
        srpo = steps[(steps["method"] == "srpo") & steps["benchmark"].isin(benchmarks)]
        runs = list(srpo.groupby(["model", "benchmark", "seed"]))
        fr = [_slope(r, "frac_sdpo") for _, r in runs]
        add("SRPO's SDPO-routed fraction falls over training", fr, -1, f"{len(fr)} runs (benchmarks x seeds)",
            scale=1.0, digits=4, unit_txt="/step", noun="runs", what="slope")
        ent = [_slope(r, "teacher_entropy_mean") for _, r in runs]
        add("SRPO's teacher entropy rises over training", ent, +1, f"{len(ent)} runs (benchmarks x seeds), nats",
            scale=1.0, digits=4, unit_txt="/step", noun="runs", what="slope")
        w = last["value"]
        tok = {m: _window_means(steps, m, benchmarks, w, unit, "tokens_teacher_forward") for m in ("srpo", "sdpo")}
        add("SRPO runs the teacher on fewer tokens per step than SDPO", _paired(tok["srpo"], tok["sdpo"], lambda a, b: a / b - 1), -1,
            f"{sum(tok['srpo'].values()) / max(len(tok['srpo']), 1):.0f} vs {sum(tok['sdpo'].values()) / max(len(tok['sdpo']), 1):.0f} tokens/step",
            scale=100.0, unit_txt="%")
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
            add(f"SRPO is cheaper per step than {other.upper()} in the {last['label']} window (FLOPs; paper wall-clock: {paper})",
                _paired(fl["srpo"], fl[other], lambda a, b: a / b - 1), -1, ev, scale=100.0, unit_txt="%", override=override)
    return out
