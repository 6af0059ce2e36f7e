"""Evaluate a model on benchmark suites: ``srpo-eval --model PATH --suite paper|mathcode|tiny``.

For each benchmark: load the test split (``srpo_ref.tasks``, same prompts as training), apply
the chat template (thinking off), draw ``k`` samples per question with vLLM (``n=k`` in one
request) or HF ``generate``, score every sample with the shared reward code, and write

    OUT/<benchmark>/samples.jsonl   one line per sample: question id, sample index, text,
                                    extracted answer, reward, finish reason, tokens
    OUT/<benchmark>/results.json    metrics (avg@k with a bootstrap standard error, pass@1,
                                    pass@k, maj@k for MCQ, truncation rate, mean length) and
                                    provenance (git commit, package versions, resolved config,
                                    model path and weight hash, hardware, wall time)
    OUT/summary.json                the per-benchmark metrics and the suite average

HumanEval and MBPP use the HumanEval+ / MBPP+ tests through evalplus when its data is reachable
(``HUMANEVAL_OVERRIDE_PATH`` / ``MBPP_OVERRIDE_PATH`` pointing at local copies, or online), the
base tests otherwise; ``results.json`` says which (``tests: plus | base``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from evals import metrics
from srpo_ref import rewards, tasks
from srpo_ref.rollout import HFEngine, SamplingConfig, VLLMEngine
from srpo_ref.teacher import chat_prompt_ids

SUITES = {"paper": tasks.PAPER_BENCHMARKS, "mathcode": tasks.MATHCODE_BENCHMARKS, "tiny": tasks.TINY_BENCHMARKS}


@dataclass
class EvalSettings:
    k: int = 16
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 8192
    seed: int = 0
    backend: str = "vllm"  # vllm | hf
    limit: int | None = None
    data_dir: str | None = None
    max_model_len: int | None = None


def benchmarks_of(suite: str | None, names: list[str] | None) -> list[str]:
    if names:
        unknown = [n for n in names if n not in tasks.TASKS]
        if unknown:
            raise ValueError(f"unknown benchmark(s) {unknown}; known: {list(tasks.TASKS)}")
        return list(names)
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose one of {list(SUITES)}")
    return list(SUITES[suite])


def extracted_answer(ex: tasks.Example, text: str):
    if ex.kind == "mcq":
        return rewards.extract_mcq_answer(text)
    if ex.kind == "tooluse":
        return rewards.extract_tool_calls(text)[0]
    if ex.kind == "math":
        import re

        boxed = re.findall(r"\\boxed\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}", text)
        return boxed[-1] if boxed else None
    return None


# ----------------------------------------------------------------------------- evalplus


def evalplus_tests(name: str) -> dict[str, str] | None:
    """task id -> test program using the HumanEval+ / MBPP+ inputs, or None when evalplus data
    cannot be reached (offline without an override path)."""
    var = {"humaneval": "HUMANEVAL_OVERRIDE_PATH", "mbpp": "MBPP_OVERRIDE_PATH"}[name]
    if not os.environ.get(var) and tasks._offline():
        return None
    try:
        from evalplus.data import get_human_eval_plus, get_mbpp_plus

        problems = get_human_eval_plus() if name == "humaneval" else get_mbpp_plus()
    except Exception:
        return None
    out = {}
    for task_id, p in problems.items():
        inputs = list(p.get("base_input", [])) + list(p.get("plus_input", []))
        ref = p["prompt"] + p["canonical_solution"] if name == "humaneval" else p["canonical_solution"]
        key = task_id if name == "humaneval" else f"mbpp-{task_id.split('/')[-1]}"
        out[key] = _plus_program(ref, p["entry_point"], inputs, float(p.get("atol", 0) or 0))
    return out


def _plus_program(reference: str, entry_point: str, inputs: list, atol: float) -> str:
    """Compare the candidate's outputs with the reference solution's on every input."""
    return (
        "import copy, math\n"
        f"_ref_ns = {{}}\nexec({reference!r}, _ref_ns)\n_ref = _ref_ns[{entry_point!r}]\n"
        f"_inputs = {json.dumps(inputs)!s}\n"
        "def _same(a, b):\n"
        f"    if isinstance(a, float) or isinstance(b, float):\n        return math.isclose(a, b, rel_tol=1e-6, abs_tol=max({atol}, 1e-9))\n"
        "    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):\n"
        "        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))\n"
        "    return a == b\n"
        "for _inp in _inputs:\n"
        f"    assert _same({entry_point}(*copy.deepcopy(_inp)), _ref(*copy.deepcopy(_inp))), _inp\n"
    )


# ----------------------------------------------------------------------------- running


def weight_hash(model_path: str) -> str | None:
    """sha256 over the model's weight files (first 64 MiB of each, for speed on large models)."""
    p = Path(model_path)
    files = sorted(list(p.glob("*.safetensors")) + list(p.glob("*.bin")) + list(p.glob("*.gguf"))) if p.is_dir() else []
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        with f.open("rb") as fh:
            h.update(fh.read(64 << 20))
    return h.hexdigest()


def make_engine(model_path: str, settings: EvalSettings):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (Path(model_path) / "config.json").exists() and (Path(model_path).exists() or tasks._offline()):
        raise FileNotFoundError(f"model path {model_path!r} is not a model directory (no config.json there)")
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if settings.backend == "vllm":
        return VLLMEngine(model_path, tokenizer, seed=settings.seed, max_model_len=settings.max_model_len or 4096), tokenizer
    if settings.backend != "hf":
        raise ValueError(f"unknown backend {settings.backend!r}; choose vllm or hf")
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16 if device == "cuda" else torch.float32).to(device)
    return HFEngine(model, tokenizer), tokenizer


def evaluate_benchmark(engine, tokenizer, name: str, settings: EvalSettings, out_dir: Path, model_path: str) -> dict:
    from tqdm import tqdm

    t0 = time.time()
    examples = tasks.load_task(name, "test", settings.data_dir)
    if settings.limit:
        examples = examples[: settings.limit]
    tests_used = "n/a"
    if name in ("humaneval", "mbpp"):
        plus = evalplus_tests(name)
        tests_used = "plus" if plus else "base"
        if plus:
            examples = [tasks.Example(e.id, e.messages, plus.get(e.id, e.gold), e.kind, e.meta) for e in examples]
    prompts = [chat_prompt_ids(tokenizer, ex.messages) for ex in examples]
    sampling = SamplingConfig(settings.temperature, settings.top_p, settings.max_new_tokens, settings.seed)
    groups = []
    chunk = 64
    for i in tqdm(range(0, len(prompts), chunk), desc=f"generate {name}", unit="chunk"):
        groups += engine.generate(prompts[i : i + chunk], settings.k, sampling)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores, lengths, trunc, answers = [], [], [], []
    with (out_dir / "samples.jsonl").open("w") as f:
        for ex, group in tqdm(list(zip(examples, groups)), desc=f"score {name}", unit="q"):
            row_s, row_l, row_t, row_a = [], [], [], []
            for j, s in enumerate(group):
                r = ex.score(s.text)
                ans = extracted_answer(ex, s.text)
                row_s.append(r), row_l.append(len(s.response_ids)), row_t.append(s.finish_reason == "length"), row_a.append(ans if isinstance(ans, str) else None)
                f.write(json.dumps({"question_id": ex.id, "sample": j, "text": s.text, "extracted": ans, "reward": r,
                                    "finish_reason": s.finish_reason, "tokens": len(s.response_ids)}) + "\n")
            scores.append(row_s), lengths.append(row_l), trunc.append(row_t), answers.append(row_a)
    golds = [str(ex.gold) for ex in examples] if examples and examples[0].kind == "mcq" else None
    result = {
        "benchmark": name,
        "metrics": metrics.summarize(scores, lengths, trunc, answers if golds else None, golds),
        "tests": tests_used,
        "config": {**asdict(settings), "model": model_path, "engine": engine.name},
        "provenance": provenance(model_path),
        "wall_seconds": round(time.time() - t0, 3),
    }
    (out_dir / "results.json").write_text(json.dumps(result, indent=2))
    return result


def provenance(model_path: str) -> dict:
    import subprocess

    import torch
    import transformers

    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    for pkg in ("vllm", "math_verify", "evalplus"):
        try:
            versions[pkg] = __import__(pkg).__version__
        except Exception:
            versions[pkg] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        commit = None
    return {"git_commit": commit, "versions": versions, "model_path": str(model_path), "weight_sha256": weight_hash(model_path),
            "hardware": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                         "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def evaluate(model_path: str, benchmarks: list[str], settings: EvalSettings, out: Path) -> dict:
    engine, tokenizer = make_engine(model_path, settings)
    per = {}
    for name in benchmarks:
        per[name] = evaluate_benchmark(engine, tokenizer, name, settings, out / name, model_path)["metrics"]
    summary = {"model": model_path, "benchmarks": per,
               "average_avg_at_k": sum(m["avg_at_k"] for m in per.values()) / len(per) if per else None}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
