"""srpo_ref/launch.py: the shell line that starts a training run on CPU, one GPU node, or several
slurm nodes, and the train rule's use of it (printed by `snakemake -n -p`, and the sbatch flags
snakemake-executor-plugin-slurm builds from the rule's resources)."""

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from srpo_ref.launch import Launch, from_config, main, train_command

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--config", "srpo_ref/configs/paper_32b.yaml", "model.path=Qwen/Qwen3-32B", "method.name=srpo"]

TWO_NODES = (
    "srun --nodes 2 --ntasks 2 --ntasks-per-node 1 --cpus-per-task 64 --gres=gpu:8 --kill-on-bad-exit=1 "
    "bash -c 'OMP_NUM_THREADS=8 exec python -m torch.distributed.run --nnodes 2 --nproc_per_node 8 "
    '--node_rank "$SLURM_NODEID" --rdzv_backend c10d '
    '--rdzv_endpoint "$(scontrol show hostnames "${SLURM_STEP_NODELIST:-$SLURM_JOB_NODELIST}" | head -n 1):29500" '
    "--rdzv_id \"$SLURM_JOB_ID\" \"$@\"' srpo-train "
    "-m srpo_ref.run --config srpo_ref/configs/paper_32b.yaml model.path=Qwen/Qwen3-32B method.name=srpo run.threads=8"
)
ONE_NODE = ("OMP_NUM_THREADS=8 python -m torch.distributed.run --standalone --nproc_per_node 8 "
            "-m srpo_ref.run --config srpo_ref/configs/paper_32b.yaml model.path=Qwen/Qwen3-32B method.name=srpo "
            "run.threads=8")
CPU = ("OMP_NUM_THREADS=2 python -m srpo_ref.run --config srpo_ref/configs/paper_32b.yaml "
       "model.path=Qwen/Qwen3-32B method.name=srpo run.threads=2")


@pytest.mark.parametrize("flags, expected", [
    (["--nodes", "2", "--gpus", "8", "--cores", "64"], TWO_NODES),
    (["--nodes", "1", "--gpus", "8", "--cores", "64"], ONE_NODE),
    (["--gpus", "0", "--cores", "2"], CPU),
], ids=["2x8", "1x8", "cpu"])
def test_dry_run_lines(flags, expected, capsys):
    assert main([*flags, "--dry-run", "--", *ARGS]) == 0
    line = capsys.readouterr().out.strip()
    print(line)
    assert line == expected


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "srpo_ref.launch", "--nodes", "2", "--gpus", "8", "--cores", "64",
                          "--dry-run", "--", *ARGS], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == TWO_NODES


def test_threads_and_overrides():
    assert Launch(nodes=2, gpus=8, cores=64).threads == 8
    assert Launch(gpus=8, cores=4).threads == 1  # never 0
    assert Launch(gpus=0, cores=6).threads == 6
    # the pipeline's train section; an explicit launcher (old configs) is taken verbatim
    spec = from_config({"gpus": 8, "threads": 64,
                        "launcher": "python -m torch.distributed.run --standalone --nproc_per_node 8"})
    assert train_command(spec, "--config c.yaml") == (
        "OMP_NUM_THREADS=8 python -m torch.distributed.run --standalone --nproc_per_node 8 -m srpo_ref.run "
        "--config c.yaml run.threads=8")
    # a string is already shell text (the pipeline's quoted overrides); a list is quoted here
    assert train_command(Launch(), "'a=b c'") == "OMP_NUM_THREADS=1 python -m srpo_ref.run 'a=b c' run.threads=1"
    assert train_command(Launch(), ["a=b c"]) == "OMP_NUM_THREADS=1 python -m srpo_ref.run 'a=b c' run.threads=1"
    assert from_config({"nodes": 2, "gpus": 8, "threads": 64, "rdzv_port": 29600}, cores=32).port == 29600
    with pytest.raises(ValueError, match="nodes"):
        Launch(nodes=0)
    assert main(["--gpus", "-1", "--dry-run"]) == 2


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_two_node_line_expands_on_each_node(tmp_path):
    """Run the 2-node line under a fake srun (one task per node, each with the environment srun
    gives it), scontrol and python: every node's torchrun gets its own node rank and the same
    head node, job id and untouched trainer arguments, from the task's environment, never from
    the environment the line itself runs in."""
    bin_dir, out = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    _script(bin_dir / "srun", """
        import os, subprocess, sys
        argv, opts = sys.argv[1:], {}
        while argv[0].startswith("--"):
            key = argv.pop(0)
            if "=" in key:
                k, v = key.split("=", 1)
                opts[k] = v
            else:
                opts[key] = argv.pop(0)
        assert opts == {"--nodes": "2", "--ntasks": "2", "--ntasks-per-node": "1", "--cpus-per-task": "64",
                        "--gres": "gpu:8", "--kill-on-bad-exit": "1"}, opts
        for node in range(int(opts["--nodes"])):
            env = {k: v for k, v in os.environ.items() if k != "SLURM_JOB_NODELIST"}
            env.update(SLURM_NODEID=str(node), SLURM_STEP_NODELIST="gpu[07-08]", SLURM_JOB_ID="4242")
            rc = subprocess.run(argv, env=env).returncode
            if rc:
                sys.exit(rc)
    """)
    _script(bin_dir / "scontrol", """
        import sys
        assert sys.argv[1:] == ["show", "hostnames", "gpu[07-08]"], sys.argv
        print("gpu07")
        print("gpu08")
    """)
    _script(bin_dir / "python", f"""
        import json, os, sys
        with open({str(out)!r}, "a") as f:
            f.write(json.dumps({{"argv": sys.argv[1:], "omp": os.environ.get("OMP_NUM_THREADS")}}) + "\\n")
    """)
    args = ["--config", "c.yaml", "model.path=/models/my model", "data.note=it's $HOME"]
    line = train_command(Launch(nodes=2, gpus=8, cores=64), args)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "SLURM_NODEID": "99", "SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "login01"}  # the submitting side's
    res = subprocess.run(["bash", "-c", f"set -euo pipefail; {line}"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    calls = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(calls) == 2
    for node, call in enumerate(calls):
        assert call["omp"] == "8"
        assert call["argv"] == ["-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "8",
                                "--node_rank", str(node), "--rdzv_backend", "c10d", "--rdzv_endpoint", "gpu07:29500",
                                "--rdzv_id", "4242", "-m", "srpo_ref.run", *args, "run.threads=8"]


def _dry_run_train(configfile: str, target: str) -> tuple[str, dict]:
    """`snakemake -n -p` of one training job: its shell line and resources."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run([sys.executable, "-m", "snakemake", target, "-n", "-p", "--forcerun", "train", "--cores", "64",
                          "--configfile", configfile], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    block = out[out.index("rule train:"):]
    shell = re.search(r"^Shell command: (.*)$", block, re.MULTILINE).group(1)
    raw = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE).group(1)
    resources = {}
    for item in raw.split(", "):
        k, v = item.split("=", 1)
        resources[k] = int(v) if v.isdigit() else v
    print(shell)
    return shell, resources


class _Resources(dict):
    __getattr__ = dict.__getitem__


def _sbatch_flags(resources: dict) -> str:
    """The resource flags snakemake-executor-plugin-slurm puts on the job's sbatch line."""
    from types import SimpleNamespace

    submit = pytest.importorskip("snakemake_executor_plugin_slurm.submit_string")
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    job = SimpleNamespace(resources=_Resources(resources), threads=resources["cpus_per_task"])
    params = {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "c", "account": "", "partition": "", "workdir": ""}
    call = submit.get_submit_command(job, params) + set_gres_string(job)
    return call.split("--comment c", 1)[1].strip()


def test_pipeline_train_line_two_nodes():
    shell, res = _dry_run_train("config/paper_32b.yaml", "work/paper_32b/runs/qwen3_32b/chemistry/srpo/seed0/DONE")
    assert shell.startswith(TWO_NODES.split(" srpo-train ")[0] + " srpo-train -m srpo_ref.run "
                            "--config srpo_ref/configs/paper_32b.yaml 'model.path=Qwen/Qwen3-32B' ")
    assert shell.endswith(" run.threads=8 > work/paper_32b/logs/train/qwen3_32b/chemistry/srpo/seed0.log 2>&1")
    # mpi: the slurm-jobstep executor runs the line as is (no `srun -n1` around our srun)
    assert res["mpi"] == "srun" and "gpu" not in res
    assert _sbatch_flags(res) == "-t 720 --mem 900000 --nodes=2 --ntasks=2 --cpus-per-task=64 --gres=gpu:8"


def test_pipeline_train_line_one_node():
    shell, res = _dry_run_train("config/paper.yaml", "work/paper/runs/qwen3_8b/chemistry/srpo/seed0/DONE")
    assert shell.startswith("OMP_NUM_THREADS=8 python -m torch.distributed.run --standalone --nproc_per_node 8 "
                            "-m srpo_ref.run --config srpo_ref/configs/paper.yaml 'model.path=Qwen/Qwen3-8B' ")
    assert "run.threads=8 >" in shell
    assert "mpi" not in res
    # one task of 64 cores with 8 GPUs (not --ntasks-per-gpu, which would make it 8 tasks of 64)
    assert _sbatch_flags(res) == "-t 720 --mem 900000 --nodes=1 --cpus-per-task=64 --gpus=8"
    # inside the job the slurm-jobstep executor runs the rule as `srun -n1 <these> ...`
    from types import SimpleNamespace

    jobstep = pytest.importorskip("snakemake_executor_plugin_slurm_jobstep")
    job = SimpleNamespace(resources=_Resources(res), threads=64)
    assert (jobstep.get_cpu_setting(job, True), jobstep.get_gpu_setting(job), jobstep.get_node_setting(job)) == (
        "--cpus-per-task=64", "--gpus=8", "--nodes=1")
