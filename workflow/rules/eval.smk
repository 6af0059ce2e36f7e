# Evaluation: the base model on every listed benchmark, and each run's final checkpoint.


rule eval_base:
    conda:
        ENV_FILE
    input:
        model=lambda wc: model_input(wc.model),
        data=f"{WORK}/data/{{benchmark}}.json",
    output:
        f"{WORK}/evals/{{model}}/base/{{benchmark}}/results.json",
        f"{WORK}/evals/{{model}}/base/{{benchmark}}/samples.jsonl",
    log:
        f"{WORK}/logs/evals/{{model}}/base/{{benchmark}}.log",
    benchmark:
        f"{WORK}/benchmarks/evals/{{model}}/base/{{benchmark}}.tsv"
    threads: EVAL.get("threads", 1)
    resources:
        gpu=EVAL.get("gpus", 0),
    params:
        model=lambda wc: model_path(wc.model),
        args=eval_args(),
        out=lambda wc: f"{WORK}/evals/{wc.model}/base",
    shell:
        "OMP_NUM_THREADS={threads} python -m evals.cli --model {params.model} --benchmarks {wildcards.benchmark} {params.args} "
        "--out {params.out} > {log} 2>&1"


rule eval_run:
    conda:
        ENV_FILE
    input:
        done=f"{WORK}/runs/{{model}}/{{train_benchmark}}/{{method}}/seed{{seed}}/DONE",
        data=f"{WORK}/data/{{benchmark}}.json",
    output:
        f"{WORK}/evals/{{model}}/{{train_benchmark}}/{{method}}/seed{{seed}}/{{benchmark}}/results.json",
        f"{WORK}/evals/{{model}}/{{train_benchmark}}/{{method}}/seed{{seed}}/{{benchmark}}/samples.jsonl",
    log:
        f"{WORK}/logs/evals/{{model}}/{{train_benchmark}}/{{method}}/seed{{seed}}/{{benchmark}}.log",
    benchmark:
        f"{WORK}/benchmarks/evals/{{model}}/{{train_benchmark}}/{{method}}/seed{{seed}}/{{benchmark}}.tsv"
    threads: EVAL.get("threads", 1)
    resources:
        gpu=EVAL.get("gpus", 0),
    params:
        args=eval_args(),
        out=lambda wc: f"{WORK}/evals/{wc.model}/{wc.train_benchmark}/{wc.method}/seed{wc.seed}",
        final=lambda wc: f"{run_dir(wc.model, wc.train_benchmark, wc.method, wc.seed)}/final",
    shell:
        "OMP_NUM_THREADS={threads} python -m evals.cli --model {params.final} --benchmarks {wildcards.benchmark} {params.args} "
        "--out {params.out} > {log} 2>&1"
