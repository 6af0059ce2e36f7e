"""Compute-cost accounting from the per-step records (srpo_ref.report.cost_table)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))
from _log import to_log  # noqa: E402

from srpo_ref import report  # noqa: E402

to_log(snakemake)
cfg = snakemake.config
steps, _ = report.load_runs(Path(snakemake.params.runs))
methods = cfg["train"]["methods"] + cfg["train"].get("ablations", [])
cost = report.cost_table(steps, cfg["budgets"], methods)
Path(snakemake.output.csv).parent.mkdir(parents=True, exist_ok=True)
cost.to_csv(snakemake.output.csv, index=False)
paper = report.load_paper(Path(snakemake.params.paper))["cost_seconds_per_step"]
ref = cfg.get("report", {}).get("reference_model", "Qwen3-8B")
Path(snakemake.output.md).write_text(report.cost_markdown(cost, paper, cfg["budgets"], ref))
print(cost.to_string())
