# Training: one job per (model, benchmark, method, seed). A re-run resumes from the run's last
# complete checkpoint (the trainer's own resume), so an interrupted job loses at most save_every steps.


rule train:
    conda:
        ENV_FILE
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
        launcher=TRAIN.get("launcher", "") or "python",
        config=TRAIN["config"],
    shell:
        "OMP_NUM_THREADS={threads} {params.launcher} -m srpo_ref.trainer --config {params.config} {params.args} "
        "run.threads={threads} > {log} 2>&1"


rule benchmark_stage:
    """Everything for one benchmark (its runs and evaluations): `snakemake <WORK>/stages/<benchmark>.done`."""
    conda:
        ENV_FILE
    input:
        lambda wc: run_done_files(benchmark=wc.benchmark) + eval_files(benchmark=wc.benchmark),
    output:
        touch(f"{WORK}/stages/{{benchmark}}.done"),
    log:
        f"{WORK}/logs/stages/{{benchmark}}.log",
    benchmark:
        f"{WORK}/benchmarks/stages/{{benchmark}}.tsv"
