# Paths and the list of runs, derived from the validated config.
import os
import sys
from pathlib import Path

from srpo_ref.tasks import TASKS

PY = sys.executable  # the environment running snakemake runs every job
PROFILE = config["profile"]
WORK = f"work/{PROFILE}"
RESULTS = f"results/{PROFILE}"
if config.get("data_dir"):
    os.environ["SRPO_DATA_DIR"] = str(Path(config["data_dir"]).resolve())
DATA_DIR = os.environ.get("SRPO_DATA_DIR", str(Path("../shared/data").resolve()))
PAPER_DIR = config.get("paper_dir", "../shared/paper")
TRAIN = config["train"]
EVAL = config["evaluation"]

for _b in TRAIN["benchmarks"] + TRAIN.get("ablation_benchmarks", []) + EVAL["benchmarks"] + EVAL.get("extra_benchmarks", []) + config.get("graders", {}).get("benchmarks", []):
    if _b not in TASKS:
        raise ValueError(f"config: unknown benchmark {_b!r}; known: {sorted(TASKS)}")


def model_path(name):
    """Where a base model lives: built by a rule (tiny, smollm2-gguf) or given (path / hub id)."""
    spec = config["models"][name]
    return spec["path"] if spec["source"] == "path" else f"{WORK}/models/{name}"


def model_input(name):
    """The file a rule waits for before using the model (nothing for a given path or hub id)."""
    spec = config["models"][name]
    return [] if spec["source"] == "path" else f"{WORK}/models/{name}/config.json"


def runs():
    """(model, benchmark, method, seed) of every training run."""
    out = []
    for m in config["models"]:
        out += [(m, b, meth, s) for b in TRAIN["benchmarks"] for meth in TRAIN["methods"] for s in TRAIN["seeds"]]
        out += [(m, b, meth, s) for b in TRAIN.get("ablation_benchmarks", []) for meth in TRAIN.get("ablations", [])
                for s in TRAIN.get("ablation_seeds", TRAIN["seeds"])]
    return sorted(set(out))


def run_dir(model, benchmark, method, seed):
    return f"{WORK}/runs/{model}/{benchmark}/{method}/seed{seed}"


def run_done_files(model=None, benchmark=None):
    return [f"{run_dir(*r)}/DONE" for r in runs() if (model is None or r[0] == model) and (benchmark is None or r[1] == benchmark)]


def eval_files(model=None, benchmark=None):
    """Every evaluation result: base model on all benchmarks, each final checkpoint in-domain
    (on the benchmark it trained on, if listed) and on the extra benchmarks."""
    files = []
    listed = EVAL["benchmarks"] + EVAL.get("extra_benchmarks", [])
    for m in config["models"]:
        if model is not None and m != model:
            continue
        files += [f"{WORK}/evals/{m}/base/{b}/results.json" for b in listed if benchmark in (None, b)]
        for (_, tb, meth, s) in [r for r in runs() if r[0] == m]:
            for b in ([tb] if tb in EVAL["benchmarks"] else []) + EVAL.get("extra_benchmarks", []):
                if benchmark in (None, b, tb):
                    files.append(f"{WORK}/evals/{m}/{tb}/{meth}/seed{s}/{b}/results.json")
    return sorted(set(files))
