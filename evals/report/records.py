"""Reading the runs' own records into tables, and the names of what they record.

Inputs (all written by the trainer, ``srpo_ref``, and ``evals.run``):

    RUNS/<model>/<benchmark>/<method>/seed<k>/{steps.jsonl, val.jsonl, config.yaml}
    EVALS/<model>/base/<benchmark>/results.json
    EVALS/<model>/<train benchmark>/<method>/seed<k>/<benchmark>/results.json

and the paper's numbers (``../shared/paper/*.csv``). A budget has a unit (``budget_unit``):
``seconds`` (the paper's; GPU profiles) or a unit the machine's load cannot change, ``flops``,
``tokens`` or ``steps`` (the CPU profiles), read from the cumulative counters every step and
validation record carries (``UNITS`` names the column).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

PHASES = ("generate", "reward", "old_logprob", "teacher_forward", "update", "teacher_ema")
UNITS = {"seconds": "wall_seconds", "flops": "cum_flops", "tokens": "cum_tokens", "steps": "step"}
UNIT_LABELS = {"seconds": "training wall-clock (s)", "flops": "training FLOPs", "tokens": "training tokens",
               "steps": "training steps"}


def _jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file (none when the file is not there)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


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
    """One row per evaluation (``results.json``): its run keys and its metrics."""
    rows = []
    for res in sorted(Path(evals_root).glob("**/results.json")):
        rel = res.relative_to(evals_root).parts
        r = json.loads(res.read_text())
        if rel[1] == "base":
            key = {"model": rel[0], "train_benchmark": None, "method": "base", "seed": None, "benchmark": rel[2]}
        else:
            key = {"model": rel[0], "train_benchmark": rel[1], "method": rel[2], "seed": int(rel[3][4:]),
                   "benchmark": rel[4]}
        rows.append({**key, **r["metrics"], "tests": r.get("tests")})
    return pd.DataFrame(rows)


def load_paper(paper_dir: Path) -> dict[str, pd.DataFrame]:
    """The paper's tables by name (an empty table for a file that is not there)."""
    paper_dir = Path(paper_dir)
    out = {}
    for name in ("table1_avg16", "table2_ablations", "cost_seconds_per_step"):
        p = paper_dir / f"{name}.csv"
        out[name] = pd.read_csv(p) if p.exists() else pd.DataFrame()
    return out
