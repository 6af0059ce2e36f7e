"""Compute-cost accounting from the per-step records (evals.report.cost_table)."""

import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(snakemake.scriptdir)))
from _log import to_log  # noqa: E402

from evals import report  # noqa: E402

to_log(snakemake)
cfg = snakemake.config
unit = cfg.get("budget_unit", "seconds")
steps, _ = report.load_runs(Path(snakemake.params.runs))
train = cfg["train"]
# Methods are compared on the same benchmarks: the main methods on the training benchmarks, then
# every method on the ablation benchmarks (one block when the two sets are the same).
ablations, ablation_benchmarks = train.get("ablations", []), train.get("ablation_benchmarks", [])
if ablations and sorted(ablation_benchmarks) == sorted(train["benchmarks"]):
    cost = report.cost_table(steps, cfg["budgets"], train["methods"] + ablations, train["benchmarks"], unit)
else:
    cost = report.cost_table(steps, cfg["budgets"], train["methods"], train["benchmarks"], unit)
    if ablations and ablation_benchmarks:
        ablation = report.cost_table(steps, cfg["budgets"], train["methods"] + ablations, ablation_benchmarks, unit)
        cost = pd.concat([cost, ablation], ignore_index=True)
Path(snakemake.output.csv).parent.mkdir(parents=True, exist_ok=True)
cost.to_csv(snakemake.output.csv, index=False)
paper = report.load_paper(Path(snakemake.params.paper))["cost_seconds_per_step"]
ref = cfg.get("report", {}).get("reference_model", "Qwen3-8B")
paired_files = list(snakemake.input.get("paired", []))
paired = json.loads(Path(paired_files[0]).read_text()) if paired_files else None
Path(snakemake.output.md).write_text(report.cost_markdown(cost, paper, cfg["budgets"], ref, unit, paired))
print(cost.to_string())
