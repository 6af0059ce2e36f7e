# Data: check every benchmark the profile uses (row counts, where it was read from), and
# self-check the graders on real data (the gold answer scores 1, a wrong one 0, on every row).


rule data_manifest:
    conda:
        ENV_FILE
    output:
        f"{WORK}/data/{{benchmark}}.json",
    log:
        f"{WORK}/logs/data/{{benchmark}}.log",
    benchmark:
        f"{WORK}/benchmarks/data/{{benchmark}}.tsv"
    params:
        data_dir=DATA_DIR,
    script:
        "../scripts/data_manifest.py"


rule grader_check:
    conda:
        ENV_FILE
    output:
        f"{WORK}/graders/{{benchmark}}.json",
    log:
        f"{WORK}/logs/graders/{{benchmark}}.log",
    benchmark:
        f"{WORK}/benchmarks/graders/{{benchmark}}.tsv"
    params:
        data_dir=DATA_DIR,
    script:
        "../scripts/grader_check.py"
