"""The shell line that starts one training run: on CPU, on one GPU node, or on several nodes.

Pure string building (the pipeline's ``train`` rule calls :func:`train_command`; nothing here
touches the machine), plus a small command line to print or run the same line by hand::

    python -m srpo_ref.launch --nodes 2 --gpus 8 --cores 64 --dry-run -- --config C.yaml model.path=M

The three cases (``cores`` is the CPU cores of one node, ``gpus`` the GPUs of one node; one rank
per GPU, so each rank gets ``cores // gpus`` threads, passed as ``OMP_NUM_THREADS`` and
``run.threads``)::

    gpus 0:            OMP_NUM_THREADS=T python -m srpo_ref.run ARGS run.threads=T
    1 node, G GPUs:    OMP_NUM_THREADS=T python -m torch.distributed.run --standalone
                           --nproc_per_node G -m srpo_ref.run ARGS run.threads=T
    N > 1 nodes:       srun --nodes N --ntasks N --ntasks-per-node 1 --cpus-per-task C
                           --gres=gpu:G --kill-on-bad-exit=1 bash -c 'OMP_NUM_THREADS=T exec
                           python -m torch.distributed.run --nnodes N --nproc_per_node G
                           --node_rank "$SLURM_NODEID" --rdzv_backend c10d
                           --rdzv_endpoint "$(scontrol show hostnames ... | head -n 1):PORT"
                           --rdzv_id "$SLURM_JOB_ID" "$@"' srpo-train -m srpo_ref.run ARGS
                           run.threads=T

Several nodes need slurm: one slurm task per node (``srun`` from inside the job's allocation),
each running one torchrun agent that starts G ranks; the agents meet at a c10d rendezvous on the
first host of the step's node list. The per-node part is a constant single-quoted ``bash -c``
script, so ``$SLURM_NODEID``, the node list and ``$SLURM_JOB_ID`` expand on each node, in the
environment srun gives that task, never on the host that runs srun; the trainer's arguments
follow it as ``"$@"`` and are quoted exactly once, as on one node. The node list is
``$SLURM_STEP_NODELIST`` (srun sets it for every task; the step spans the whole allocation) with
``$SLURM_JOB_NODELIST`` as the fallback: snakemake's slurm-jobstep executor strips every
``SLURM_*`` variable but the job id from the environment it runs the rule's shell line in.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass

TRAINER = "-m srpo_ref.run"
TORCHRUN = "-m torch.distributed.run"
DEFAULT_PORT = 29500
# The per-node script of a multi-node run; see the module docstring. $0 is only a label.
NODE_LIST = '"${SLURM_STEP_NODELIST:-$SLURM_JOB_NODELIST}"'
HEAD = f'$(scontrol show hostnames {NODE_LIST} | head -n 1)'


@dataclass(frozen=True)
class Launch:
    """How one training run is spread over the machine(s)."""

    nodes: int = 1  # machines (slurm nodes); > 1 runs under srun
    gpus: int = 0  # GPUs per node, one rank each; 0: a single CPU process
    cores: int = 1  # CPU cores per node, shared by its ranks
    port: int = DEFAULT_PORT  # c10d rendezvous port on the head node (several nodes)
    python: str = "python"  # the interpreter, from PATH (the job's environment)
    launcher: str = ""  # explicit override: replaces everything before `-m srpo_ref.run`

    def __post_init__(self):
        for name, low in (("nodes", 1), ("gpus", 0), ("cores", 1), ("port", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"launch: {name} must be an integer >= {low}, got {value!r}")

    @property
    def ranks_per_node(self) -> int:
        return max(self.gpus, 1)

    @property
    def threads(self) -> int:
        """CPU threads of each rank: the node's cores split evenly over its ranks (at least 1)."""
        return max(1, self.cores // self.ranks_per_node)


def _args(trainer_args: str | Sequence[str]) -> str:
    """Trainer arguments as shell text: a string is taken as already quoted, a list is quoted."""
    return trainer_args if isinstance(trainer_args, str) else shlex.join(trainer_args)


def node_script(spec: Launch) -> str:
    """What each node runs (under ``bash -c``) in a multi-node run, before the trainer's ``"$@"``."""
    return (f"OMP_NUM_THREADS={spec.threads} exec {spec.python} {TORCHRUN} --nnodes {spec.nodes} "
            f'--nproc_per_node {spec.ranks_per_node} --node_rank "$SLURM_NODEID" --rdzv_backend c10d '
            f'--rdzv_endpoint "{HEAD}:{spec.port}" --rdzv_id "$SLURM_JOB_ID" "$@"')


def srun_prefix(spec: Launch) -> str:
    """One slurm task per node, each with all the node's cores (and GPUs) for its ranks."""
    gres = f" --gres=gpu:{spec.gpus}" if spec.gpus else ""
    return (f"srun --nodes {spec.nodes} --ntasks {spec.nodes} --ntasks-per-node 1 "
            f"--cpus-per-task {spec.cores}{gres} --kill-on-bad-exit=1")


def train_command(spec: Launch, trainer_args: str | Sequence[str]) -> str:
    """The full shell line for one run (without output redirection).

    ``trainer_args``: everything after ``-m srpo_ref.run`` (``--config ...`` and the overrides),
    as already-quoted shell text or as a list of arguments; ``run.threads`` is appended here.
    """
    t = spec.threads
    tail = f"{TRAINER} {_args(trainer_args)} run.threads={t}"
    if spec.launcher:
        return f"OMP_NUM_THREADS={t} {spec.launcher} {tail}"
    if spec.nodes > 1:
        return f"{srun_prefix(spec)} bash -c {shlex.quote(node_script(spec))} srpo-train {tail}"
    if spec.gpus > 0:
        return f"OMP_NUM_THREADS={t} {spec.python} {TORCHRUN} --standalone --nproc_per_node {spec.gpus} {tail}"
    return f"OMP_NUM_THREADS={t} {spec.python} {tail}"


def from_config(train: dict, cores: int | None = None) -> Launch:
    """The pipeline's ``train:`` section (config/*.yaml) as a Launch; ``cores`` overrides
    ``train.threads`` (the train rule passes its threads, which Snakemake caps at --cores)."""
    return Launch(nodes=int(train.get("nodes", 1)), gpus=int(train.get("gpus", 0)),
                  cores=int(cores if cores is not None else train.get("threads", 1)),
                  port=int(train.get("rdzv_port", DEFAULT_PORT)), launcher=train.get("launcher") or "")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m srpo_ref.launch",
        description="Build (and run) the shell line that starts srpo_ref.run on CPU, one GPU node or "
                    "several slurm nodes. Arguments after `--` go to the trainer.")
    p.add_argument("--nodes", type=int, default=1,
                   help="nodes (> 1: srun, one task per node; run it inside a slurm job)")
    p.add_argument("--gpus", type=int, default=0, help="GPUs per node, one rank each (0: one CPU process)")
    p.add_argument("--cores", type=int, default=None, help="CPU cores per node (default: this machine's usable cores)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="rendezvous port on the head node")
    p.add_argument("--python", default="python", help="interpreter on the node(s)")
    p.add_argument("--launcher", default="", help="explicit launcher replacing everything before -m srpo_ref.run")
    p.add_argument("--dry-run", action="store_true", help="print the line, run nothing")
    p.add_argument("trainer_args", nargs=argparse.REMAINDER, help="-- then the trainer's arguments")
    a = p.parse_args(argv)
    rest = a.trainer_args[1:] if a.trainer_args[:1] == ["--"] else a.trainer_args
    cores = a.cores if a.cores is not None else len(os.sched_getaffinity(0))
    try:
        spec = Launch(nodes=a.nodes, gpus=a.gpus, cores=cores, port=a.port, python=a.python, launcher=a.launcher)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    line = train_command(spec, rest)
    print(line, flush=True)
    if a.dry_run:
        return 0
    os.execvp("bash", ["bash", "-c", line])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
