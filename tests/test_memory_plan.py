"""The memory plan (``srpo-train --memory-plan``): its figures against a measured peak on CPU, and
the paper profile on 8 x 80 GB GPUs."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from srpo_ref import memory_plan
from srpo_ref.config import load_config

REPO = Path(__file__).resolve().parents[1]


def _memory_check():
    spec = importlib.util.spec_from_file_location("memory_check", REPO / "benchmarks" / "memory_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("method", ["srpo", "grpo"])
def test_plan_is_within_25_percent_of_the_measured_peak_on_cpu(tiny_base, method):
    res = _memory_check().check(str(tiny_base), "tiny_mcq", [
        f"method.name={method}", "rollout.prompts_per_step=4", "rollout.rollouts_per_prompt=4", "optim.mini_batch_prompts=4",
        "optim.micro_batch_size=8", "rollout.max_response_tokens=40"])
    if method == "srpo":
        assert res["teacher_forward_samples"] > 0  # the teacher's forward is part of the measured step
    assert 0.75 <= res["plan_over_measured"] <= 1.25, res


def test_measure_peak_counts_what_is_alive_at_once():
    import torch

    def f():
        a = torch.empty(1 << 20, dtype=torch.uint8)  # 1 MiB
        b = torch.empty(2 << 20, dtype=torch.uint8)  # 2 MiB, both alive: 3 MiB
        del a, b
        c = torch.empty(1 << 20, dtype=torch.uint8)  # noqa: F841
    base = [torch.empty(4 << 20, dtype=torch.uint8)]
    peak = memory_plan.measure_peak(f, base)
    assert 7 << 20 <= peak < (7 << 20) + (64 << 10)


def test_paper_profile_fits_8_gpus_of_80_gb_only_sharded():
    cfg = load_config(str(REPO / "srpo_ref/configs/paper.yaml"), [])
    assert cfg.run.sharding == "fsdp"  # the default, because replicated it cannot fit
    sharded = memory_plan.plan(cfg, gpus=8, gpu_gib=80)
    assert sharded["fits"] and sharded["peak"] > 20 * memory_plan.GIB
    cfg.run.sharding = "none"
    replicated = memory_plan.plan(cfg, gpus=8, gpu_gib=80)
    assert not replicated["fits"]
    # Qwen3-8B: 8.19B parameters; 16 bytes each for weights, gradients and AdamW, 4 for the teacher
    assert replicated["n_params"] == pytest.approx(8.19e9, rel=0.01)
    t = replicated["terms"]
    assert t["parameters"] + t["gradients"] + t["optimizer"] + t["teacher"] == pytest.approx(20 * replicated["n_params"] + 2 * replicated["n_params"])


@pytest.mark.parametrize("config", ["srpo_ref/configs/paper.yaml", "config/paper.yaml"])  # a trainer config or a pipeline profile
def test_cli_prints_the_plan_with_the_peak_last(config):
    out = subprocess.run([sys.executable, "-m", "srpo_ref.trainer", "--config", config, "--memory-plan",
                          "--gpus", "8"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    for term in ("parameters", "gradients", "optimizer", "teacher", "activations", "logits", "vllm"):
        assert any(line.split()[0] == term for line in lines[1:] if line.strip()), term
    assert lines[-1].startswith("peak per GPU: ") and lines[-1].endswith("GiB of 80 GiB")
    assert lines[0].startswith("memory plan: 8.191 B parameters, 8 GPU(s) x 80 GiB, sharding=fsdp")  # Qwen3-8B
