# SRPO reproduction pipeline. Entry point; the stages live in workflow/rules/*.smk.
#
#   snakemake --cores 2                                   # tiny profile (default), CPU
#   snakemake --cores 2 --configfile config/small.yaml    # SmolLM2-135M on real benchmarks
#   snakemake --profile workflow/profiles/slurm --configfile config/paper.yaml
#
# Outputs: work/<profile>/ (models, runs, evaluations) and results/<profile>/ (tables, figures,
# report.md). See README.md, "The pipeline".

import yaml
from snakemake.utils import min_version, validate

min_version("9.0")

# The tiny profile is the default. It is loaded only when no --configfile was given: a
# `configfile:` directive would be deep-merged with the user's file (mixing two profiles).
if not config:
    config.update(yaml.safe_load(open("config/tiny.yaml")))


validate(config, "workflow/schemas/config.schema.yaml")


# `snakemake --report report.zip`: every table and figure, captioned (workflow/report/*.rst)
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        # everything worth keeping, so that any deleted output is rebuilt (with what depends on it)
        run_done_files(),
        eval_files(),
        precheck_files(),
        expand(f"{WORK}/graders/{{b}}.json", b=config.get("graders", {}).get("benchmarks", [])),
        f"{RESULTS}/report.md",
