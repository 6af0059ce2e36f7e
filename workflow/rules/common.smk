# Paths and the list of runs, derived from the validated config.
import os
from pathlib import Path

from srpo_ref.tasks import TASKS

PROFILE = config["profile"]
WORK = f"work/{PROFILE}"
RESULTS = f"results/{PROFILE}"
# The benchmark mirror: the config's data_dir, else $SRPO_DATA_DIR, else ../shared/data.
DATA_DIR = str(Path(config.get("data_dir") or os.environ.get("SRPO_DATA_DIR") or "../shared/data").resolve())
ENV_FILE = f"../../{config.get('conda_env', 'environment.yml')}"  # the software environment of all jobs, for --use-conda
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
        if m in TRAIN.get("ablation_models", list(config["models"])):
            out += [(m, b, meth, s) for b in TRAIN.get("ablation_benchmarks", []) for meth in TRAIN.get("ablations", [])
                    for s in TRAIN.get("ablation_seeds", TRAIN["seeds"])]
    return sorted(set(out))


def run_dir(model, benchmark, method, seed):
    return f"{WORK}/runs/{model}/{benchmark}/{method}/seed{seed}"


def run_done_files(model=None, benchmark=None):
    return [f"{run_dir(*r)}/DONE" for r in runs() if (model is None or r[0] == model) and (benchmark is None or r[1] == benchmark)]


def eval_files(model=None, benchmark=None):
    """Every evaluation result: base model on all benchmarks, each final checkpoint in-domain
    (on the benchmark it trained on, if listed), and the main methods' final checkpoints (not
    the ablations') on the extra benchmarks."""
    files = []
    listed = EVAL["benchmarks"] + EVAL.get("extra_benchmarks", [])
    for m in config["models"]:
        if model is not None and m != model:
            continue
        files += [f"{WORK}/evals/{m}/base/{b}/results.json" for b in listed if benchmark in (None, b)]
        for (_, tb, meth, s) in [r for r in runs() if r[0] == m]:
            main = meth in TRAIN["methods"] and s in EVAL.get("extra_seeds", TRAIN["seeds"])
            extra = EVAL.get("extra_benchmarks", []) if main else []
            for b in ([tb] if tb in EVAL["benchmarks"] else []) + extra:
                if benchmark in (None, b, tb):
                    files.append(f"{WORK}/evals/{m}/{tb}/{meth}/seed{s}/{b}/results.json")
    return sorted(set(files))


def train_args(wc):
    """What tells a training job apart and how it runs, over the profile's trainer YAML (train.config),
    which holds every other setting, per method too."""
    max_budget = max(b["value"] for b in config["budgets"])
    args = [
        f"model.path={model_path(wc.model)}",
        f"data.benchmark={wc.benchmark}",
        f"method.name={wc.method}",
        f"run.seed={wc.seed}",
        f"run.out_dir={run_dir(wc.model, wc.benchmark, wc.method, wc.seed)}",
        f"run.budget={max_budget}",
        f"run.budget_unit={config.get('budget_unit', 'seconds')}",
        "run.progress=false",
        f"data.data_dir={DATA_DIR}",
    ]
    return " ".join(f"'{a}'" for a in args)


def eval_args(wc=None):
    """srpo-eval's arguments; an extra benchmark takes evaluation.extra's settings over the others."""
    e = dict(EVAL)
    if wc is not None and wc.benchmark in EVAL.get("extra_benchmarks", []) and wc.benchmark not in EVAL["benchmarks"]:
        e.update(EVAL.get("extra", {}))
    args = [f"--data-dir {DATA_DIR}", f"--k {e.get('k', 16)}", f"--backend {e.get('backend', 'hf')}", f"--temperature {e.get('temperature', 0.6)}",
            f"--top-p {e.get('top_p', 0.95)}", f"--max-new-tokens {e.get('max_new_tokens', 8192)}"]
    if e.get("limit"):
        args.append(f"--limit {e['limit']}")
    if e.get("max_model_len"):
        args.append(f"--max-model-len {e['max_model_len']}")
    args.append(f"--grader {e.get('grader', 'upstream')} --tooluse-system {e.get('tooluse_system', 'none')}")
    return " ".join(args)


PRECHECKS = config.get("prechecks")
# Pre-checks measure format compliance by the <answer> tag: the MCQ and whole-number (gym_*) tasks.
PRECHECK_BENCHMARKS = ("chemistry", "physics", "biology", "materials", "tiny_mcq", "gym_add1", "gym_add2", "gym_chain3", "gym_legs")


def precheck_files():
    """Pre-checks of every base model on its training benchmarks that have an answer tag (when configured)."""
    if PRECHECKS is None:
        return []
    return [f"{WORK}/prechecks/{m}/{b}.json" for m in config["models"] for b in TRAIN["benchmarks"] if b in PRECHECK_BENCHMARKS]


STEP_COST = config.get("step_cost", {})
STEP_COST_MODEL = next(iter(config["models"]))


def step_cost_args(wc):
    """benchmarks/step_cost.py with the training jobs' trainer YAML (its per_method sections included:
    --no-default-method-overrides keeps the script's own grpo setting off the command line, where it would win)."""
    args = [f"--model {model_path(STEP_COST_MODEL)}", f"--config {TRAIN['config']}",
            f"--benchmark {STEP_COST.get('benchmark', TRAIN['benchmarks'][0])}",
            f"--rounds {STEP_COST.get('rounds', 6)}",
            f"--methods {' '.join(TRAIN['methods'])}", "--no-default-method-overrides"]
    return " ".join(args + [f"'data.data_dir={DATA_DIR}'", "'run.threads=1'"])


def format_warmup_command(name):
    """With models.<name>.format_warmup: convert into <name>_converted, then warm the format up into <name>."""
    fw = config["models"][name].get("format_warmup")
    if not fw:
        return ""
    out = f"{WORK}/models/{name}"
    return (f"_converted && OMP_NUM_THREADS=2 python -m srpo_ref.models.format_warmup --model {out}_converted --out {out} "
            f"--benchmark {fw['benchmark']} --examples {fw.get('examples', 64)} --epochs {fw.get('epochs', 2)} "
            f"--lr {fw.get('lr', 1e-4)} --answers {fw.get('answers', 'random')} --data-dir {DATA_DIR}")


# the report's category of each figure (by file name, without the model suffix)
FIGURE_CATEGORIES = {
    "accuracy_vs_cost": "Paper claims",
    "cost_phases": "Cost",
    "seconds_per_step": "Cost",
    "routing_and_entropy": "Routing and entropy",
    "response_length": "Routing and entropy",
}


def figure_category(wc):
    for prefix, category in FIGURE_CATEGORIES.items():
        if wc.name.startswith(prefix):
            return category
    return "Figures"


def table(path, caption, category, subcategory=None):
    """A table output marked for the report."""
    return report(path, caption=f"../report/{caption}.rst", category=category, subcategory=subcategory,
                  labels={"name": Path(path).name})
