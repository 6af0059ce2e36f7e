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
        args=eval_args,
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
        args=eval_args,
        out=lambda wc: f"{WORK}/evals/{wc.model}/{wc.train_benchmark}/{wc.method}/seed{wc.seed}",
        final=lambda wc: f"{run_dir(wc.model, wc.train_benchmark, wc.method, wc.seed)}/final",
    shell:
        "OMP_NUM_THREADS={threads} python -m evals.cli --model {params.final} --benchmarks {wildcards.benchmark} {params.args} "
        "--out {params.out} > {log} 2>&1"


rule prechecks:
    """Before any comparison: base accuracy against chance, format compliance, response lengths and
    the self-teacher against the student, on training questions (evals/prechecks.py)."""
    conda:
        ENV_FILE
    input:
        model=lambda wc: model_input(wc.model),
        data=f"{WORK}/data/{{benchmark}}.json",
    output:
        report(f"{WORK}/prechecks/{{model}}/{{benchmark}}.json", caption="../report/prechecks.rst", category="Pre-checks",
               labels={"model": "{model}", "benchmark": "{benchmark}"}),
    log:
        f"{WORK}/logs/prechecks/{{model}}/{{benchmark}}.log",
    benchmark:
        f"{WORK}/benchmarks/prechecks/{{model}}/{{benchmark}}.tsv"
    threads: EVAL.get("threads", 1)
    params:
        model=lambda wc: model_path(wc.model),
        n=(PRECHECKS or {}).get("n", 64),
        k=(PRECHECKS or {}).get("k", 8),
        tokens=(PRECHECKS or {}).get("max_response_tokens", 512),
        backend=EVAL.get("backend", "hf"),
        temperature=EVAL.get("temperature", 0.6),
        top_p=EVAL.get("top_p", 0.95),
        data_dir=DATA_DIR,
    shell:
        "OMP_NUM_THREADS={threads} python -m evals.prechecks --model {params.model} --benchmark {wildcards.benchmark} "
        "--n {params.n} --k {params.k} --max-response-tokens {params.tokens} --backend {params.backend} "
        "--eval-temperature {params.temperature} --eval-top-p {params.top_p} --data-dir {params.data_dir} --out {output} > {log} 2>&1"
