"""Reference on-policy trainer for GRPO, SDPO and SRPO: ``srpo-train --config CONFIG [key=value ...]``.

One step, in plain words (SPEC sections 2-6):

1. **generate**: sample ``P`` prompts from the training split and ``G`` rollouts of each with
   the rollout engine (HF ``generate`` or colocated vLLM, which also returns its log-probs).
2. **reward**: score every rollout with the task's reward (``srpo_ref.rewards``).
3. **route**: ``route_samples`` sends each rollout to GRPO or SDPO for the configured method and
   draws one correct sibling as its demonstration; ``group_advantages`` gives ``A_i``.
4. **old_logprob**: the policy's log-probs before the first update, computed once for the PPO
   ratio, when a step makes several optimizer updates (GRPO's mini-batches) or for every method
   with ``optim.old_logprob=always`` (the SDPO authors' verl; cost comparisons then run every
   method under one execution policy). Otherwise, with one update per step, the loss is exactly
   on-policy and ``logp_old = logp.detach()``.
5. **update**, once per mini-batch of prompts (``srpo_ref.update``): the loss of SPEC section 6
   over the mini-batch's rollouts. The **teacher forward runs only on the samples routed to
   SDPO** (phase ``teacher_forward``), over "prompt with demonstration + the student's own
   response"; their tokens are weighted by ``exp(-beta H)`` over its mean on the update's
   distilled tokens (SPEC section 5). Every micro-batch's loss is divided by ``N``, the valid
   response tokens of the whole update (all micro-batches and ranks), so the gradient does not
   depend on micro-batch size or world size. Gradients are all-reduced across ranks, clipped,
   and AdamW steps. How the update is laid out in micro-batches (one pass, or distilled rows
   first), shared prefixes and sharded runs' pairing are ``srpo_ref.update``'s business.
6. **teacher_ema**: ``theta_T <- (1 - r) theta_T + r theta`` in fp32 when the step's gradients
   were finite (``ema``; ``frozen`` never updates, ``live`` uses the student itself).
7. **weight sync**: a vLLM engine loads the new weights (the HF engine samples from the model).
8. **record**: one line of ``steps.jsonl`` (``step_record``).

Every ``val_every`` steps: avg@k on the test split. Every ``save_every`` steps: a checkpoint.

Each step appends one JSON line to ``steps.jsonl`` (the input of every later table): reward,
accuracy, route fractions, teacher entropy and weight statistics, response lengths, per-branch
loss, grad norm, learning rate, and the cost record: wall seconds, tokens and estimated FLOPs
per phase. FLOPs are the standard per-token estimate of ``srpo_ref/flops.py`` (checked against
torch's FlopCounterMode): ``2 N_nonembedding`` plus the causal attention term per token, the
output layer only at the positions whose logits are computed (the response), backward twice the
forward, and the recompute under gradient checkpointing:

    generate, old_logprob, teacher_forward = forward over each rollout's prompt + response
    update = forward + backward (+ recompute)

The tokens are the method's (each rollout's whole sequence, as upstream computes it), so a
budget does not depend on prefix sharing; ``tokens_computed`` records what went through the model.

Checkpoints (model, teacher, optimizer, scheduler, data position) are written to a temporary
directory and renamed when complete, so a half-written one is never picked up; every random
draw of a step is seeded from ``(seed, step)``, so a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from srpo_ref import checkpoint, distributed, loading, losses, sandbox, tasks
from srpo_ref.config import ConfigError, TrainConfig, load_config
from srpo_ref.flops import FlopModel
from srpo_ref.loggers import RunLoggers
from srpo_ref.forward import Batch, make_batch, response_logits, teacher_statistics  # noqa: F401 (public here too)
from srpo_ref.rollout import HFEngine, SamplingConfig, VLLMEngine
from srpo_ref.teacher import chat_prompt_ids, teacher_input_ids
from srpo_ref.update import Cost, Rollouts, UpdateExecutor, accumulate_metrics

# weight_sync: a vLLM engine's sleep after generating and its wake-up and reload after the update
PHASES = ("generate", "reward", "old_logprob", "teacher_forward", "update", "teacher_ema", "weight_sync")


# ----------------------------------------------------------------------------- small utilities


rank, world, all_sum = distributed.rank, distributed.world, distributed.all_sum


# Salts of a step's random draws (step_seed): every draw has its own, and an engine's sampling
# adds 1000 r (r: its rank, or its tensor-parallel group), so no two engines share a seed.
DATA_ORDER_SALT, GENERATION_SALT, DEMO_SALT, RANDOM_REWARD_SALT, VALIDATION_SALT = 1, 2, 3, 4, 99


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    return (seed * 1_000_003 + step * 7_919 + salt * 104_729) % (2**31 - 1)


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
            self.peak_gib[phase] = max(self.peak_gib.get(phase, 0.0), torch.cuda.max_memory_allocated(self.device) / 2**30)
            self.device_gib[phase] = max(self.device_gib.get(phase, 0.0), (total - free) / 2**30)
        self.seconds[phase] += time.perf_counter() - t0


# ----------------------------------------------------------------------------- the trainer


class Trainer:
    def __init__(self, cfg: TrainConfig):
        from transformers import AutoTokenizer

        self.cfg = cfg
        self.out = Path(cfg.run.out_dir)
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        dev = cfg.run.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = distributed.init(dev)  # cuda:$LOCAL_RANK, made current before anything touches CUDA
        compute_dtype = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.model.dtype]
        self.sharded = cfg.run.sharding in ("fsdp", "hsdp")
        # Unsharded: fp32 weights with forwards under autocast. Sharded: FSDP's mixed-precision
        # policy casts the gathered weights instead (autocast would cast them a second time).
        self.autocast = None if self.sharded else compute_dtype

        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # fp32 master weights (sharded ones built on the meta device and filled from rank 0's
        # reads: srpo_ref/loading.py); the teacher is an EMA/frozen copy, sharded the same way
        with_teacher = cfg.method.teacher in ("ema", "frozen", "mix") and cfg.method.name not in ("grpo",)
        self.model, self.teacher = loading.load_policy(cfg, self.device, compute_dtype, with_teacher)
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.flop_model = FlopModel.from_config(self.model.config)  # the budget's FLOP unit (srpo_ref/flops.py)

        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        # Linear warm-up over training steps from lr 0 at step 0, then constant: verl's
        # get_constant_schedule_with_warmup, stepped once per training step (not per update).
        warm = cfg.optim.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, s / warm) if warm > 0 else 1.0)
        self.loss_cfg = losses.LossConfig(
            eps_low=cfg.method.eps_low, eps_high=cfg.method.eps_high, dual_clip=cfg.method.dual_clip,
            is_clip=cfg.method.is_clip, topk=cfg.method.topk, alpha=cfg.method.alpha, add_tail=cfg.method.add_tail,
            temperature=cfg.rollout.temperature, beta=cfg.beta, loss_agg=cfg.method.loss_agg,
            entropy_source=cfg.method.entropy_source,
        )
        self.train_set = self._prepare(tasks.load_task(cfg.data.benchmark, "train", cfg.data.data_dir, cfg.data.tooluse_system))
        test = tasks.load_task(cfg.data.benchmark, "test", cfg.data.data_dir, cfg.data.tooluse_system)
        self.test_set = self._prepare(test[: cfg.eval.limit] if cfg.eval.limit else test)
        if cfg.rollout.engine == "vllm":
            need = max(len(ids) for _, ids in self.train_set + self.test_set) + max(cfg.rollout.max_response_tokens, cfg.eval.max_new_tokens)
            limit = getattr(self.model.config, "max_position_embeddings", None)
            if limit is not None and need > limit:
                raise ConfigError(f"the longest prompt plus the response budget ({need} tokens) exceeds the model's context of "
                                  f"{limit}; lower data.max_prompt_tokens or the response budgets")
            tp = cfg.rollout.vllm_tensor_parallel_size
            if world() % tp:
                raise ConfigError(f"rollout.vllm_tensor_parallel_size={tp} must divide the world size {world()}")
            # vLLM's own groups use consecutive ranks; this one gathers the prompts of a group's ranks
            self.tp_group = None
            if tp > 1:
                groups = [dist.new_group(list(range(g, g + tp))) for g in range(0, world(), tp)]  # a collective: all ranks make all
                self.tp_group = groups[rank() // tp]
            self.engine = VLLMEngine(cfg.model.path, self.tokenizer, seed=cfg.run.seed,
                                     gpu_memory_utilization=cfg.rollout.vllm_gpu_memory_utilization,
                                     max_model_len=need, dtype=cfg.model.dtype, enforce_eager=cfg.rollout.vllm_enforce_eager,
                                     sleep_mode=cfg.rollout.vllm_sleep, return_logprobs=True, tensor_parallel_size=tp)
        else:
            # a sharded model's forward is a collective: ranks keep decoding until all are done
            self.engine = HFEngine(self.model, self.tokenizer, cfg.rollout.generation_batch_size,
                                   synced=self.sharded and world() > 1, autocast_dtype=self.autocast)
        self.n_updates = cfg.rollout.prompts_per_step // cfg.optim.mini_batch_prompts
        self.executor = UpdateExecutor(self.model, self.teacher, self.optimizer, self.tokenizer.pad_token_id, self.device, cfg,
                                       self.loss_cfg, self.autocast, self.flop_model, self.sharded)
        self.step = 0
        # training consumed so far (validation excluded), in every budget unit
        self.train_seconds, self.train_flops, self.train_tokens = 0.0, 0.0, 0

    def consumed(self, unit: str) -> float:
        """Training consumed so far in ``unit`` (run.budget_unit)."""
        return {"seconds": self.train_seconds, "flops": self.train_flops, "tokens": float(self.train_tokens),
                "steps": float(self.step)}[unit]

    def _prepare(self, examples):
        keep = []
        for ex in examples:
            ids = chat_prompt_ids(self.tokenizer, ex.messages)
            if len(ids) <= self.cfg.data.max_prompt_tokens:
                keep.append((ex, ids))
        if not keep:
            raise ValueError(f"no prompt of {self.cfg.data.benchmark} fits data.max_prompt_tokens={self.cfg.data.max_prompt_tokens}")
        return keep

    # ------------------------------------------------------------------ data order

    def prompts_for_step(self, step: int) -> tuple[list, list[int]]:
        """This rank's prompts of ``step`` and their global indices within the step. Epochs are
        seeded permutations of the training set, so the data position is a function of the step
        (exact resume needs nothing more). Each optimizer mini-batch is split across ranks, so
        every update sees the same prompts whatever the world size."""
        P, n = self.cfg.rollout.prompts_per_step, len(self.train_set)
        M = self.cfg.optim.mini_batch_prompts
        chosen = []
        for k in range(step * P, (step + 1) * P):
            epoch, pos = divmod(k, n)
            order = list(range(n))
            random.Random(step_seed(self.cfg.run.seed, epoch, salt=DATA_ORDER_SALT)).shuffle(order)
            chosen.append(self.train_set[order[pos]])
        share = M // world()
        mine = [u * M + rank() * share + j for u in range(P // M) for j in range(share)]
        return [chosen[i] for i in mine], mine

    # ------------------------------------------------------------------ one step

    def train_step(self) -> dict:
        """One training step: the module docstring's phases, in order."""
        cfg, step = self.cfg, self.step
        timer, cost = PhaseTimer(self.device), Cost(PHASES)
        t_step = time.perf_counter()
        torch.manual_seed(step_seed(cfg.run.seed, step))
        prompts, global_prompt = self.prompts_for_step(step)

        with timer("generate"):  # 1. generate
            samples = self.generate(prompts)
        with timer("weight_sync"):  # a vLLM engine hands its GPU memory to the update (sleep is optional)
            getattr(self.engine, "sleep", lambda: None)()
        generated = sum(len(s.response_ids) for _, s in samples)  # tokens sampled; the FLOPs include the prompts
        cost.add("generate", generated, generated, self.flop_model.generate(_lengths(prompts, samples)))
        with timer("reward"):  # 2. reward
            rewards = self.rewards(prompts, samples)
        data = self.route(prompts, global_prompt, samples, rewards)  # 3. route, with demonstrations
        with timer("teacher_forward"):  # building the teacher's prompts is part of its cost
            data.teacher_prefixes = self.teacher_prompts(prompts, samples, data.routing)

        rows = torch.arange(len(samples))
        if self.n_updates > 1 or cfg.optim.old_logprob == "always":  # 4. old log-probs
            with timer("old_logprob"):
                data.logp_old, computed, flops_computed = self.executor.logprobs(rows, data)
            cost.add("old_logprob", sum(p + r for p, r in _lengths(prompts, samples)), computed,
                     self.flop_model.forward_pass(_lengths(prompts, samples)), flops_computed)

        group_ids = torch.tensor([pi for pi, _ in samples])  # 5. update(s), one per mini-batch of prompts
        per_rank = cfg.optim.mini_batch_prompts // world()
        updates = [self.executor.update(rows[(group_ids >= u * per_rank) & (group_ids < (u + 1) * per_rank)], data, timer, cost)
                   for u in range(self.n_updates)]
        finite = all(u["finite"] for u in updates)

        with timer("teacher_ema"):  # 6. teacher EMA
            if self.teacher is not None and cfg.method.teacher == "ema" and finite:
                distributed.ema_(self.teacher, self.model, cfg.method.ema_rate)
        if cfg.rollout.engine == "vllm":  # 7. weight sync: wakes a sleeping engine, then loads layer by layer
            with timer("weight_sync"):
                self.engine.sync_weights(self.model)

        step_lr = self.optimizer.param_groups[0]["lr"]  # the rate this step's updates used
        self.scheduler.step()  # once per training step
        step_seconds = time.perf_counter() - t_step
        self._account(step_seconds, cost)
        rec = step_record(self, [s for _, s in samples], rewards, data, updates, timer, cost, step_lr, step_seconds)  # 8.
        self.step += 1
        return rec

    def generate(self, prompts: list) -> list:
        """``G`` rollouts of each prompt: ``[(prompt index, Sample)]``."""
        cfg = self.cfg
        groups = self.sample(prompts, cfg.rollout.rollouts_per_prompt, cfg.rollout.temperature, cfg.rollout.top_p,
                             cfg.rollout.max_response_tokens, GENERATION_SALT)
        _check_rollouts(groups, len(prompts), cfg.rollout.rollouts_per_prompt, self.model.config.vocab_size, self.engine.name)
        return [(pi, s) for pi, group in enumerate(groups) for s in group]

    def sample(self, prompts: list, n: int, temperature: float, top_p: float, max_new_tokens: int, salt: int) -> list:
        """The engine's ``n`` samples of each of this rank's ``prompts`` (``(example, ids)``). The
        seed is the step's, salted per engine: ranks that share a tensor-parallel vLLM engine
        (``rollout.vllm_tensor_parallel_size``) send it all of their prompts together, with one
        seed, and each keeps its own share of the answers."""
        tp = self.cfg.rollout.vllm_tensor_parallel_size if self.cfg.rollout.engine == "vllm" else 1
        ids = [p for _, p in prompts]
        mine = slice(0, len(ids))
        if tp > 1:
            shares = [None] * tp
            dist.all_gather_object(shares, ids, group=self.tp_group)
            start = sum(len(x) for x in shares[: rank() % tp])
            ids, mine = [p for share in shares for p in share], slice(start, start + len(ids))
        seed = step_seed(self.cfg.run.seed, self.step, salt=salt + 1000 * (rank() // tp))
        return self.engine.generate(ids, n, SamplingConfig(temperature, top_p, max_new_tokens, seed))[mine]

    def rewards(self, prompts: list, samples: list) -> torch.Tensor:
        """Each rollout's reward: the task's verifier, or with ``data.reward=random`` (smoke tests
        only) a coin flip seeded by the step and the rollout's place, so both branches run."""
        if self.cfg.data.reward == "random":
            g = torch.Generator().manual_seed(step_seed(self.cfg.run.seed, self.step, salt=RANDOM_REWARD_SALT + 1000 * rank()))
            return torch.randint(0, 2, (len(samples),), generator=g).float()
        return torch.tensor([prompts[pi][0].score(s.text, self.cfg.data.grader) for pi, s in samples])

    def route(self, prompts, global_prompt: list[int], samples: list, rewards: torch.Tensor) -> Rollouts:
        """Routing and demonstrations on the whole step's batch (gathered from every rank, routed the
        same way everywhere, so draws do not depend on the number of ranks), advantages, and the
        rollouts as the update reads them."""
        cfg, G, n_local = self.cfg, self.cfg.rollout.rollouts_per_prompt, len(samples)
        sample_key = torch.tensor([global_prompt[pi] * G + j for pi, j in _group_positions(samples)])
        all_keys, all_rewards = distributed.all_gather_cat(sample_key), distributed.all_gather_cat(rewards)
        order = torch.argsort(all_keys)  # the step's samples in global prompt order
        routing = losses.route_samples(all_rewards[order], all_keys[order] // G, cfg.method.name, cfg.method.success_threshold,
                                       generator=torch.Generator().manual_seed(step_seed(cfg.run.seed, self.step, salt=DEMO_SALT)))
        position = torch.empty_like(order)
        position[order] = torch.arange(len(order))
        mine = position[rank() * n_local : (rank() + 1) * n_local]  # my samples' places in that order
        demo = routing.demo_index[mine]
        routing = routing.select(mine)
        # demonstrations are siblings, so on this rank: map their global place back to a local row
        routing.demo_index = torch.where(demo >= 0, order[demo.clamp(min=0)] - rank() * n_local, demo)
        group_ids = torch.tensor([pi for pi, _ in samples])
        advantages = losses.group_advantages(rewards, group_ids, cfg.method.std_normalize)
        responses = [s.response_ids for _, s in samples]
        logp_rollout = None
        if all(s.logprobs is not None for _, s in samples) and not any(math.isnan(v) for _, s in samples for v in s.logprobs):
            logp_rollout = torch.zeros(n_local, max(1, max(len(r) for r in responses)))
            for i, (_, s) in enumerate(samples):
                logp_rollout[i, : len(s.logprobs)] = torch.tensor(s.logprobs)
        return Rollouts([prompts[pi][1] for pi, _ in samples], responses, {}, routing, advantages, logp_rollout)

    def teacher_prompts(self, prompts, samples: list, routing: losses.Routing) -> dict[int, list[int]]:
        """The teacher's prompt (with the drawn demonstration) for each sample the method distils."""
        out = {}
        for i in torch.nonzero(routing.to_sdpo).flatten().tolist():
            pi, s = samples[i]
            demo_text = samples[routing.demo_index[i]][1].text
            ids, plen = teacher_input_ids(self.tokenizer, prompts[pi][0].messages, demo_text, s.response_ids,
                                          self.cfg.method.max_demo_tokens)
            out[i] = ids[:plen]
        return out

    def _account(self, step_seconds: float, cost: Cost) -> None:
        """Add the step to the consumed training (FLOPs and tokens summed over ranks: a budget in
        these units does not depend on the world size)."""
        self.train_seconds += step_seconds
        step_cost = all_sum(torch.tensor([sum(cost.flops.values()), float(sum(cost.tokens.values()))], dtype=torch.float64)).tolist()
        self.train_flops += step_cost[0]
        self.train_tokens += int(step_cost[1])


    # ------------------------------------------------------------------ validation

    def validate(self) -> dict:
        """avg@k on the test split (this rank's share of questions, summed over ranks)."""
        cfg = self.cfg
        local = self.test_set[rank() :: world()]
        n_mine = len(local)
        if self.sharded:  # generation is a collective: every rank decodes as many questions (extras unscored)
            local = local + self.test_set[: distributed.max_over_ranks(n_mine) - n_mine]
        groups = self.sample(local, cfg.eval.k, cfg.eval.temperature, cfg.eval.top_p, cfg.eval.max_new_tokens, VALIDATION_SALT)[:n_mine]
        local = local[:n_mine]
        scores = [[ex.score(s.text, self.cfg.data.grader) for s in g] for (ex, _), g in zip(local, groups)]
        lengths = [len(s.response_ids) for g in groups for s in g]
        trunc = [s.finish_reason == "length" for g in groups for s in g]
        s = all_sum(torch.tensor([sum(map(sum, scores)), sum(len(x) for x in scores), len(scores),
                                  sum(any(v >= cfg.method.success_threshold for v in sc) for sc in scores), sum(lengths), sum(trunc)], dtype=torch.float64)).tolist()
        return {"step": self.step, "wall_seconds": round(self.train_seconds, 4), "cum_flops": self.train_flops,
                "cum_tokens": self.train_tokens, "avg_at_k": s[0] / s[1], "k": cfg.eval.k,
                "pass_at_k": s[3] / s[2], "n_questions": int(s[2]), "response_length_mean": s[4] / s[1], "truncation_rate": s[5] / s[1]}

    # ------------------------------------------------------------------ checkpoints

    def save(self) -> Path:
        return checkpoint.save(self, self.cfg.run.keep_checkpoints)

    def latest_checkpoint(self) -> Path | None:
        return checkpoint.latest(self.out)

    def load(self, ckpt: Path) -> None:
        checkpoint.load(self, ckpt)
        if self.cfg.rollout.engine == "vllm":
            self.engine.sync_weights(self.model)



def step_record(trainer: Trainer, samples: list, rewards: torch.Tensor, data: Rollouts, updates: list[dict], timer: PhaseTimer,
                cost: Cost, lr: float, step_seconds: float) -> dict:
    """The step's line of ``steps.jsonl`` from its plain results, every sum over ranks (collectives)."""
    thr = trainer.cfg.method.success_threshold
    routing = data.routing
    sums = all_sum(torch.tensor([
        rewards.sum(), (rewards >= thr).float().sum(), float(len(samples)),
        routing.to_sdpo.float().sum(), (routing.grpo_coef > 0).float().sum(), routing.has_teacher.float().sum(),
        float(sum(len(s.response_ids) for s in samples)), float(sum(s.finish_reason == "length" for s in samples)),
    ], dtype=torch.float64)).tolist()
    m: dict[str, float] = {}
    for u in updates:
        accumulate_metrics(m, u["metrics"])
    keys = ("grpo_loss_sum", "sdpo_loss_sum", "teacher_entropy_sum", "weight_sum", "weight_sq_sum", "sdpo_tokens_count", "tokens_count",
            "raw_weight_sum")
    m.update(zip(keys, all_sum(torch.tensor([m.get(k, 0.0) for k in keys], dtype=torch.float64)).tolist()))
    for k, op, none in (("weight_min", "min", math.inf), ("weight_max", "max", -math.inf)):
        m[k] = distributed.all_reduce_value(m.get(k, none), op)  # every rank joins, also one that distilled nothing
    n, tok_count, sdpo_tok = sums[2], max(m["tokens_count"], 1.0), m["sdpo_tokens_count"]
    per_sdpo_token = lambda k: m.get(k, 0.0) / sdpo_tok if sdpo_tok else None
    grad_norms = [u["grad_norm"] for u in updates]
    return {
        "step": trainer.step + 1,
        "wall_seconds": round(trainer.train_seconds, 4),
        "cum_flops": trainer.train_flops,
        "cum_tokens": trainer.train_tokens,
        "reward_mean": sums[0] / n,
        "accuracy": sums[1] / n,
        "frac_sdpo": sums[3] / n,
        "frac_grpo": sums[4] / n,
        "frac_teacher_available": sums[5] / n,
        "response_length_mean": sums[6] / n,
        "truncation_rate": sums[7] / n,
        "teacher_entropy_mean": per_sdpo_token("teacher_entropy_sum"),
        "weight_mean": per_sdpo_token("weight_sum"),
        "raw_weight_mean": per_sdpo_token("raw_weight_sum"),  # exp(-beta H) before the normaliser
        "weight_std": math.sqrt(max(m["weight_sq_sum"] / sdpo_tok - (m["weight_sum"] / sdpo_tok) ** 2, 0)) if sdpo_tok else None,
        "weight_min": m.get("weight_min") if sdpo_tok else None,
        "weight_max": m.get("weight_max") if sdpo_tok else None,
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
        "reward_source": trainer.cfg.data.reward,
    }


def _check_rollouts(groups: list, n_prompts: int, n: int, vocab: int, engine: str) -> None:
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


def _lengths(prompts, samples) -> list[tuple[int, int]]:
    """(prompt, response) lengths of each rollout: what the FLOP model counts."""
    return [(len(prompts[pi][1]), len(s.response_ids)) for pi, s in samples]


def _group_positions(samples) -> list[tuple[int, int]]:
    """(prompt index, index within its group) of each rollout, in order."""
    out, count = [], {}
    for pi, _ in samples:
        out.append((pi, count.get(pi, 0)))
        count[pi] = count.get(pi, 0) + 1
    return out


def _read_records(path: Path) -> list[dict]:
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


def _truncate_jsonl(path: Path, max_step: int) -> list[dict]:
    """Keep the records up to ``max_step`` (those past it were written after the checkpoint a
    resumed run starts from) and no torn line; returns the kept records."""
    if not path.exists():
        return []
    keep = [r for r in _read_records(path) if isinstance(r, dict) and r.get("step", math.inf) <= max_step]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    os.replace(tmp, path)
    return keep


def provenance() -> dict:
    import subprocess

    import transformers

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10).stdout.strip()
        # outputs under results/ do not make the code dirty
        status = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!results"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parents[1], timeout=10).stdout
        dirty = bool(status.strip())
    except (OSError, subprocess.TimeoutExpired):
        commit, dirty = None, None
    return {"git_commit": commit, "git_dirty": dirty, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "argv": sys.argv, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sandbox": sandbox.backend()}


def _resume(trainer: Trainer) -> list[dict]:
    """Load the run's latest complete checkpoint (if any), drop the records written after it, and
    write the run's config and provenance; returns the validation records kept."""
    out, cfg = trainer.out, trainer.cfg
    out.mkdir(parents=True, exist_ok=True)
    ckpt = trainer.latest_checkpoint()
    if ckpt is not None:
        trainer.load(ckpt)
    kept_val: list[dict] = []
    if rank() == 0:
        _truncate_jsonl(out / "steps.jsonl", trainer.step)
        kept_val = _truncate_jsonl(out / "val.jsonl", trainer.step)
        (out / "config.yaml").write_text(__import__("yaml").safe_dump(cfg.to_dict(), sort_keys=False))
        (out / "provenance.json").write_text(json.dumps({**provenance(), "resumed_from_step": trainer.step, "world_size": world(),
                                                         "n_params": trainer.n_params}, indent=2))
    return kept_val


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; returns the run directory."""
    distributed.init("cuda" if torch.cuda.is_available() and cfg.run.device != "cpu" else "cpu")  # before CUDA starts
    if cfg.rollout.prompts_per_step % world() or cfg.optim.mini_batch_prompts % world():
        raise ConfigError(f"prompts_per_step and mini_batch_prompts must be multiples of the world size {world()}")
    trainer = Trainer(cfg)
    out = trainer.out
    kept_val = _resume(trainer)
    names = cfg.run.loggers + (["tensorboard"] if cfg.run.tensorboard else [])  # run.tensorboard: the old spelling
    loggers = RunLoggers(names, out, cfg.run.project, f"{cfg.method.name}-{cfg.data.benchmark}-seed{cfg.run.seed}",
                         cfg.to_dict(), enabled=rank() == 0)

    def log_val():
        t0 = time.perf_counter()
        v = trainer.validate()
        v["seconds"] = round(time.perf_counter() - t0, 3)
        loggers.record("val", v)
        return v

    # step-0 validation once, even when a run killed before its first checkpoint is restarted
    has_start = all_sum(torch.tensor(float(any(v.get("step") == 0 for v in kept_val)))).item() > 0
    if trainer.step == 0 and cfg.eval.at_start and cfg.eval.val_every > 0 and not has_start:
        log_val()
    from tqdm import tqdm

    bar = tqdm(total=cfg.run.max_steps, initial=trainer.step, desc=f"{cfg.method.name}:{cfg.data.benchmark}", unit="step",
               disable=not cfg.run.progress or rank() != 0, mininterval=1 if sys.stderr.isatty() else 30)
    last_cost = [0.0]  # what the previous step consumed, in the budget's unit

    def budget_spent() -> bool:
        """The budget is spent, or the next step (costing about what the last one did) would
        overrun it: a run ends inside its budget, so its last validation counts in that window."""
        if cfg.run.budget is None:
            return False
        used = trainer.consumed(cfg.run.budget_unit)
        return used >= cfg.run.budget or used + last_cost[0] > cfg.run.budget * (1 + 1e-9)

    while trainer.step < cfg.run.max_steps:
        if budget_spent():
            break
        before = trainer.consumed(cfg.run.budget_unit)
        rec = trainer.train_step()
        last_cost[0] = trainer.consumed(cfg.run.budget_unit) - before
        loggers.record("train", rec)
        bar.update(1)
        bar.set_postfix(reward=f"{rec['reward_mean']:.3f}", sdpo=f"{rec['frac_sdpo']:.2f}", s_per_step=f"{rec['seconds']['step']:.2f}", refresh=False)
        last = trainer.step >= cfg.run.max_steps or budget_spent()
        if cfg.eval.val_every > 0 and (trainer.step % cfg.eval.val_every == 0 or last):
            log_val()
        if cfg.run.save_every > 0 and (trainer.step % cfg.run.save_every == 0 or last):
            trainer.save()
    bar.close()
    # what evaluation reads, in the run's compute dtype
    checkpoint.export_hf(trainer.model, trainer.tokenizer, out / "final", getattr(torch, cfg.model.dtype))
    if rank() == 0:
        (out / "DONE").write_text(json.dumps({"steps": trainer.step, "train_seconds": trainer.train_seconds,
                                              "train_flops": trainer.train_flops, "train_tokens": trainer.train_tokens}))
    loggers.close()
    distributed.barrier()  # the last collective of the trainer's: vLLM's shutdown takes the process group with it
    getattr(trainer.engine, "shutdown", lambda: None)()
    return out


def _profile_to_train_config(path: str, overrides: list[str]) -> tuple[str, list[str]]:
    """A pipeline profile (config/*.yaml, with ``models`` and ``train``) given to --memory-plan
    stands for its training job on the profile's last (largest) model with a given path."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return path, overrides  # load_config reports it
    if not (isinstance(raw, dict) and "models" in raw and "train" in raw):
        return path, overrides
    paths = [m["path"] for m in raw["models"].values() if m.get("path")]
    extra = [f"model.path={paths[-1]}"] if paths else []
    return raw["train"]["config"], [*extra, *raw["train"].get("overrides", []), *overrides]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="srpo-train", description="Train a policy with GRPO, SDPO or SRPO (see srpo_ref/trainer.py).")
    ap.add_argument("--config", required=False, help="YAML config (sections: model, data, rollout, optim, method, eval, run)")
    ap.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. method.name=grpo run.seed=1")
    ap.add_argument("--memory-plan", action="store_true", help="print the per-GPU memory plan of this config and exit (srpo_ref/memory_plan.py)")
    ap.add_argument("--gpus", type=int, default=None, help="--memory-plan: GPUs (ranks) of the run (default: $WORLD_SIZE or 1)")
    ap.add_argument("--gpu-gib", type=float, default=80.0, help="--memory-plan: memory of one GPU in GiB (default 80)")
    ap.add_argument("--gpus-per-node", type=int, default=None,
                    help="--memory-plan: GPUs per node, the shard degree of run.sharding=hsdp (default: run.hsdp_shard_size, "
                         "$LOCAL_WORLD_SIZE, else 8)")
    a = ap.parse_args(argv)
    if a.memory_plan and a.config:
        a.config, a.overrides = _profile_to_train_config(a.config, a.overrides)
    try:
        cfg = load_config(a.config, a.overrides)
    except (ConfigError, tasks.DataNotFound, tasks.DataError) as e:
        print(f"srpo-train: error: {e}", file=sys.stderr)
        return 2
    if a.memory_plan:
        from srpo_ref import memory_plan

        print(memory_plan.render(memory_plan.plan(cfg, a.gpus or int(os.environ.get("WORLD_SIZE", 1)), a.gpu_gib,
                                                  gpus_per_node=a.gpus_per_node)))
        return 0
    try:
        train(cfg)
    except (ConfigError, tasks.DataNotFound, tasks.DataError) as e:
        print(f"srpo-train: error: {e}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
