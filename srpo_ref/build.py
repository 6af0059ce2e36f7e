"""A Trainer's parts from its config: the tokenizer, the student and teacher, the optimizer and
its schedule, the loss settings, the prompts, and the rollout engine. Each is a plain function of
the config (and the parts built before it), so the step itself (``srpo_ref.trainer``) reads on
one screen.
"""

from __future__ import annotations

import torch
from transformers import AutoTokenizer

from srpo_ref import distributed, losses, tasks
from srpo_ref.config import ConfigError, TrainConfig
from srpo_ref.rollout import HFEngine, VLLMEngine
from srpo_ref.teacher import chat_prompt_ids

COMPUTE_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def tokenizer(cfg: TrainConfig):
    tok = AutoTokenizer.from_pretrained(cfg.model.path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def optimizer_and_schedule(model, cfg: TrainConfig):
    """AdamW, and a linear warm-up over training steps from lr 0 at step 0, then constant: verl's
    get_constant_schedule_with_warmup, stepped once per training step (not per update)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    warm = cfg.optim.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, s / warm) if warm > 0 else 1.0)
    return optimizer, scheduler


def loss_config(cfg: TrainConfig) -> losses.LossConfig:
    m = cfg.method
    return losses.LossConfig(
        eps_low=m.eps_low, eps_high=m.eps_high, dual_clip=m.dual_clip, is_clip=m.is_clip, topk=m.topk, alpha=m.alpha,
        add_tail=m.add_tail, temperature=cfg.rollout.temperature, beta=cfg.beta, loss_agg=m.loss_agg,
        entropy_source=m.entropy_source,
    )


def prompts(cfg: TrainConfig, tok) -> tuple[list, list]:
    """The training and test prompts ``(example, prompt ids)``; prompts longer than
    ``data.max_prompt_tokens`` are dropped, the test split cut at ``eval.limit``."""
    d = cfg.data
    train = tasks.load_task(d.benchmark, "train", d.data_dir, d.tooluse_system)
    test = tasks.load_task(d.benchmark, "test", d.data_dir, d.tooluse_system)
    return _fitting(train, cfg, tok), _fitting(test[: cfg.eval.limit] if cfg.eval.limit else test, cfg, tok)


def _fitting(examples, cfg: TrainConfig, tok) -> list:
    keep = []
    for ex in examples:
        ids = chat_prompt_ids(tok, ex.messages)
        if len(ids) <= cfg.data.max_prompt_tokens:
            keep.append((ex, ids))
    if not keep:
        raise ValueError(f"no prompt of {cfg.data.benchmark} fits data.max_prompt_tokens={cfg.data.max_prompt_tokens}")
    return keep


def engine(cfg: TrainConfig, model, tok, all_prompts: list, sharded: bool, autocast):
    """The rollout engine: HF ``generate`` on the trainer's model, or a colocated vLLM engine
    (which owns its tensor-parallel group) sized for the longest prompt plus the response budget."""
    r = cfg.rollout
    if r.engine != "vllm":
        # a sharded model's forward is a collective: ranks keep decoding until all are done
        return HFEngine(model, tok, r.generation_batch_size, synced=sharded and distributed.world() > 1,
                        autocast_dtype=autocast)
    need = max(len(ids) for _, ids in all_prompts) + max(r.max_response_tokens, cfg.eval.max_new_tokens)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and need > limit:
        raise ConfigError(f"the longest prompt plus the response budget ({need} tokens) exceeds the model's context of "
                          f"{limit}; lower data.max_prompt_tokens or the response budgets")
    if distributed.world() % r.vllm_tensor_parallel_size:
        raise ConfigError(f"rollout.vllm_tensor_parallel_size={r.vllm_tensor_parallel_size} must divide the world "
                          f"size {distributed.world()}")
    return VLLMEngine(cfg.model.path, tok, seed=cfg.run.seed, gpu_memory_utilization=r.vllm_gpu_memory_utilization,
                      max_model_len=need, dtype=cfg.model.dtype, enforce_eager=r.vllm_enforce_eager,
                      sleep_mode=r.vllm_sleep, return_logprobs=True, tensor_parallel_size=r.vllm_tensor_parallel_size)
