"""results/<profile>/report.md: tables, figures, the paper's claims checked one by one, provenance."""

import json
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(snakemake.scriptdir)))
from _log import to_log  # noqa: E402

from evals import report  # noqa: E402
from srpo_ref.record import provenance  # noqa: E402

to_log(snakemake)
cfg = snakemake.config
out = Path(snakemake.output[0])
tables = Path(snakemake.input.cost).parent
figdir = Path(snakemake.input.figures)
steps, val = report.load_runs(Path(snakemake.params.runs))
train = cfg["train"]
budgets = cfg["budgets"]
last = budgets[-1]["label"]
t1 = pd.read_csv(tables / "table1.csv") if (tables / "table1.csv").stat().st_size > 1 else pd.DataFrame()
cost = pd.read_csv(tables / "cost.csv") if (tables / "cost.csv").stat().st_size > 1 else pd.DataFrame()


unit = cfg.get("budget_unit", "seconds")
paired_path = Path(snakemake.params.work) / "step_cost.json"
paired = json.loads(paired_path.read_text()) if paired_path.exists() else None
rows = report.claims(steps, val, budgets, unit, train["benchmarks"], paired)
claims = [f"| {r['claim']} | {r['verdict']} | {r['evidence']} |" for r in rows]


def read(name: str) -> str:
    """A table the tables and cost stages wrote, as text."""
    return (tables / name).read_text()


def rel(p) -> Path:
    """A path relative to the report's folder (for the figure links)."""
    return Path(p).relative_to(out.parent)


figs = sorted(figdir.glob("*.png"))
prov = provenance()
prov.pop("argv", None)
# the commits the training runs were made with (the report may be regenerated at a later one)
run_commits: dict[str, int] = {}
for f in sorted(Path(snakemake.params.runs).glob("**/provenance.json")):
    c = json.loads(f.read_text()).get("git_commit") or "unknown"
    run_commits[c] = run_commits.get(c, 0) + 1
models = {m: json.loads(Path(f"{snakemake.params.work}/models/{m}/warmup.json").read_text()).get("accuracy")
          for m, s in cfg["models"].items()
          if s["source"] == "tiny" and Path(f"{snakemake.params.work}/models/{m}/warmup.json").exists()}
budget_line = report.budget_text(budgets, unit)
unit_label = report.UNIT_LABELS[unit]
warmup_accuracy = json.dumps(models) if models else "n/a"
dirty_note = " (uncommitted changes present)" if prov["git_dirty"] else ""
run_commits_text = ", ".join(f"`{c}` ({n} run{'s' if n > 1 else ''})" for c, n in run_commits.items()) or "n/a"


def _paths(value) -> list[str]:
    """A named Snakemake input as a list of paths (one path arrives as a str, none as an empty list)."""
    return [value] if isinstance(value, str) else list(value)


text = f"""# SRPO reproduction report: profile `{cfg['profile']}`

Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `snakemake` from the records under `work/{cfg['profile']}/`.
Methods: {', '.join(train['methods'])}; ablations: {', '.join(train.get('ablations', [])) or 'none'}; benchmarks:
{', '.join(train['benchmarks'])}; seeds: {train['seeds']}. Budgets ({unit_label}, validation excluded): {budget_line};
the labels are the paper's windows they stand for. Table 1, Table 2, the cost windows and the \
accuracy-against-cost figure
use this unit; wall-clock seconds are recorded beside it.

{report.task_choice_markdown(_paths(snakemake.input.task_choice))}## Pre-checks (before any comparison)

On training questions: the base model's avg@k at the evaluation settings against chance, its responses at the rollout
settings (share with an `<answer>` tag, truncated at the response budget, length in tokens), and the self-teacher (the
base model shown one of its own correct samples) against the student on the questions where it had one.

{report.precheck_markdown(sorted(_paths(snakemake.input.prechecks)))}
## The paper's claims, checked on this profile's runs

| claim | verdict | evidence |
|---|---|---|
{chr(10).join(claims) if claims else '| (no runs) | n/a | |'}

Verdict rule: *reproduced* only when the 95% t-interval over seeds (differences paired by seed; for slopes, one \
value per
run) excludes zero in the paper's direction, *contradicted* when it excludes zero the other way, otherwise *inconclusive
(n seeds)*. A verdict on a small model and synthetic tasks says whether the mechanism behaves as described, not whether
the paper's numbers hold at 8B scale. {report.COST_VERDICT_RULE}

## Table 1: best validation avg@k within each budget ({unit_label})

The base row is the step-0 validation of every run (the same protocol and questions as the other rows).

{read('table1.md')}
SRPO's margins against the paper's (benchmark average):

{read('shape_vs_paper.md')}
## Table 2: ablations (average over {', '.join(train.get('ablation_benchmarks', [])) or 'n/a'})

{read('table2.md')}
## Compute cost per step (windows in {unit_label})

{read('cost.md')}
## Final checkpoints, evaluated

{read('final_eval.md')}
## Math and code

{read('mathcode.md')}
## Graders on the real benchmark data (gold answer must score 1, a wrong answer 0)

{read('graders.md')}
## Figures

{chr(10).join(f'![{p.stem}]({rel(p)})' for p in figs)}

## Provenance

- base models: {json.dumps({m: s for m, s in cfg['models'].items()})}
- tiny base-model accuracy after warm-up (greedy / sampled T=1 / self-teacher with a demonstration): {warmup_accuracy}
- code: report generated at commit `{prov['git_commit']}`{dirty_note}; training runs at {run_commits_text}
- software: Python {prov['python']}, torch {prov['torch']}, transformers {prov['transformers']}
- hardware: {prov['platform']}, {prov['cpu_count']} CPUs, GPU: {prov['cuda'] or 'none'}
- per-run config, provenance and step records: `work/{cfg['profile']}/runs/<model>/<benchmark>/<method>/seed<k>/`

<details><summary>pipeline config</summary>

```yaml
{yaml.safe_dump(dict(cfg), sort_keys=False)}```
</details>
"""
out.write_text(text)
print(text)
