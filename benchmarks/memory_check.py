"""The memory plan against a measured peak on CPU: ``python benchmarks/memory_check.py --model M
--benchmark B [overrides]``.

Runs one real training step (unsharded, one process, fp32, HF engine) and records the peak bytes
of live tensors (``memory_plan.measure_peak``: the weights loaded before, plus the profiler's
allocations minus frees during the step). The rollouts are fixed so that the step is the plan's
worst case: every response is exactly ``rollout.max_response_tokens`` long (a correct or a wrong
answer padded with filler; half of each group correct, so the teacher runs), every sequence runs
whole (``optim.shared_prefix=false``: sharing prompts can only lower the peak), and the plan is
made with ``data.max_prompt_tokens`` set to the step's longest prompt. Prints plan, measurement
and their ratio as JSON. The plan's generation phase (vLLM's share) is not part of this check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srpo_ref import memory_plan, tasks  # noqa: E402
from srpo_ref.config import load_config  # noqa: E402
from srpo_ref.rollout import Sample  # noqa: E402
from srpo_ref.trainer import Trainer  # noqa: E402


class FullLengthRollouts:
    """Every response exactly ``length`` tokens: alternately the gold and a wrong reference answer,
    followed by filler tokens."""

    name = "full-length"

    def __init__(self, tokenizer, examples_by_prompt: dict, length: int):
        self.tok, self.examples, self.length = tokenizer, examples_by_prompt, length

    def sync_weights(self, model):
        pass

    def generate(self, prompt_ids, n, sampling):
        filler = self.tok.encode(" .", add_special_tokens=False)
        out = []
        for ids in prompt_ids:
            gold, wrong = tasks.reference_responses(self.examples[tuple(ids)])
            group = []
            for j in range(n):
                rid = self.tok.encode(gold if j % 2 == 0 else wrong, add_special_tokens=False)
                rid = (rid + filler * self.length)[: self.length]
                group.append(Sample(rid, self.tok.decode(rid), "length"))
            out.append(group)
        return out


def check(model: str, benchmark: str, overrides: list[str]) -> dict:
    cfg = load_config(None, [f"model.path={model}", f"data.benchmark={benchmark}", "run.out_dir=/tmp/memory_check",
                             "run.device=cpu", "run.sharding=none", "rollout.engine=hf", "eval.val_every=0", "optim.shared_prefix=false",
                             *overrides])
    trainer = Trainer(cfg)
    prompts, _ = trainer.prompts_for_step(0)
    trainer.engine = FullLengthRollouts(trainer.tokenizer, {tuple(ids): ex for ex, ids in trainer.train_set}, cfg.rollout.max_response_tokens)
    cfg.data.max_prompt_tokens = max(len(ids) for _, ids in prompts)  # the plan's micro-batch = the step's longest
    existing = [p for m in (trainer.model, trainer.teacher) if m is not None for p in list(m.parameters()) + list(m.buffers())]
    rec = {}
    measured = memory_plan.measure_peak(lambda: rec.update(trainer.train_step()), existing)
    plan = memory_plan.plan(cfg, gpus=1)
    return {"model": model, "benchmark": benchmark, "method": cfg.method.name, "n_params": plan["n_params"],
            "micro_batch_tokens": plan["micro_batch_tokens"], "teacher_forward_samples": rec["teacher_forward_samples"],
            "plan_terms_mib": {k: round(v / 2**20, 2) for k, v in plan["terms"].items()},
            "plan_mib": round(plan["update_phase"] / 2**20, 2), "measured_mib": round(measured / 2**20, 2),
            "plan_over_measured": round(plan["update_phase"] / measured, 3)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--benchmark", required=True)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(json.dumps(check(a.model, a.benchmark, a.overrides), indent=2))


if __name__ == "__main__":
    main()
