"""Grade the gold answer (must score 1) and a wrong answer (must score 0) on every test row, under
both grader modes (srpo_ref.tasks.grader_self_check)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))
from _log import to_log  # noqa: E402

from srpo_ref import tasks  # noqa: E402

to_log(snakemake)
name = snakemake.wildcards.benchmark
out = tasks.grader_self_check(name, snakemake.params.data_dir, snakemake.threads)
Path(snakemake.output[0]).write_text(json.dumps(out, indent=2))
print(json.dumps(out, indent=2))
