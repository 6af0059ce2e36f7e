"""Load a benchmark's splits (checking row counts) and record where they came from."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))
from _log import to_log  # noqa: E402

from srpo_ref import tasks  # noqa: E402

to_log(snakemake)
name = snakemake.wildcards.benchmark
manifest = {"benchmark": name, "data_dir": snakemake.params.data_dir, "splits": {}}
for split in ("train", "test"):
    try:
        manifest["splits"][split] = len(tasks.load_task(name, split, snakemake.params.data_dir))
    except (ValueError, tasks.DataNotFound) as e:  # e.g. math/code benchmarks have no train split
        manifest["splits"][split] = None
        manifest.setdefault("notes", []).append(f"{split}: {e}")
if not manifest["splits"]["test"]:
    raise SystemExit(f"{name}: no test split could be loaded: {manifest.get('notes')}")
Path(snakemake.output[0]).write_text(json.dumps(manifest, indent=2))
print(json.dumps(manifest, indent=2))
