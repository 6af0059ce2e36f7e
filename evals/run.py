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

HumanEval+ and MBPP+ are graded by evalplus itself when its data is reachable
(``HUMANEVAL_OVERRIDE_PATH`` / ``MBPP_OVERRIDE_PATH`` pointing at local copies, or online): its
problems (MBPP+ is its own 378-task set), its expected outputs, tolerances, special oracles and
per-input time limits, applied by our judge (``srpo_ref.rewards.code.judge``, ``judge="evalplus"``) to the
program's answers from the sandbox; expected outputs from the canonical solutions, run in the
sandbox once and cached.
Otherwise the base HumanEval (164) and MBPP test split (500) with their own asserts;
``results.json`` says which (``tests: plus | base``).

MCQ and Tool Use are scored under both grader modes (``srpo_ref.rewards``); ``metrics`` uses
``--grader`` (default ``upstream``) and ``metrics_by_grader`` holds both.

The context length is the longest prompt plus ``--max-new-tokens`` unless ``--max-model-len``
is given; a limit that cannot hold it is an error, never a silent cap.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from evals import metrics
from srpo_ref import rewards, tasks
from srpo_ref.rewards.code import cgroups, sandbox
from srpo_ref.rewards.code.jail import wire
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
    grader: str = rewards.DEFAULT_GRADER
    tooluse_system: str = tasks.DEFAULT_TOOLUSE_SYSTEM

    def check(self) -> None:
        """Reject settings that would divide by zero or sample nothing (before anything runs)."""
        if self.k < 1:
            raise ValueError(f"--k must be at least 1, got {self.k}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be a positive number of questions, got {self.limit}")
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"--max-model-len must be at least 2, got {self.max_model_len}")
        if self.grader not in rewards.GRADERS:
            raise ValueError(f"--grader must be one of {rewards.GRADERS}, got {self.grader!r}")
        tasks.tooluse_system_prompt(self.tooluse_system)


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
        return rewards.last_boxed(text)
    return None


# ----------------------------------------------------------------------------- evalplus

EVALPLUS_VARS = {"humaneval": "HUMANEVAL_OVERRIDE_PATH", "mbpp": "MBPP_OVERRIDE_PATH"}


def evalplus_examples(name: str) -> list[tasks.Example] | None:
    """HumanEval+ / MBPP+ as examples whose gold is an evalplus job (problem and expected
    outputs from evalplus's own ground truth), or None when evalplus's data cannot be reached
    (offline without an override path)."""
    var = EVALPLUS_VARS[name]
    if not os.environ.get(var) and tasks.offline():
        return None
    try:
        import evalplus.data.humaneval as he
        import evalplus.data.mbpp as mb
        from evalplus.data import get_human_eval_plus, get_human_eval_plus_hash, get_mbpp_plus, get_mbpp_plus_hash
        from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS

        # evalplus reads the override variables once, at import: follow the current environment.
        he.HUMANEVAL_OVERRIDE_PATH, mb.MBPP_OVERRIDE_PATH = (os.environ.get(EVALPLUS_VARS["humaneval"]),
                                                             os.environ.get(EVALPLUS_VARS["mbpp"]))
        if name == "humaneval":
            problems, hashcode, not_none = get_human_eval_plus(), get_human_eval_plus_hash(), []
        else:
            problems, hashcode, not_none = get_mbpp_plus(), get_mbpp_plus_hash(), MBPP_OUTPUT_NOT_NONE_TASKS
        expected = evalplus_expected(problems, hashcode, not_none)
    except Exception as e:  # noqa: BLE001  unreachable or malformed evalplus data: base tests
        print(f"evalplus data for {name} unavailable ({type(e).__name__}: {e}); using the base tests")
        return None
    out = []
    for task_id, p in problems.items():
        if name == "humaneval":
            user = f"Complete the following function.\n\n```python\n{p['prompt']}```"
            meta = {"prompt": p["prompt"], "canonical_solution": p["canonical_solution"],
                    "entry_point": p["entry_point"]}
        else:
            user = f"{p['prompt'].strip()}\nWrite the function `{p['entry_point']}` in Python."
            meta = {"canonical_solution": p["canonical_solution"], "entry_point": p["entry_point"]}
        gold = {"evalplus": name, "problem": p, "expected": expected[task_id]}
        eid = task_id if name == "humaneval" else f"mbpp-{task_id.split('/')[-1]}"
        out.append(tasks.Example(eid, [{"role": "system", "content": tasks.CODE_SYSTEM}, {"role": "user",
                                                                                          "content": user}],
                                 gold, "code", meta))
    return out


def evalplus_expected(problems: dict, hashcode: str, not_none) -> dict:
    """evalplus's expected outputs and reference times (as its ``get_groundtruth``), but with
    each canonical solution run in the sandbox as a candidate of the judge (``judge="record"``),
    never in this process; cached under ``$XDG_CACHE_HOME/srpo/evalplus/<hash>.json``."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "srpo" / "evalplus" / f"{hashcode}.json"
    if cache.exists():
        stored = json.loads(cache.read_text())
        return {tid: {k: (wire.decode(v) if k in ("base", "plus") else v) for k, v in o.items()} for tid,
                o in stored.items()}

    def record(item):
        task_id, p = item
        job = {"judge": "record", "candidate": p["prompt"] + p["canonical_solution"], "entry_point": p["entry_point"],
               "inputs": {"base": p["base_input"], "plus": p["plus_input"]},
               "output_not_none": p["entry_point"] in not_none,
               "timeout_s": 600.0}
        res = sandbox.run_job(job, sandbox.Limits(timeout_s=600.0, memory_mb=4096))
        if not res.passed or res.outputs is None:
            raise RuntimeError(f"{task_id}: the canonical solution did not run in the sandbox ({res.status}): "
                               f"{res.output_tail[-300:]}")
        return task_id, res.outputs

    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        stored = dict(pool.map(record, problems.items()))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(stored))
    tmp.replace(cache)
    return {tid: {k: (wire.decode(v) if k in ("base", "plus") else v) for k, v in o.items()} for tid,
            o in stored.items()}


def load_examples(name: str, settings: EvalSettings) -> tuple[list[tasks.Example], str]:
    """The test examples of ``name`` and which tests grade them (plus | base | n/a)."""
    tests_used = "n/a"
    examples = None
    if name in EVALPLUS_VARS:
        examples = evalplus_examples(name)
        tests_used = "plus" if examples else "base"
    if examples is None:
        examples = tasks.load_task(name, "test", settings.data_dir, settings.tooluse_system)
    if settings.limit:
        examples = examples[: settings.limit]
    return examples, tests_used


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


def load_tokenizer(model_path: str):
    from transformers import AutoTokenizer

    if not (Path(model_path) / "config.json").exists() and (Path(model_path).exists() or tasks.offline()):
        raise FileNotFoundError(f"model path {model_path!r} is not a model directory (no config.json there)")
    return AutoTokenizer.from_pretrained(model_path)


def context_length(model_path: str, longest_prompt: int, settings: EvalSettings) -> int:
    """Tokens the engine must hold: the longest prompt plus ``max_new_tokens``. An explicit
    ``--max-model-len`` or the model's own limit that is smaller is an error."""
    from transformers import AutoConfig

    need = longest_prompt + settings.max_new_tokens
    if settings.max_model_len is not None and settings.max_model_len < need:
        raise ValueError(f"--max-model-len {settings.max_model_len} cannot hold the longest prompt ({longest_prompt} "
                         f"tokens) "
                         f"plus --max-new-tokens {settings.max_new_tokens}; raise it or lower --max-new-tokens")
    limit = getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", None)
    if limit is not None and need > limit:
        raise ValueError(f"the longest prompt ({longest_prompt} tokens) plus --max-new-tokens "
                         f"{settings.max_new_tokens} "
                         f"exceeds the model's context of {limit} tokens; lower --max-new-tokens or --limit the "
                         f"questions")
    return settings.max_model_len or need


def make_engine(model_path: str, tokenizer, settings: EvalSettings, max_model_len: int):
    if settings.backend == "vllm":
        return VLLMEngine(model_path, tokenizer, seed=settings.seed, max_model_len=max_model_len)
    if settings.backend != "hf":
        raise ValueError(f"unknown backend {settings.backend!r}; choose vllm or hf")
    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_path,
                                                 dtype=torch.bfloat16 if device == "cuda" else torch.float32).to(device)
    return HFEngine(model, tokenizer)


def evaluate_benchmark(engine, name: str, examples: list[tasks.Example], prompts: list[list[int]], tests_used: str,
                       settings: EvalSettings, out_dir: Path, model_path: str) -> dict:
    from tqdm import tqdm

    t0 = time.time()
    sampling = SamplingConfig(settings.temperature, settings.top_p, settings.max_new_tokens, settings.seed)
    groups = []
    chunk = 64
    for i in tqdm(range(0, len(prompts), chunk), desc=f"generate {name}", unit="chunk"):
        groups += engine.generate(prompts[i : i + chunk], settings.k, sampling)
    graded_twice = bool(examples) and examples[0].kind in ("mcq", "tooluse")
    graders = rewards.GRADERS if graded_twice else (settings.grader,)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = {g: [] for g in graders}
    lengths, trunc, answers = [], [], []
    with (out_dir / "samples.jsonl").open("w") as f:
        for ex, group in tqdm(list(zip(examples, groups)), desc=f"score {name}", unit="q"):
            row = {g: [] for g in graders}
            row_l, row_t, row_a = [], [], []
            for j, s in enumerate(group):
                by_grader = {g: ex.score(s.text, g) for g in graders}
                ans = extracted_answer(ex, s.text)
                for g in graders:
                    row[g].append(by_grader[g])
                (row_l.append(len(s.response_ids)), row_t.append(s.finish_reason == "length"),
                 row_a.append(ans if isinstance(ans, str) else None))
                record = {"question_id": ex.id, "sample": j, "text": s.text, "extracted": ans,
                          "reward": by_grader[settings.grader],
                          "finish_reason": s.finish_reason, "tokens": len(s.response_ids)}
                if ex.kind == "code":  # where the tests ran (docs/judge.md: The code judge)
                    record["judge"] = tasks.code_judge(ex)
                if graded_twice:
                    record["reward_by_grader"] = by_grader
                f.write(json.dumps(record) + "\n")
            for g in graders:
                scores[g].append(row[g])
            lengths.append(row_l), trunc.append(row_t), answers.append(row_a)
    golds = [str(ex.gold) for ex in examples] if examples and examples[0].kind == "mcq" else None
    by_grader = {g: metrics.summarize(scores[g], lengths, trunc, answers if golds else None, golds) for g in graders}
    result = {
        "benchmark": name,
        "metrics": by_grader[settings.grader],
        "grader": settings.grader,
        "metrics_by_grader": by_grader if graded_twice else None,
        "tests": tests_used,
        "n_questions": len(examples),
        "judge_counts": (dict(collections.Counter(tasks.code_judge(ex) for ex in examples))
                         if graders and examples and examples[0].kind == "code" else None),
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
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent,
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        commit = None
    return {"git_commit": commit, "versions": versions, "model_path": str(model_path),
            "weight_sha256": weight_hash(model_path),
            "hardware": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                         "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
            "sandbox": sandbox.backend(), "cgroup": cgroups.describe(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def evaluate(model_path: str, benchmarks: list[str], settings: EvalSettings, out: Path) -> dict:
    """Everything that can fail on bad input (settings, data, model path, context length) is
    checked before the engine starts or anything is written."""
    settings.check()
    tokenizer = load_tokenizer(model_path)
    loaded = {}
    for name in benchmarks:
        examples, tests_used = load_examples(name, settings)
        if not examples:
            raise ValueError(f"benchmark {name} has no questions to evaluate")
        loaded[name] = (examples, [chat_prompt_ids(tokenizer, ex.messages) for ex in examples], tests_used)
    longest = max(len(p) for _, prompts, _ in loaded.values() for p in prompts)
    engine = make_engine(model_path, tokenizer, settings, context_length(model_path, longest, settings))
    per = {}
    for name, (examples, prompts, tests_used) in loaded.items():
        per[name] = evaluate_benchmark(engine, name, examples, prompts, tests_used, settings, out / name,
                                       model_path)["metrics"]
    summary = {"model": model_path, "benchmarks": per,
               "average_avg_at_k": sum(m["avg_at_k"] for m in per.values()) / len(per) if per else None}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
