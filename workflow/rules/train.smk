# Training: one job per (model, benchmark, method, seed). A re-run resumes from the run's last
# complete checkpoint (the trainer's own resume), so an interrupted job loses at most save_every steps.


def train_args(wc):
    max_budget = max(b["seconds"] for b in config["budgets"])
    args = [
        f"model.path={model_path(wc.model)}",
        f"data.benchmark={wc.benchmark}",
        f"method.name={wc.method}",
        f"run.seed={wc.seed}",
        f"run.out_dir={run_dir(wc.model, wc.benchmark, wc.method, wc.seed)}",
        f"run.time_budget_s={max_budget}",
        "run.progress=false",
    ]
    args += TRAIN.get("overrides", [])
    args += TRAIN.get("method_overrides", {}).get(wc.method, [])
    return " ".join(f"'{a}'" for a in args)


rule train:
    input:
        model=lambda wc: model_input(wc.model),
        data=f"{WORK}/data/{{benchmark}}.json",
    output:
        f"{WORK}/runs/{{model}}/{{benchmark}}/{{method}}/seed{{seed}}/DONE",
    log:
        f"{WORK}/logs/train/{{model}}/{{benchmark}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{WORK}/benchmarks/train/{{model}}/{{benchmark}}/{{method}}/seed{{seed}}.tsv"
    threads: TRAIN.get("threads", 1)
    resources:
        gpu=TRAIN.get("gpus", 0),
        runtime=TRAIN.get("runtime_min", 60),
        mem_mb=TRAIN.get("mem_mb", 4000),
    params:
        args=train_args,
        launcher=TRAIN.get("launcher", "") or PY,
        config=TRAIN["config"],
    shell:
        "OMP_NUM_THREADS={threads} {params.launcher} -m srpo_ref.trainer --config {params.config} {params.args} "
        "run.threads={threads} > {log} 2>&1"


rule benchmark_stage:
    """Everything for one benchmark (its runs and evaluations): `snakemake <WORK>/stages/<benchmark>.done`."""
    input:
        lambda wc: run_done_files(benchmark=wc.benchmark) + eval_files(benchmark=wc.benchmark),
    output:
        touch(f"{WORK}/stages/{{benchmark}}.done"),
    log:
        f"{WORK}/logs/stages/{{benchmark}}.log",
    benchmark:
        f"{WORK}/benchmarks/stages/{{benchmark}}.tsv"
