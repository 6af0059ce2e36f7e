"""Choosing the small profile's task by a rule fixed in advance:
``python -m evals.task_choice --model M --out-dir D [--candidates ...]``.

A comparison of GRPO, SDPO and SRPO on a task the model cannot do (or always does) shows nothing.
Candidates are tried in the order given (``tasks.GYM_TASKS``' order by default, fixed before any
measurement); each is format-warmed (``srpo_ref.models.format_warmup``) and pre-checked on training
questions at the rollout settings (``evals.prechecks``). The first candidate that passes the gate
is the task:

    base        avg@k between 15% and 70%, its 95% interval excluding 0
    format      at least 90% of the student's samples close their answer tag
    teacher     the self-teacher, shown a correct demonstration, at least 10 points above the
                student on the same questions, its 95% interval excluding 0

Each candidate's files go to ``D/<candidate>/`` (warmed model, ``precheck.json``); a candidate
with a ``precheck.json`` is not measured again. ``D/candidates.md`` and ``D/candidates.json`` hold
the table of every candidate tried.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from srpo_ref import tasks

GATE = {"base_low": 0.15, "base_high": 0.70, "format": 0.90, "teacher_gain": 0.10}


def gate(pre: dict) -> dict:
    """Each criterion of the gate, True when met, and ``passes`` when all are."""
    base = pre["base"]["avg_at_k"]
    gain = pre["teacher"].get("teacher_minus_student")
    checks = {
        "base_in_range": GATE["base_low"] <= base["mean"] <= GATE["base_high"],
        "base_above_zero": base["low"] > 0,
        "format": pre["student"]["format_compliance"] >= GATE["format"],
        "teacher_gain": gain is not None and gain["mean"] >= GATE["teacher_gain"] and gain["low"] > 0,
    }
    return {**checks, "passes": all(checks.values())}


def _pct(x) -> str:
    return f"{100 * x:.1f}"


def table(rows: list[dict]) -> str:
    out = ["| candidate | warm-up answers: examples (own answers right) | response budget | format | base avg@k [95% "
           "CI] | "
           "student acc. | teacher − student [95% CI] (questions) | truncated | gate |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pre, g, w = r["precheck"], r["gate"], r["warmup"]
        b = pre["base"]["avg_at_k"]
        t = pre["teacher"]
        gain = t.get("teacher_minus_student")
        gain_s = (f"{_pct(gain['mean'])} [{_pct(gain['low'])}, {_pct(gain['high'])}] ({t['questions']})"
                  if gain and t["questions"] > 1 else f"n/a ({t['questions']})")
        failed = [k for k, v in g.items() if k != "passes" and not v]
        right = f" ({w['own_answers_right']:.0f} right)" if w.get("own_answers_right") is not None else ""
        out.append(f"| {r['candidate']} | {w.get('answers', 'random')}: {w['examples']}{right} | "
                   f"{pre['rollout']['max_new_tokens']} | "
                   f"{_pct(pre['student']['format_compliance'])}% | "
                   f"{_pct(b['mean'])} [{_pct(b['low'])}, {_pct(b['high'])}] | {_pct(pre['student']['accuracy'])} | "
                   f"{gain_s} | "
                   f"{_pct(pre['student']['truncated'])}% | "
                   f"{'passes' if g['passes'] else 'fails: ' + ', '.join(failed)} |")
    return "\n".join(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the converted base model (before any warm-up)")
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--candidates", nargs="+", default=list(tasks.GYM_TASKS))
    p.add_argument("--all", action="store_true", help="measure every candidate, not only up to the first that passes")
    p.add_argument("--warmup-examples", type=int, default=48)
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--answers", default="own", choices=["own", "random"])
    p.add_argument("--n", type=int, default=48)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--max-response-tokens", type=int, default=96)
    p.add_argument("--data-dir", default=None)
    a = p.parse_args(argv)
    rows = []
    for name in a.candidates:
        d = a.out_dir / name
        if not (d / "precheck.json").exists():
            common = ["--data-dir", a.data_dir] if a.data_dir else []
            if not (d / "model" / "format_warmup.json").exists():
                subprocess.run([sys.executable, "-m", "srpo_ref.models.format_warmup", "--model", a.model, "--out",
                                str(d / "model"),
                                "--benchmark", name, "--examples", str(a.warmup_examples), "--epochs",
                                str(a.warmup_epochs),
                                "--answers", a.answers, *common], check=True, env=os.environ)
            subprocess.run([sys.executable, "-m", "evals.prechecks", "--model", str(d / "model"), "--benchmark", name,
                            "--n", str(a.n), "--k", str(a.k), "--max-response-tokens", str(a.max_response_tokens),
                            "--out", str(d / "precheck.json"), *common], check=True, env=os.environ)
        pre = json.loads((d / "precheck.json").read_text())
        rows.append({"candidate": name, "warmup": json.loads((d / "model" / "format_warmup.json").read_text()),
                     "precheck": pre, "gate": gate(pre)})
        (a.out_dir / "candidates.json").write_text(json.dumps({"gate": GATE, "rows": rows}, indent=2))
        (a.out_dir / "candidates.md").write_text(table(rows) + "\n")
        print(table(rows), flush=True)
        if rows[-1]["gate"]["passes"] and not a.all:
            print(f"chosen: {name}")
            break
    else:
        print("no candidate passes the gate" if not any(r["gate"]["passes"] for r in rows) else "")


if __name__ == "__main__":
    main()
