"""What a run records: the phase timer, the cost counters, the step's line of ``steps.jsonl``, the
checks on a rollout engine's answer, the run's provenance and the JSON-lines files themselves.

Everything here takes plain values (no Trainer), so the report stage can read provenance without
importing the trainer, and the update can count cost without importing the step.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from srpo_ref import distributed
from srpo_ref.rewards.code import cgroups, sandbox

# weight_sync: a vLLM engine's sleep after generating and its wake-up and reload after the update
PHASES = ("generate", "reward", "old_logprob", "teacher_forward", "update", "teacher_ema", "weight_sync")
PROJECT_ROOT = Path(__file__).resolve().parents[1]


class PhaseTimer:
    """Wall seconds per phase (CUDA-synchronised so asynchronous kernels are charged correctly)
    and, on GPU, each phase's peak memory: torch's allocator peak while the phase ran (its counter
    reset at the phase's start), and the device's used memory at the phase's end (cudaMemGetInfo:
    everything on the GPU, vLLM's pool included, and not what a sleeping vLLM has released, which
    torch's counters may still count)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = {p: 0.0 for p in PHASES}
        self.peak_gib: dict[str, float] = {}
        self.device_gib: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        yield
        if cuda:
            torch.cuda.synchronize()
            free, total = torch.cuda.mem_get_info(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / 2**30
            self.peak_gib[phase] = max(self.peak_gib.get(phase, 0.0), peak)
            self.device_gib[phase] = max(self.device_gib.get(phase, 0.0), (total - free) / 2**30)
        self.seconds[phase] += time.perf_counter() - t0


@dataclass
class Cost:
    """A step's per-phase counters: the method's tokens (every rollout's whole sequence, the FLOPs'
    basis), the tokens that went through the model here (shared prefixes once), and FLOPs."""

    phases: tuple[str, ...]
    tokens: dict = field(default_factory=dict)
    computed: dict = field(default_factory=dict)
    flops: dict = field(default_factory=dict)
    flops_computed: dict = field(default_factory=dict)  # the FLOPs of ``computed`` (MFU; not the budget's)

    def __post_init__(self):
        for d in (self.tokens, self.computed, self.flops, self.flops_computed):
            d.update({p: 0 for p in self.phases if p not in d})
        for d in (self.flops, self.flops_computed):
            d.update({p: float(v) for p, v in d.items()})

    def add(self, phase: str, tokens: int, computed: int, flops: float, flops_computed: float | None = None) -> None:
        self.tokens[phase] += tokens
        self.computed[phase] += computed
        self.flops[phase] += flops
        self.flops_computed[phase] += flops if flops_computed is None else flops_computed


def accumulate_metrics(into: dict, metrics: dict) -> None:
    """Add micro-batch metric sums into ``into`` (min and max for the weight extremes)."""
    for k, v in metrics.items():
        if k == "weight_min":
            into[k] = min(into.get(k, math.inf), v)
        elif k == "weight_max":
            into[k] = max(into.get(k, -math.inf), v)
        else:
            into[k] = into.get(k, 0.0) + v


_LOSS_SUMS = ("grpo_loss_sum", "sdpo_loss_sum", "teacher_entropy_sum", "weight_sum", "weight_sq_sum",
              "sdpo_tokens_count",
              "tokens_count", "raw_weight_sum")


def _update_sums(updates: list[dict]) -> dict[str, float]:
    """The step's updates' metric sums, over ranks (collectives: every rank joins, also one that
    distilled nothing)."""
    m: dict[str, float] = {}
    for u in updates:
        accumulate_metrics(m, u["metrics"])
    m.update(zip(_LOSS_SUMS, distributed.all_sum(torch.tensor([m.get(k, 0.0) for k in _LOSS_SUMS],
                                                              dtype=torch.float64)).tolist()))
    for k, op, none in (("weight_min", "min", math.inf), ("weight_max", "max", -math.inf)):
        m[k] = distributed.all_reduce_value(m.get(k, none), op)
    return m


def weight_statistics(m: dict[str, float]) -> dict:
    """Teacher entropy and entropy-weight statistics per distilled token (None when none was),
    from metric sums over the step or update (``srpo_objective``'s keys, with min and max)."""
    sdpo_tok = m["sdpo_tokens_count"]
    if not sdpo_tok:
        return dict.fromkeys(("teacher_entropy_mean", "weight_mean", "raw_weight_mean", "weight_std", "weight_min",
                              "weight_max"))
    return {
        "teacher_entropy_mean": m.get("teacher_entropy_sum", 0.0) / sdpo_tok,
        "weight_mean": m.get("weight_sum", 0.0) / sdpo_tok,
        "raw_weight_mean": m.get("raw_weight_sum", 0.0) / sdpo_tok,  # exp(-beta H) before the normaliser
        "weight_std": math.sqrt(max(m["weight_sq_sum"] / sdpo_tok - (m["weight_sum"] / sdpo_tok) ** 2, 0)),
        "weight_min": m.get("weight_min"),
        "weight_max": m.get("weight_max"),
    }


def step_record(progress: dict, threshold: float, reward_source: str, samples: list, rewards: torch.Tensor, data,
                updates: list[dict], timer: PhaseTimer, cost: Cost, lr: float, step_seconds: float) -> dict:
    """The step's line of ``steps.jsonl`` from its plain results, every sum over ranks (collectives).
    ``progress``: the step number and the training consumed after it (``Trainer.progress``)."""
    routing = data.routing
    sums = distributed.all_sum(torch.tensor([
        rewards.sum(), (rewards >= threshold).float().sum(), float(len(samples)),
        routing.to_sdpo.float().sum(), (routing.grpo_coef > 0).float().sum(), routing.has_teacher.float().sum(),
        float(sum(len(s.response_ids) for s in samples)), float(sum(s.finish_reason == "length" for s in samples)),
    ], dtype=torch.float64)).tolist()
    m = _update_sums(updates)
    n, tok_count = sums[2], max(m["tokens_count"], 1.0)
    grad_norms = [u["grad_norm"] for u in updates]
    weights = weight_statistics(m)
    return {
        **progress,
        "reward_mean": sums[0] / n,
        "accuracy": sums[1] / n,
        "frac_sdpo": sums[3] / n,
        "frac_grpo": sums[4] / n,
        "frac_teacher_available": sums[5] / n,
        "response_length_mean": sums[6] / n,
        "truncation_rate": sums[7] / n,
        **weights,
        "loss": (m.get("grpo_loss_sum", 0.0) + m.get("sdpo_loss_sum", 0.0)) / tok_count,
        "loss_grpo": m.get("grpo_loss_sum", 0.0) / tok_count,
        "loss_sdpo": m.get("sdpo_loss_sum", 0.0) / tok_count,
        "grad_norm": float(sum(grad_norms) / len(grad_norms)),
        "grads_finite": all(u["finite"] for u in updates),
        "lr": lr,
        "updates": len(updates),
        "seconds": {**{p: round(v, 5) for p, v in timer.seconds.items()}, "step": round(step_seconds, 5)},
        "tokens": cost.tokens,
        "tokens_computed": cost.computed,
        "flops": cost.flops,
        "flops_computed": cost.flops_computed,
        "teacher_forward_samples": len(data.teacher_prefixes),
        # GPU memory per phase (PhaseTimer): torch's allocator peak, and the device's use at the end
        "peak_memory_gib": max(timer.peak_gib.values()) if timer.peak_gib else None,
        "peak_memory_gib_by_phase": timer.peak_gib or None,
        "device_memory_gib_by_phase": timer.device_gib or None,
        "reward_source": reward_source,
    }


def check_rollouts(groups: list, n_prompts: int, n: int, vocab: int, engine: str) -> None:
    """The rollout engine's answer is what the step assumes: ``n`` samples for each prompt, token
    ids inside the vocabulary, one log-prob per token where given. A violation is an engine bug:
    a clear error here, not a wrong grouping or an index error deep in a forward."""
    if len(groups) != n_prompts:
        raise RuntimeError(f"rollout engine {engine!r} returned {len(groups)} groups for {n_prompts} prompts")
    for pi, group in enumerate(groups):
        if len(group) != n:
            raise RuntimeError(f"rollout engine {engine!r} returned {len(group)} samples for prompt {pi}, not {n}")
        for j, s in enumerate(group):
            bad = [t for t in s.response_ids if not 0 <= t < vocab]
            if bad:
                raise RuntimeError(f"rollout engine {engine!r}: prompt {pi} sample {j} has token ids outside the "
                                   f"vocabulary of {vocab}: {bad[:5]}")
            if s.logprobs is not None and len(s.logprobs) != len(s.response_ids):
                raise RuntimeError(f"rollout engine {engine!r}: prompt {pi} sample {j} has {len(s.logprobs)} log-probs "
                                   f"for {len(s.response_ids)} tokens")
    if any(math.isnan(v) for g in groups for s in g if s.logprobs is not None for v in s.logprobs):
        print("srpo-train: warning: the rollout engine returned NaN log-probs; this step runs without the truncated "
              "importance weight", file=sys.stderr)


def read_records(path: Path) -> list[dict]:
    """The JSON lines of ``path``; a torn line (a kill while it was written) is dropped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            print(f"srpo-train: dropping a torn line in {path}", file=sys.stderr)
    return out


def truncate_jsonl(path: Path, max_step: int) -> list[dict]:
    """Keep the records up to ``max_step`` (those past it were written after the checkpoint a
    resumed run starts from) and no torn line; returns the kept records."""
    if not path.exists():
        return []
    keep = [r for r in read_records(path) if isinstance(r, dict) and r.get("step", math.inf) <= max_step]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    os.replace(tmp, path)
    return keep


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=10).stdout


def provenance() -> dict:
    """The code, software and machine a result came from."""
    import transformers  # heavy, and only needed here

    try:
        commit = _git("rev-parse", "HEAD").strip()
        dirty = bool(_git("status", "--porcelain", "--", ".",
                          ":!results").strip())  # outputs under results/ do not count
    except (OSError, subprocess.TimeoutExpired):
        commit, dirty = None, None
    return {"git_commit": commit, "git_dirty": dirty, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "argv": sys.argv, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sandbox": sandbox.backend(),
            "cgroup": cgroups.describe()}
