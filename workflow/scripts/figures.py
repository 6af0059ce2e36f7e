"""The paper-style figures (evals.report.figures)."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(snakemake.scriptdir)))
from _log import to_log  # noqa: E402

from evals import report  # noqa: E402

to_log(snakemake)
cfg = snakemake.config
steps, val = report.load_runs(Path(snakemake.params.runs))
cost = pd.read_csv(snakemake.input.cost) if Path(snakemake.input.cost).stat().st_size > 1 else pd.DataFrame()
methods = cfg["train"]["methods"] + cfg["train"].get("ablations", [])
main = cfg["train"]["benchmarks"]
written = report.figures(steps[steps["benchmark"].isin(main)] if not steps.empty else steps,
                         val[val["benchmark"].isin(main)] if not val.empty else val,
                         cost, methods, Path(snakemake.output[0]), cfg.get("report", {}).get("time_unit", "s"),
                         cfg.get("budget_unit", "seconds"))
print("\n".join(map(str, written)))
