"""The report's prose sections built from files other stages wrote: the budgets line, the
task-choice section (``evals/task_choice.py``) and the pre-checks table (``evals/prechecks.py``)."""

from __future__ import annotations

import json
from pathlib import Path


def budget_text(budgets: list[dict], unit: str) -> str:
    """The budgets as the report names them: ``label = value unit``, comma-separated."""
    fmt = {"seconds": lambda v: f"{v:g} s", "flops": lambda v: f"{v:.3g} FLOPs", "tokens": lambda v: f"{v:.3g} tokens",
           "steps": lambda v: f"{v:g} steps"}[unit]
    return ", ".join(f"{b['label']} = {fmt(b['value'])}" for b in budgets)


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
        lines.append(f"| {Path(f).parent.name} / {r['benchmark']} | {r['questions']} x {r['k']} | "
                     f"{iv(b['avg_at_k'])} | {chance} | {100 * st['format_compliance']:.1f}% | "
                     f"{100 * st['truncated']:.1f}% | {st['length_p50']} / {st['length_p90']} | {tv} | {td} |")
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
    trained_on = passed[0] if passed else "none (no candidate passed)"
    return f"""## Task choice (before any training run)

Every candidate tried (task, format warm-up, response budget), measured on training questions at the rollout settings
after its own warm-up; the gate was fixed before the first was measured. Gate: {rule}. Trained on: {trained_on}.
From `{md}`:

{md.read_text().strip()}

"""
