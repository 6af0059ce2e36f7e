"""The memory plan against a measured peak on CPU: ``python benchmarks/memory_check.py --model M
--benchmark B [overrides]``.

Runs one real training step (unsharded, one process, HF engine, the config's dtype: fp32 by
default) and records the peak bytes of live tensors (``memory_plan.measure_peak``: the tensors
alive before the step, plus the profiler's allocations minus frees during it). The step is the
plan's worst case:

- a steady-state step: the gradients and AdamW moments a previous step leaves are alive when it
  starts (created up front by one AdamW step on zero gradients at learning rate 0, which changes no
  weight);
- every response is exactly ``rollout.max_response_tokens`` long (the gold reference answer for the
  first rollout of each group, a wrong one for the others, padded with filler), so all but one
  rollout of each group are distilled (SRPO/SDPO) and, with ``optim.micro_batch_size`` at most
  half of those, a micro-batch of distilled rows runs with the gradients of an earlier one alive;
- every sequence runs whole (``optim.shared_prefix=false``: the plan's prefix-cache term is for
  prompts a micro-batch does not share), and the plan is made with ``data.max_prompt_tokens`` set
  to the step's longest prompt; the rows of a micro-batch have equal lengths (the prompts of the
  tiny tasks too), so transformers passes no attention mask, and the plan is made with
  ``padded=False``.

Prints plan, measurement and their ratio as JSON, the whole peak and the part above the tensors
alive before the step (what the micro-batch adds: the plan's largest update moment). The plan's
generation phase (vLLM's share) and its GPU-only allowances are not part of this check.

Sharded: ``python -m torch.distributed.run --nproc_per_node 2 benchmarks/memory_check.py ...
run.sharding=fsdp model.dtype=bfloat16`` (FSDP2 over gloo on CPU) measures every rank and prints
the largest peak with each rank's ratios. gloo frees some blocks on its own threads, which the
profiler does not see; ``measure_peak`` recovers those whose address is reused, and a run now and
then still counts one unseen free (a rank measures about 15% more than the others): rerun it.

``--model tiny-shape`` and ``--model smollm2-135m-shape`` build (once, under ``--cache``) a model
with random weights and the tiny tokenizer: the tiny base's architecture (``srpo_ref.models.tiny``'s
builder, without its warm-up), or SmolLM2-135M's exact shape (Llama, hidden 576, 30 layers,
9 query / 3 key-value heads, MLP 1536, vocabulary 49152, tied). Memory depends on shapes only
(the rewards are fixed by the rollouts above), so they stand for the warmed-up tiny base and the
real SmolLM2-135M-Instruct (``python -m srpo_ref.models.smollm2``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srpo_ref import distributed, memory_plan, tasks  # noqa: E402
from srpo_ref.config import load_config  # noqa: E402
from srpo_ref.rollout import Sample  # noqa: E402
from srpo_ref.trainer import Trainer  # noqa: E402

SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True, max_position_embeddings=8192,
                    rope_theta=100000.0, rms_norm_eps=1e-5)


class FullLengthRollouts:
    """Every response exactly ``length`` tokens: the gold reference answer for the first rollout of
    each group and a wrong one for the others, followed by filler tokens."""

    name = "full-length"

    def __init__(self, tokenizer, examples_by_prompt: dict, length: int):
        self.tok, self.examples, self.length = tokenizer, examples_by_prompt, length

    seed_rank = 0  # one process: its own seed

    def sync_weights(self, model):
        pass

    def sleep(self):
        pass

    def shutdown(self):
        pass

    def __getattr__(self, name):  # any other engine hook the trainer calls (wake-ups, ...): nothing to do
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None

    def generate(self, prompt_ids, n, sampling):
        filler = self.tok.encode(" .", add_special_tokens=False)
        out = []
        for ids in prompt_ids:
            gold, wrong = tasks.reference_responses(self.examples[tuple(ids)])
            group = []
            for j in range(n):
                rid = self.tok.encode(gold if j == 0 else wrong, add_special_tokens=False)
                rid = (rid + filler * self.length)[: self.length]
                group.append(Sample(rid, self.tok.decode(rid), "length"))
            out.append(group)
        return out


def shape_model(name: str, out: Path) -> Path:
    """A random-weight model of a named shape with the tiny tokenizer, saved at ``out`` (once):
    ``tiny-shape`` (the tiny base's architecture, ``srpo_ref.models.tiny.build_model``) or
    ``smollm2-135m-shape``."""
    if (out / "config.json").exists():
        return out
    from srpo_ref.models.tiny import build_model, train_tokenizer

    tok = train_tokenizer()
    if name == "tiny-shape":
        model = build_model(tok)
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        cfg = LlamaConfig(**SMOLLM2_135M, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id)
        model = LlamaForCausalLM(cfg)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


SHAPES = ("tiny-shape", "smollm2-135m-shape")


def steady_state(trainer: Trainer) -> None:
    """The gradients and AdamW moments a previous step leaves: zero gradients and one AdamW step
    at learning rate 0 (no weight changes), then the step counter back to 0."""
    for p in trainer.model.parameters():
        p.grad = torch.zeros_like(p)
    lrs = [g["lr"] for g in trainer.optimizer.param_groups]
    for g in trainer.optimizer.param_groups:
        g["lr"] = 0.0
    trainer.optimizer.step()
    for g, lr in zip(trainer.optimizer.param_groups, lrs):
        g["lr"] = lr


def check(model: str, benchmark: str, overrides: list[str], cache: str | Path = "/tmp/memory_check") -> dict:
    if model in SHAPES:
        model = str(shape_model(model, Path(cache) / model))
    cfg = load_config(None, [f"model.path={model}", f"data.benchmark={benchmark}", f"run.out_dir={cache}/run",
                             "run.device=cpu", "run.sharding=none", "rollout.engine=hf", "eval.val_every=0",
                             "optim.shared_prefix=false", *overrides])
    trainer = Trainer(cfg)
    prompts, _ = trainer.prompts_for_step(0)
    trainer.engine = FullLengthRollouts(trainer.tokenizer, {tuple(ids): ex for ex, ids in trainer.train_set},
                                        cfg.rollout.max_response_tokens)
    cfg.data.max_prompt_tokens = max(len(ids) for _, ids in prompts)  # the plan's micro-batch = the step's longest
    models = [m for m in (trainer.model, trainer.teacher) if m is not None]
    weights = memory_plan.storage_bytes(  # this rank's shards when sharded
        [distributed.local(p) for m in models for p in list(m.parameters()) + list(m.buffers())])
    rec = {}

    def step():
        # the previous step's state is made inside the measurement: the profiler sees a block freed
        # only if it saw it allocated (the step frees the gradients with zero_grad(set_to_none=True))
        steady_state(trainer)
        rec.update(trainer.train_step())

    measured = memory_plan.measure_peak(step, weights)
    before = weights + memory_plan.storage_bytes(
        [distributed.local(p.grad) for p in trainer.model.parameters() if p.grad is not None]
        + [distributed.local(v) for st in trainer.optimizer.state.values() for v in st.values() if torch.is_tensor(v)])
    # equal-length rows: no attention mask, as the plan is told (training's padded batches add one)
    plan = memory_plan.plan(cfg, gpus=distributed.world(), device="cpu", padded=False)
    above = plan["update_phase"] - plan["persistent"]
    mib = lambda b: round(b / 2**20, 2)  # noqa: E731
    return {"model": model, "benchmark": benchmark, "method": cfg.method.name, "n_params": plan["n_params"],
            "micro_batch_tokens": plan["micro_batch_tokens"], "teacher_forward_samples": rec["teacher_forward_samples"],
            "plan_terms_mib": {k: mib(v) for k, v in plan["terms"].items()},
            "plan_moments_mib": {k: mib(v) for k, v in plan["moments"].items()}, "plan_peak_at": plan["update_at"],
            "plan_mib": mib(plan["update_phase"]), "measured_mib": mib(measured),
            "plan_over_measured": round(plan["update_phase"] / measured, 3),
            "persistent_plan_mib": mib(plan["persistent"]), "persistent_measured_mib": mib(before),
            "above_persistent_plan_mib": mib(above), "above_persistent_measured_mib": mib(measured - before),
            "above_persistent_plan_over_measured": round(above / (measured - before), 3)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help=f"a model directory, or one of {', '.join(SHAPES)}")
    ap.add_argument("--benchmark", required=True)
    ap.add_argument("--cache", default="/tmp/memory_check", help="where the run directory and a built model go")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    res = check(a.model, a.benchmark, a.overrides, a.cache)
    import torch.distributed as dist

    if dist.is_initialized():  # under torchrun (run.sharding=fsdp): every rank's figures, the largest peak
        every = [None] * dist.get_world_size()
        dist.all_gather_object(every, res)
        if dist.get_rank() == 0:
            res = max(every, key=lambda r: r["measured_mib"])
            res["ranks"] = [{k: r[k] for k in ("measured_mib", "plan_over_measured",
                                               "above_persistent_plan_over_measured")}
                            for r in every]
        dist.destroy_process_group()
        if res.get("ranks") is None:
            return
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
