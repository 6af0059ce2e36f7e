# Training: one job per (model, benchmark, method, seed). A re-run resumes from the run's last
# complete checkpoint (the trainer's own resume), so an interrupted job loses at most save_every steps.
#
# How a job spreads over the machine comes from train.nodes / train.gpus (per node) /
# train.threads (CPU cores per node); srpo_ref/launch.py builds the shell line: a plain process
# (no GPU), torchrun --standalone (one node), or srun + torchrun with a c10d rendezvous (several
# slurm nodes). Each rank gets threads // gpus CPU threads.
#
# Resources, as snakemake-executor-plugin-slurm reads them: nodes (sbatch --nodes), cpus_per_task
# (--cpus-per-task, the whole node's cores for its one task), mem_mb (--mem, per node).
# tasks_per_gpu=0: otherwise a GPU job gets --ntasks-per-gpu=<tasks> (8 GPUs: 8 tasks of
# cpus_per_task cores each). One node: gpu (sbatch --gpus, all on the one node); the jobstep then
# runs the job as one task (srun -n1 --gpus=G --nodes=1). Several nodes: gres=gpu:G (--gres is
# per node; --gpus would be a total slurm may split unevenly), tasks=nodes (--ntasks) and mpi,
# which makes the jobstep run the shell line directly on the first node instead of inside
# `srun -n1`, so the line's own srun can start one task per node.

from dataclasses import replace as _replace

from srpo_ref.launch import from_config as _launch_from_config, train_command as _train_command

LAUNCH = _launch_from_config(TRAIN)
TRAIN_RESOURCES = {
    "runtime": TRAIN.get("runtime_min", 60),
    "mem_mb": TRAIN.get("mem_mb", 4000),
    "nodes": LAUNCH.nodes,
    "tasks": LAUNCH.nodes,
    "cpus_per_task": LAUNCH.cores,
    "tasks_per_gpu": 0,
}
if LAUNCH.nodes == 1:
    TRAIN_RESOURCES["gpu"] = LAUNCH.gpus
else:
    TRAIN_RESOURCES["mpi"] = "srun"
    if LAUNCH.gpus:
        TRAIN_RESOURCES["gres"] = f"gpu:{LAUNCH.gpus}"


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
    threads: LAUNCH.cores
    resources:
        **TRAIN_RESOURCES,
    params:
        # threads: train.threads as Snakemake caps it (at --cores; a dry run without --cores shows 1)
        command=lambda wc, threads: _train_command(
            _replace(LAUNCH, cores=threads), f"--config {TRAIN['config']} {train_args(wc)}"
        ),
    shell:
        "{params.command} > {log} 2>&1"


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
