# Evaluation: the base model on every listed benchmark, and each run's final checkpoint.


def eval_args():
    e = EVAL
    args = [f"--k {e.get('k', 16)}", f"--backend {e.get('backend', 'hf')}", f"--temperature {e.get('temperature', 0.6)}",
            f"--top-p {e.get('top_p', 0.95)}", f"--max-new-tokens {e.get('max_new_tokens', 8192)}"]
    if e.get("limit"):
        args.append(f"--limit {e['limit']}")
    if e.get("max_model_len"):
        args.append(f"--max-model-len {e['max_model_len']}")
    return " ".join(args)


rule eval_base:
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
    shell:
        "OMP_NUM_THREADS={threads} {PY} -m evals.cli --model {params.model} --benchmarks {wildcards.benchmark} {params.args} "
        "--out {WORK}/evals/{wildcards.model}/base > {log} 2>&1"


rule eval_run:
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
        "OMP_NUM_THREADS={threads} {PY} -m evals.cli --model {params.final} --benchmarks {wildcards.benchmark} {params.args} "
        "--out {params.out} > {log} 2>&1"
