"""Compute-cost accounting from the step records: FLOPs, seconds and tokens per step by phase
within each budget window, the execution policy each method ran, and the cost table's Markdown.

The paper reports the mean seconds per step within its 1h, 5h and 10h windows; the profiles'
primary cost is the deterministic FLOPs per step, with the training jobs' seconds beside it.
"""

from __future__ import annotations

import pandas as pd

from evals.report.records import PHASES, UNIT_LABELS, UNITS
from evals.report.stats import COST_VERDICT_RULE

# the phases whose FLOPs the breakdown and the cost claims' decomposition show
BREAKDOWN_PHASES = ("generate", "old_logprob", "teacher_forward", "update")


def _pays_old_logprob(steps: pd.DataFrame) -> bool:
    """Whether these steps paid the old-log-prob pass (its FLOPs are recorded as > 0)."""
    return bool("flops_old_logprob" in steps and (steps["flops_old_logprob"].fillna(0) > 0).any())


def _updates_per_step(steps: pd.DataFrame) -> float:
    """Optimizer updates per step (``nan`` for records written before the trainer recorded them)."""
    return float(steps["updates"].mean()) if "updates" in steps and steps["updates"].notna().any() else float("nan")


def execution_policy(steps: pd.DataFrame) -> dict:
    """What a method's steps executed, as opposed to what the method is: the columns of the
    cost table that say whether two rows can be compared like with like."""
    return {"old_logprob_pass": _pays_old_logprob(steps), "updates_per_step": _updates_per_step(steps)}


def updates_text(updates: float) -> str:
    """Optimizer updates per step as the tables and claims print it ("?" when not recorded)."""
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
        upd = lambda ms: "/".join(sorted({updates_text(updates[m]) for m in ms}))  # noqa: E731
        return (head + f"old_logprob: paid by {', '.join(payers)} only (at {upd(payers)} updates/step; "
                f"{', '.join(others)} make {upd(others)} and skip it: optim.old_logprob=auto runs it only for steps "
                "with several updates), so the FLOPs columns compare those methods under different execution "
                "policies.")
    return head + ("none: every method runs the same execution policy (old-log-prob pass: "
                   f"{'yes' if payers else 'no'}).")


def _window_row(key: dict, w: pd.DataFrame) -> dict:
    """The cost table's row for one model x method x window (``key``) from its steps ``w``:
    first averaged per run, then over runs."""
    per_run = w.groupby(["benchmark", "seed"]).mean(numeric_only=True)
    row = {**key, "runs": len(per_run), "steps": len(w), "s_per_step": per_run["seconds_step"].mean(),
           "s_per_step_std": per_run["seconds_step"].std(ddof=1) if len(per_run) > 1 else 0.0}
    for ph in PHASES:
        row[f"s_{ph}"] = per_run.get(f"seconds_{ph}", pd.Series([0.0])).mean()
        row[f"tokens_{ph}"] = per_run.get(f"tokens_{ph}", pd.Series([0.0])).mean()
        row[f"flops_{ph}"] = per_run.get(f"flops_{ph}", pd.Series([0.0])).mean()
    total_flops = sum(row[f"flops_{ph}"] for ph in PHASES)
    row["flops_total"] = total_flops
    row["flops_per_step"] = total_flops
    row["teacher_forward_share_time"] = (row["s_teacher_forward"] / row["s_per_step"] if row["s_per_step"]
                                         else float("nan"))
    row["teacher_forward_share_flops"] = row["flops_teacher_forward"] / total_flops if total_flops else float("nan")
    row["frac_sdpo"] = per_run["frac_sdpo"].mean()
    row["response_length"] = per_run["response_length_mean"].mean()
    row.update(execution_policy(w))
    return row


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
                key = {"model": model, "benchmarks": "+".join(sorted(s["benchmark"].unique())), "method": m,
                       "budget": bud["label"]}
                rows.append(_window_row(key, w))
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for other in ("grpo", "sdpo"):
        for col, name in (("flops_per_step", f"flops_vs_{other}"), ("s_per_step", f"vs_{other}")):
            ref = df[df["method"] == other].set_index(["model", "benchmarks", "budget"])[col]
            df[name] = [getattr(r, col) / ref[(r.model, r.benchmarks, r.budget)] - 1
                        if (r.model, r.benchmarks, r.budget) in ref.index else float("nan")
                        for r in df.itertuples()]
    return df


def phase_breakdown_markdown(cost: pd.DataFrame) -> list[str]:
    """GFLOPs per step by phase, with each row's execution policy beside it, so that a difference
    in total FLOPs can be traced to the phase (and the configuration) it comes from."""
    lines = ["FLOPs per step by phase (GFLOPs/step) and execution policy:", "",
             "| model | benchmarks | method | window | " + " | ".join(BREAKDOWN_PHASES)
             + " | total | old-log-prob pass | updates/step |",
             "|" + "---|" * (len(BREAKDOWN_PHASES) + 7)]
    for r in cost.to_dict("records"):
        phases = " | ".join(f"{r.get(f'flops_{ph}', 0.0) / 1e9:.3f}" for ph in BREAKDOWN_PHASES)
        pays = r.get("old_logprob_pass")
        lines.append(f"| {r['model']} | {r['benchmarks']} | {r['method']} | {r['budget']} | {phases} | "
                     f"{r['flops_per_step'] / 1e9:.3f} | {'?' if pays is None else 'yes' if pays else 'no'} | "
                     f"{updates_text(r.get('updates_per_step', float('nan')))} |")
    return lines


def _paired_markdown(paired: dict) -> list[str]:
    """The paired wall-clock benchmark (``benchmarks/step_cost.py``) as a table."""
    lines = ["", f"Paired wall-clock benchmark (`benchmarks/step_cost.py`: methods interleaved in one process, same "
             f"prompts and seeds, {paired['rounds']} rounds on {paired['benchmark']}): median s/step [min, max]", "",
             "| method | median s/step | min | max | GFLOPs/step | vs GRPO (median of paired ratios [min, max]) |",
             "|---|---|---|---|---|---|"]
    for m, v in paired["methods"].items():
        ratio = v.get("ratio_vs_grpo")
        rtxt = ("–" if ratio is None else f"{(ratio['median'] - 1) * 100:+.1f}% [{(ratio['min'] - 1) * 100:+.1f}%, "
                f"{(ratio['max'] - 1) * 100:+.1f}%]")
        lines.append(f"| {m} | {v['median']:.3f} | {v['min']:.3f} | {v['max']:.3f} | "
                     f"{v['flops_per_step'] / 1e9:.3f} | {rtxt} |")
    return lines


def _paper_cost_line(paper_cost: pd.DataFrame, reference_model: str) -> str:
    """The paper's seconds per step in its last window, SRPO against GRPO and SDPO."""
    p = paper_cost[paper_cost["model"] == reference_model]
    last = p[p["window_h"] == p["window_h"].max()].iloc[0]
    return (f"\nPaper ({reference_model}, {int(last['window_h'])}h window, wall-clock): SRPO "
            f"{last['srpo_s_per_step']:.1f} s/step vs GRPO {last['grpo_s_per_step']:.1f} "
            f"({(last['srpo_s_per_step'] / last['grpo_s_per_step'] - 1) * 100:+.1f}%) and SDPO "
            f"{last['sdpo_s_per_step']:.1f} ({(last['srpo_s_per_step'] / last['sdpo_s_per_step'] - 1) * 100:+.1f}%).\n")


def cost_markdown(cost: pd.DataFrame, paper_cost: pd.DataFrame, budgets: list[dict], reference_model: str = "Qwen3-8B",
                  unit: str = "seconds", paired: dict | None = None) -> str:
    """The cost table: FLOPs per step first (deterministic), then the training jobs' seconds, and
    below it the paired wall-clock benchmark (``benchmarks/step_cost.py``) when given."""
    if cost.empty:
        return "_No step records._\n"
    lines = [f"Windows in {UNIT_LABELS[unit]}. FLOPs per step are the primary, deterministic cost; seconds per step "
             "come from the training jobs (two at a time on the machine, so they move with its load) and are shown "
             "beside them.", "",
             "| model | benchmarks | method | window | GFLOPs/step | vs GRPO (FLOPs) | vs SDPO (FLOPs) | "
             "s/step (jobs) | s/step (paper 8B) | generate | teacher fwd | update | old logp | "
             "teacher-fwd share (time / FLOPs) | SDPO-routed | resp. len |",
             "|" + "---|" * 16]
    pct = lambda x: "–" if pd.isna(x) else f"{x * 100:+.1f}%"  # noqa: E731
    for r in cost.itertuples():
        p = None
        if not paper_cost.empty:
            bud = next(b for b in budgets if b["label"] == r.budget)
            hit = paper_cost[(paper_cost["model"] == reference_model)
                             & (paper_cost["window_h"] == bud["paper_hours"])]
            col = f"{r.method}_s_per_step"
            p = float(hit[col].iloc[0]) if len(hit) and col in hit else None
        lines.append(f"| {r.model} | {r.benchmarks} | {r.method} | {r.budget} | {r.flops_per_step / 1e9:.3f} | "
                     f"{pct(r.flops_vs_grpo)} | {pct(r.flops_vs_sdpo)} | {r.s_per_step:.3f} | "
                     f"{'–' if p is None else f'{p:.1f}'} | {r.s_generate:.3f} | {r.s_teacher_forward:.3f} | "
                     f"{r.s_update:.3f} | {r.s_old_logprob:.3f} | {r.teacher_forward_share_time * 100:.1f}% / "
                     f"{r.teacher_forward_share_flops * 100:.1f}% | {r.frac_sdpo:.2f} | {r.response_length:.1f} |")
    lines += ["", *phase_breakdown_markdown(cost), "", configuration_differences(cost), "", COST_VERDICT_RULE]
    if paired:
        lines += _paired_markdown(paired)
    paper_line = ""
    if not paper_cost.empty:
        paper_line = _paper_cost_line(paper_cost, reference_model)
    return "\n".join(lines) + "\n" + paper_line
