# Cost accounting, tables, figures and the report, all from the runs' and evaluations' records.
# Every table and figure is marked with report(...) (caption in workflow/report/, a category):
# `snakemake --report report.zip` gathers them into one self-contained report.


rule step_cost:
    """The paired wall-clock benchmark (benchmarks/step_cost.py): the methods' steps interleaved in
    one process, alone on the machine as far as Snakemake is concerned (it takes every core)."""
    conda:
        ENV_FILE
    input:
        model=lambda wc: model_input(STEP_COST_MODEL),
    output:
        f"{WORK}/step_cost.json",
    log:
        f"{WORK}/logs/report/step_cost.log",
    benchmark:
        f"{WORK}/benchmarks/report/step_cost.tsv"
    threads: lambda wc: workflow.cores  # evaluated per job: `snakemake --report` needs no --cores
    params:
        args=step_cost_args,
    shell:
        "OMP_NUM_THREADS=1 python benchmarks/step_cost.py {params.args} --out {output} > {log} 2>&1"


rule cost:
    conda:
        ENV_FILE
    input:
        runs=run_done_files(),
        paired=[f"{WORK}/step_cost.json"] if STEP_COST.get("enabled", True) else [],
    output:
        csv=table(f"{RESULTS}/tables/cost.csv", "cost", "Cost"),
        md=table(f"{RESULTS}/tables/cost.md", "cost", "Cost"),
    log:
        f"{WORK}/logs/report/cost.log",
    benchmark:
        f"{WORK}/benchmarks/report/cost.tsv"
    params:
        runs=lambda wc: f"{WORK}/runs",
        paper=PAPER_DIR,
    script:
        "../scripts/cost.py"


rule tables:
    conda:
        ENV_FILE
    input:
        runs=run_done_files(),
        evals=eval_files(),
        graders=expand(f"{WORK}/graders/{{b}}.json", b=config.get("graders", {}).get("benchmarks", [])),
    output:
        table1=table(f"{RESULTS}/tables/table1.md", "table1", "Table 1", "Best validation accuracy per budget"),
        table1_csv=table(f"{RESULTS}/tables/table1.csv", "table1", "Table 1", "Best validation accuracy per budget"),
        table2=table(f"{RESULTS}/tables/table2.md", "table2", "Table 2"),
        table2_csv=table(f"{RESULTS}/tables/table2.csv", "table2", "Table 2"),
        shape=table(f"{RESULTS}/tables/shape_vs_paper.md", "shape_vs_paper", "Paper claims"),
        evals=table(f"{RESULTS}/tables/final_eval.md", "final_eval", "Table 1", "Final checkpoints"),
        evals_csv=table(f"{RESULTS}/tables/final_eval.csv", "final_eval", "Table 1", "Final checkpoints"),
        mathcode=table(f"{RESULTS}/tables/mathcode.md", "mathcode", "Table 1", "Math and code"),
        graders=table(f"{RESULTS}/tables/graders.md", "graders", "Graders"),
    log:
        f"{WORK}/logs/report/tables.log",
    benchmark:
        f"{WORK}/benchmarks/report/tables.tsv"
    params:
        runs=lambda wc: f"{WORK}/runs",
        evals=lambda wc: f"{WORK}/evals",
        paper=PAPER_DIR,
    script:
        "../scripts/tables.py"


rule figures:
    conda:
        ENV_FILE
    input:
        runs=run_done_files(),
        cost=f"{RESULTS}/tables/cost.csv",
    output:
        report(directory(f"{RESULTS}/figures"), patterns=["{name}.png"], caption="../report/figures.rst",
               category=figure_category, labels=lambda wc: {"name": wc.name}),
    log:
        f"{WORK}/logs/report/figures.log",
    benchmark:
        f"{WORK}/benchmarks/report/figures.tsv"
    params:
        runs=lambda wc: f"{WORK}/runs",
    script:
        "../scripts/figures.py"


rule report:
    conda:
        ENV_FILE
    input:
        tables=rules.tables.output,
        cost=rules.cost.output.md,
        figures=f"{RESULTS}/figures",
        prechecks=precheck_files(),
        task_choice=config.get("report", {}).get("task_choice", []),
    output:
        report(f"{RESULTS}/report.md", caption="../report/report_md.rst", category="Paper claims",
               labels={"name": "report.md"}),
    log:
        f"{WORK}/logs/report/report.log",
    benchmark:
        f"{WORK}/benchmarks/report/report.tsv"
    params:
        runs=lambda wc: f"{WORK}/runs",
        work=lambda wc: WORK,
    script:
        "../scripts/report.py"
