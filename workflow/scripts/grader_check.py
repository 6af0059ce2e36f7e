"""Grade the gold answer (must score 1) and a wrong answer (must score 0) on every test row."""

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))
from _log import to_log  # noqa: E402

from srpo_ref import tasks  # noqa: E402

to_log(snakemake)
name = snakemake.wildcards.benchmark
examples = tasks.load_task(name, "test", snakemake.params.data_dir)


def check(ex):
    good, wrong = tasks.reference_responses(ex)
    return ex.id, ex.score(good), ex.score(wrong)


with ThreadPoolExecutor(max(1, snakemake.threads)) as pool:
    results = list(pool.map(check, examples))
out = {"benchmark": name, "rows": len(results), "gold_scored_1": sum(g == 1.0 for _, g, _ in results),
       "wrong_scored_0": sum(w == 0.0 for _, _, w in results),
       "failures": [i for i, g, w in results if g != 1.0 or w != 0.0][:20]}
Path(snakemake.output[0]).write_text(json.dumps(out, indent=2))
print(json.dumps(out, indent=2))
