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
5. **update**, for each mini-batch of prompts:
   a. samples routed to SDPO first: the **teacher forward runs only on them** (phase
      ``teacher_forward``) over "prompt with demonstration + the student's own response";
      the student forward and the loss with the raw entropy weights ``exp(-beta H)``, then
      backward. The sums of raw weights and token counts are added up over micro-batches and
      ranks; the accumulated gradients are then divided by their mean, which is exactly the
      step-wide normalisation of SPEC section 5 without storing any teacher logits;
   b. then the GRPO-routed samples, micro-batch by micro-batch;
   every micro-batch loss is divided by ``N``, the valid response tokens of the whole update
   (all micro-batches and ranks), so the result does not depend on micro-batch size or world
   size. Gradients are all-reduced (summed) across ranks, clipped, and AdamW steps.
   When the update is one micro-batch on every rank, a. and b. share it: the normaliser is
   summed over ranks before the loss instead (the same gradient).
   Each distinct prefix of a micro-batch (a question's prompt; a teacher prompt with its
   demonstration) runs once and its KV cache serves its rollouts (``optim.shared_prefix``).
6. **teacher_ema**: ``theta_T <- (1 - r) theta_T + r theta`` in fp32 when the step's gradients
   were finite (``ema``; ``frozen`` never updates, ``live`` uses the student itself).
7. Every ``val_every`` steps: avg@k on the test split. Every ``save_every`` steps: a checkpoint.

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
import copy
import functools
import json
import math
import os
import platform
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from srpo_ref import checkpoint, distributed, losses, sandbox, tasks
from srpo_ref.config import ConfigError, TrainConfig, load_config
from srpo_ref.flops import FlopModel
from srpo_ref.rollout import HFEngine, SamplingConfig, VLLMEngine, prefill
from srpo_ref.teacher import chat_prompt_ids, teacher_input_ids

PHASES = ("generate", "reward", "old_logprob", "teacher_forward", "update", "teacher_ema")


# ----------------------------------------------------------------------------- small utilities


rank, world, all_sum = distributed.rank, distributed.world, distributed.all_sum


# Salts of a step's random draws (step_seed): every draw has its own, and rank r's generation
# uses GENERATION_SALT + 1000 r, so no rank's sampling seed equals another draw's.
DATA_ORDER_SALT, GENERATION_SALT, DEMO_SALT, VALIDATION_SALT = 1, 2, 3, 99


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    return (seed * 1_000_003 + step * 7_919 + salt * 104_729) % (2**31 - 1)


class PhaseTimer:
    """Wall seconds per phase (CUDA-synchronised so asynchronous kernels are charged correctly)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = {p: 0.0 for p in PHASES}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds[phase] += time.perf_counter() - t0


@dataclass
class Batch:
    """Sequences of one forward. Unshared: ``ids [B, L]`` right-padded whole sequences, ``start``
    the index of each row's first response token. Shared prefix (``prefix_ids`` set): each
    distinct prefix once, without its last token, ``prefix_ids [U, W]`` right-padded, and
    ``prefix_index [B]`` its row for every sequence; ``ids [B, T]`` is then each row's last
    prefix token followed by its response minus the last token, so position ``t`` predicts
    response token ``t``; ``attn [B, W + T]`` covers the prefix slots and the suffix, and
    ``position`` gives the suffix's position ids. ``resp [B, T]`` and ``mask`` are the response
    tokens either way."""

    ids: torch.Tensor
    attn: torch.Tensor
    start: torch.Tensor | None
    resp: torch.Tensor
    mask: torch.Tensor
    position: torch.Tensor | None = None
    prefix_ids: torch.Tensor | None = None
    prefix_attn: torch.Tensor | None = None
    prefix_index: torch.Tensor | None = None
    n_computed: int = 0  # tokens the forward processes (each shared prefix once), counted on the host


def make_batch(prefixes: list[list[int]], responses: list[list[int]], pad_id: int, device,
               share_prefix: bool = False) -> Batch:
    """The forward's batch for rows ``prefix + response``: whole sequences, or with
    ``share_prefix`` each distinct prefix once (see ``Batch``)."""
    T = max(1, max(len(r) for r in responses))
    resp = torch.full((len(responses), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(responses), T)
    for i, r in enumerate(responses):
        resp[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    if share_prefix:
        return _shared_prefix_batch(prefixes, responses, resp, mask, pad_id, device)
    seqs = [p + r for p, r in zip(prefixes, responses)]
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
    start = torch.tensor([len(p) for p in prefixes])
    return Batch(ids.to(device), attn.to(device), start.to(device), resp.to(device), mask.to(device),
                 n_computed=sum(len(s) for s in seqs))


def _shared_prefix_batch(prefixes, responses, resp, mask, pad_id, device) -> Batch:
    distinct: dict[tuple, int] = {}
    index = torch.tensor([distinct.setdefault(tuple(p), len(distinct)) for p in prefixes])
    heads = [list(p[:-1]) for p in distinct]
    W = max(1, max(len(h) for h in heads))  # at least one slot, so the prefix forward always runs
    prefix_ids = torch.full((len(heads), W), pad_id, dtype=torch.long)
    prefix_attn = torch.zeros_like(prefix_ids)
    for u, h in enumerate(heads):
        prefix_ids[u, : len(h)] = torch.tensor(h, dtype=torch.long)
        prefix_attn[u, : len(h)] = 1
    B, T = resp.shape
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    suffix_attn = torch.zeros(B, T, dtype=torch.long)
    for i, (p, r) in enumerate(zip(prefixes, responses)):
        row = [p[-1]] + list(r[:-1])
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        suffix_attn[i, : len(row)] = 1
    attn = torch.cat([prefix_attn[index], suffix_attn], dim=1)
    position = torch.tensor([len(p) - 1 for p in prefixes])[:, None] + torch.arange(T)[None]
    n_computed = sum(len(h) for h in heads) + int(suffix_attn.sum())
    return Batch(ids.to(device), attn.to(device), None, resp.to(device), mask.to(device), position.to(device),
                 prefix_ids.to(device), prefix_attn.to(device), index.to(device), n_computed)


def _response_positions(batch: Batch, hidden: torch.Tensor) -> torch.Tensor:
    """``hidden [B, L, H]`` at the positions that predict each response token: ``[B, T, H]``
    (a shared-prefix batch's suffix already is exactly those positions)."""
    if batch.start is None:
        return hidden
    T = batch.resp.shape[1]
    pos = (batch.start[:, None] - 1 + torch.arange(T, device=hidden.device)[None]).clamp(min=0, max=hidden.shape[1] - 1)
    return hidden.gather(1, pos[..., None].expand(-1, -1, hidden.shape[-1]))


@contextlib.contextmanager
def _set_on(modules, **attrs):
    """Set attributes on each module for the duration of the block."""
    old = [{k: getattr(m, k) for k in attrs} for m in modules]
    for m in modules:
        for k, v in attrs.items():
            setattr(m, k, v)
    try:
        yield
    finally:
        for m, saved in zip(modules, old):
            for k, v in saved.items():
                setattr(m, k, v)


@functools.cache
def _prefix_caches():
    """The two KV caches of a shared-prefix forward, both safe under gradient checkpointing (a
    layer recomputed in the backward must see exactly what it saw in the forward):

    - ``StoreOnce`` for the prefix pass: each layer stores its keys and values on its first call;
      a recomputed layer gets its recomputed ones back and nothing is appended;
    - ``ReadOnly`` for the suffix pass: each layer's prefix keys and values (expanded to the rows)
      with the new tokens' appended, the cache itself never extended."""
    from transformers import DynamicCache

    class StoreOnce(DynamicCache):
        def update(self, key_states, value_states, layer_idx, *args, **kwargs):
            layer = self.layers[layer_idx]
            if not layer.is_initialized:
                layer.lazy_initialization(key_states, value_states)
                layer.keys, layer.values = key_states, value_states
            return key_states, value_states

    class ReadOnly(DynamicCache):
        def update(self, key_states, value_states, layer_idx, *args, **kwargs):
            layer = self.layers[layer_idx]
            return torch.cat([layer.keys, key_states], dim=-2), torch.cat([layer.values, value_states], dim=-2)

    return StoreOnce, ReadOnly


def _forward(model, batch: Batch, autocast_dtype, on_final_norm, logits_to_keep: int):
    """The model's forward on ``batch`` with ``on_final_norm`` hooked on the final norm of the
    pass over the response positions. A shared-prefix batch runs two passes through the whole
    model (so a sharded model's collectives stay the same on every rank): the distinct
    prefixes once into a KV cache, which is then expanded to the rows and attended by the
    suffixes; gradients flow through the cache into the prefix pass. Under gradient
    checkpointing both passes are checkpointed (``_prefix_caches``)."""
    ctx = torch.autocast(batch.ids.device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    kwargs: dict = {"use_cache": False}
    anchor = None
    layers = getattr(model, model.base_model_prefix).layers
    # a checkpointed layer keeps the cache (HF drops it otherwise): see _prefix_caches
    keep_cache = (lambda: _set_on(layers, _can_checkpoint_with_cache=True)) if batch.prefix_ids is not None \
        else contextlib.nullcontext
    with ctx:
        if batch.prefix_ids is not None:
            StoreOnce, ReadOnly = _prefix_caches()
            cache = StoreOnce(config=model.config)
            with keep_cache():
                prefix_logits = prefill(model, batch.prefix_ids, batch.prefix_attn, cache)
            expanded = ReadOnly(config=model.config)
            expanded.layers = [copy.copy(layer) for layer in cache.layers]  # the prefix pass's own stay as they are
            expanded.batch_select_indices(batch.prefix_index)
            kwargs = {"past_key_values": expanded, "use_cache": True, "position_ids": batch.position}
            if torch.is_grad_enabled() and distributed.is_sharded(model):
                # A zero that depends on the prefix pass's output: the backward then reaches every
                # layer of that pass through its output, where FSDP's pre-backward hook gathers the
                # layer's weights; through the cache alone it would meet them resharded.
                anchor = torch.nan_to_num(prefix_logits, nan=0.0, posinf=0.0, neginf=0.0).sum() * 0.0
        handle = getattr(model, model.base_model_prefix).norm.register_forward_hook(on_final_norm)
        try:
            with keep_cache():
                logits = model(input_ids=batch.ids, attention_mask=batch.attn, logits_to_keep=logits_to_keep, **kwargs).logits
        finally:
            handle.remove()
    return logits if anchor is None else logits + anchor


def response_logits(model, batch: Batch, autocast_dtype) -> torch.Tensor:
    """Logits that predict each response token, ``[B, T, V]`` in fp32 (position ``start + t - 1``).
    Only those positions go through the output layer: a hook on the final norm replaces its
    output ``[B, L, H]`` by the response positions ``[B, T, H]``, so no logits are computed for
    prompts, prompt tails of a right-padded batch or padding (inside the model's own forward,
    where a sharded output layer is gathered)."""
    return _forward(model, batch, autocast_dtype, lambda _m, _i, hidden: _response_positions(batch, hidden), 0).float()


@torch.no_grad()
def teacher_statistics(model, batch: Batch, autocast_dtype, topk_ids: torch.Tensor, temperature: float,
                       chunk: int | None) -> losses.TeacherStats:
    """The teacher's ``losses.TeacherStats`` (top-K log-probs at ``topk_ids``, tail, entropy) for
    each response token, from the final hidden states a chunk of positions at a time: no
    ``[B, T, V]`` tensor. They are computed inside the model's own forward (a hook on the final
    norm, with the output layer's logits cut to one position), where a sharded model's output
    layer is gathered."""
    found = {}

    def hook(_module, _inputs, hidden):
        h = _response_positions(batch, hidden)
        found["stats"] = losses.teacher_stats(h, model.get_output_embeddings(), topk_ids, temperature, chunk)

    _forward(model, batch, autocast_dtype, hook, 1)
    return found["stats"]


# ----------------------------------------------------------------------------- the trainer


class Trainer:
    def __init__(self, cfg: TrainConfig):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        self.out = Path(cfg.run.out_dir)
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        dev = cfg.run.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if dev == "cuda" else dev)
        compute_dtype = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.model.dtype]
        self.sharded = cfg.run.sharding == "fsdp"
        # Unsharded: fp32 weights with forwards under autocast. Sharded: FSDP's mixed-precision
        # policy casts the gathered weights instead (autocast would cast them a second time).
        self.autocast = None if self.sharded else compute_dtype

        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # fp32 master weights; forwards run under autocast when model.dtype asks for it.
        self.model = AutoModelForCausalLM.from_pretrained(cfg.model.path, dtype=torch.float32).to(self.device)
        if cfg.model.gradient_checkpointing:
            # non-reentrant: gradients also reach tensors a layer reads from outside its arguments
            # (a shared prefix's cache)
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model.train()
        self.teacher = None
        if cfg.method.teacher in ("ema", "frozen") and cfg.method.name not in ("grpo",):
            self.teacher = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.flop_model = FlopModel.from_config(self.model.config)  # the budget's FLOP unit (srpo_ref/flops.py)
        if self.sharded:  # the teacher is sharded exactly like the student, so EMA runs shard by shard
            distributed.shard(self.model, compute_dtype, self.device)
            if self.teacher is not None:
                distributed.shard(self.teacher, compute_dtype, self.device, inference_only=True)

        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        # Linear warm-up over training steps from lr 0 at step 0, then constant: verl's
        # get_constant_schedule_with_warmup, stepped once per training step (not per update).
        warm = cfg.optim.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, s / warm) if warm > 0 else 1.0)
        self.loss_cfg = losses.LossConfig(
            eps_low=cfg.method.eps_low, eps_high=cfg.method.eps_high, dual_clip=cfg.method.dual_clip,
            is_clip=cfg.method.is_clip, topk=cfg.method.topk, alpha=cfg.method.alpha, add_tail=cfg.method.add_tail,
            temperature=cfg.rollout.temperature, beta=cfg.beta, loss_agg=cfg.method.loss_agg,
        )

        if cfg.beta > 0 and cfg.rollout.prompts_per_step // cfg.optim.mini_batch_prompts > 1 and rank() == 0:
            # SPEC section 5 normalises over the step; a step-wide mean over several updates would
            # need every update's teacher entropies before the first (a second teacher pass)
            print("srpo-train: note: the entropy-weight normaliser is the mean over each optimizer update's distilled "
                  "tokens (SPEC: the step's; the same when a step is one update, as in every paper configuration)",
                  file=sys.stderr)
        self.train_set = self._prepare(tasks.load_task(cfg.data.benchmark, "train", cfg.data.data_dir, cfg.data.tooluse_system))
        test = tasks.load_task(cfg.data.benchmark, "test", cfg.data.data_dir, cfg.data.tooluse_system)
        self.test_set = self._prepare(test[: cfg.eval.limit] if cfg.eval.limit else test)
        if cfg.rollout.engine == "vllm":
            need = max(len(ids) for _, ids in self.train_set + self.test_set) + max(cfg.rollout.max_response_tokens, cfg.eval.max_new_tokens)
            limit = getattr(self.model.config, "max_position_embeddings", None)
            if limit is not None and need > limit:
                raise ConfigError(f"the longest prompt plus the response budget ({need} tokens) exceeds the model's context of "
                                  f"{limit}; lower data.max_prompt_tokens or the response budgets")
            self.engine = VLLMEngine(cfg.model.path, self.tokenizer, seed=cfg.run.seed,
                                     gpu_memory_utilization=cfg.rollout.vllm_gpu_memory_utilization,
                                     max_model_len=need, sleep_mode=cfg.rollout.vllm_sleep, return_logprobs=True)
        else:
            # a sharded model's forward is a collective: ranks keep decoding until all are done
            self.engine = HFEngine(self.model, self.tokenizer, cfg.rollout.generation_batch_size,
                                   synced=self.sharded and world() > 1, autocast_dtype=self.autocast)
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
        cfg, step = self.cfg, self.step
        timer = PhaseTimer(self.device)
        tokens = {p: 0 for p in PHASES}  # the method's tokens: every sequence whole (the FLOPs' basis)
        computed = {p: 0 for p in PHASES}  # tokens through the model here (shared prefixes counted once)
        flops = {p: 0.0 for p in PHASES}
        t_step = time.perf_counter()
        torch.manual_seed(step_seed(cfg.run.seed, step))
        G = cfg.rollout.rollouts_per_prompt

        # 1. generate
        prompts, global_prompt = self.prompts_for_step(step)
        sampling = SamplingConfig(cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.max_response_tokens,
                                  step_seed(cfg.run.seed, step, salt=GENERATION_SALT + 1000 * rank()))
        with timer("generate"):
            groups = self.engine.generate([ids for _, ids in prompts], G, sampling)
        samples = [(pi, s) for pi, group in enumerate(groups) for s in group]
        prompt_tok = sum(len(prompts[pi][1]) for pi, _ in samples)
        gen_tok = sum(len(s.response_ids) for _, s in samples)
        lengths = [(len(prompts[pi][1]), len(s.response_ids)) for pi, s in samples]  # (prompt, response) per rollout
        tokens["generate"] = computed["generate"] = gen_tok
        flops["generate"] = self.flop_model.generate(lengths)

        # 2. reward
        with timer("reward"):
            rewards = torch.tensor([prompts[pi][0].score(s.text, cfg.data.grader) for pi, s in samples])
        group_ids = torch.tensor([pi for pi, _ in samples])

        # 3. route: on the whole step's batch (gathered from every rank, routed the same way
        # everywhere), so demonstration draws do not depend on the number of ranks.
        n_local = len(samples)
        sample_key = torch.tensor([global_prompt[pi] * G + j for pi, group in enumerate(groups) for j in range(len(group))])
        all_keys, all_rewards = distributed.all_gather_cat(sample_key), distributed.all_gather_cat(rewards)
        order = torch.argsort(all_keys)  # the step's samples in global prompt order
        routing = losses.route_samples(all_rewards[order], all_keys[order] // G, cfg.method.name, cfg.method.success_threshold,
                                       generator=torch.Generator().manual_seed(step_seed(cfg.run.seed, step, salt=DEMO_SALT)))
        position = torch.empty_like(order)
        position[order] = torch.arange(len(order))
        mine = position[rank() * n_local : (rank() + 1) * n_local]  # my samples' places in that order
        demo = routing.demo_index[mine]
        routing = routing.select(mine)
        # demonstrations are siblings, so on this rank: map their global place back to a local row
        routing.demo_index = torch.where(demo >= 0, order[demo.clamp(min=0)] - rank() * n_local, demo)
        advantages = losses.group_advantages(rewards, group_ids, cfg.method.std_normalize)
        responses = [s.response_ids for _, s in samples]
        student_prefix = [prompts[pi][1] for pi, _ in samples]
        logp_rollout = None
        if all(s.logprobs is not None for _, s in samples):
            T = max(1, max(len(r) for r in responses))
            logp_rollout = torch.zeros(n_local, T)
            for i, (_, s) in enumerate(samples):
                logp_rollout[i, : len(s.logprobs)] = torch.tensor(s.logprobs)

        # teacher prompts only for samples the method distills
        teacher_prefix: dict[int, list[int]] = {}
        with timer("teacher_forward"):  # building the teacher's prompts is part of its cost
            for i in torch.nonzero(routing.to_sdpo).flatten().tolist():
                pi, s = samples[i]
                demo_text = samples[routing.demo_index[i]][1].text
                ids, plen = teacher_input_ids(self.tokenizer, prompts[pi][0].messages, demo_text, s.response_ids, cfg.method.max_demo_tokens)
                teacher_prefix[i] = ids[:plen]

        # 4-5. update(s)
        n_updates = cfg.rollout.prompts_per_step // cfg.optim.mini_batch_prompts
        per_rank_mb = cfg.optim.mini_batch_prompts // world()
        sample_rows = torch.arange(len(samples))
        logp_old_all = None
        if n_updates > 1 or cfg.optim.old_logprob == "always":
            with timer("old_logprob"):
                logp_old_all, computed["old_logprob"] = self._logprobs(sample_rows, student_prefix, responses)
            tokens["old_logprob"] = gen_tok + prompt_tok
            flops["old_logprob"] = self.flop_model.forward_pass(lengths)

        m_sum: dict[str, float] = {}
        grad_norms = []
        finite = True
        for u in range(n_updates):
            rows = sample_rows[(group_ids >= u * per_rank_mb) & (group_ids < (u + 1) * per_rank_mb)]
            stats = self._update(rows, routing, advantages, student_prefix, responses, teacher_prefix,
                                 logp_old_all, logp_rollout, timer, tokens, computed, flops)
            _accumulate(m_sum, stats["metrics"])
            grad_norms.append(stats["grad_norm"])
            finite = finite and stats["finite"]

        # 6. teacher EMA
        with timer("teacher_ema"):
            if self.teacher is not None and cfg.method.teacher == "ema" and finite:
                distributed.ema_(self.teacher, self.model, cfg.method.ema_rate)
        if cfg.rollout.engine == "vllm":
            self.engine.sync_weights(self.model)  # wakes a sleeping engine, then loads layer by layer

        step_lr = self.optimizer.param_groups[0]["lr"]  # the rate this step's updates used
        self.scheduler.step()  # once per training step
        step_seconds = time.perf_counter() - t_step
        self.train_seconds += step_seconds
        # FLOPs and tokens summed over ranks: a budget in these units does not depend on world size
        step_cost = all_sum(torch.tensor([sum(flops.values()), float(sum(tokens.values()))], dtype=torch.float64)).tolist()
        self.train_flops += step_cost[0]
        self.train_tokens += int(step_cost[1])
        resp_len = torch.tensor([len(r) for r in responses], dtype=torch.float)
        n = len(samples)
        sums = all_sum(torch.tensor([
            rewards.sum(), (rewards >= cfg.method.success_threshold).float().sum(), float(n),
            routing.to_sdpo.float().sum(), (routing.grpo_coef > 0).float().sum(), routing.has_teacher.float().sum(),
            resp_len.sum(), float(sum(s.finish_reason == "length" for _, s in samples)),
        ], dtype=torch.float64)).tolist()
        keys = ("grpo_loss_sum", "sdpo_loss_sum", "teacher_entropy_sum", "weight_sum", "weight_sq_sum", "sdpo_tokens_count", "tokens_count")
        m_sum.update(zip(keys, all_sum(torch.tensor([m_sum.get(k, 0.0) for k in keys], dtype=torch.float64)).tolist()))
        for k, op, none in (("weight_min", "min", math.inf), ("weight_max", "max", -math.inf)):
            # every rank joins, also one that distilled nothing this step
            m_sum[k] = distributed.all_reduce_value(m_sum.get(k, none), op)
        tok_count = max(m_sum["tokens_count"], 1.0)
        sdpo_tok = m_sum["sdpo_tokens_count"]
        rec = {
            "step": step + 1,
            "wall_seconds": round(self.train_seconds, 4),
            "cum_flops": self.train_flops,
            "cum_tokens": self.train_tokens,
            "reward_mean": sums[0] / sums[2],
            "accuracy": sums[1] / sums[2],
            "frac_sdpo": sums[3] / sums[2],
            "frac_grpo": sums[4] / sums[2],
            "frac_teacher_available": sums[5] / sums[2],
            "response_length_mean": sums[6] / sums[2],
            "truncation_rate": sums[7] / sums[2],
            "teacher_entropy_mean": m_sum.get("teacher_entropy_sum", 0.0) / sdpo_tok if sdpo_tok else None,
            "weight_mean": m_sum.get("weight_sum", 0.0) / sdpo_tok if sdpo_tok else None,
            "weight_std": math.sqrt(max(m_sum["weight_sq_sum"] / sdpo_tok - (m_sum["weight_sum"] / sdpo_tok) ** 2, 0)) if sdpo_tok else None,
            "weight_min": m_sum.get("weight_min") if sdpo_tok else None,
            "weight_max": m_sum.get("weight_max") if sdpo_tok else None,
            "loss": (m_sum.get("grpo_loss_sum", 0.0) + m_sum.get("sdpo_loss_sum", 0.0)) / tok_count,
            "loss_grpo": m_sum.get("grpo_loss_sum", 0.0) / tok_count,
            "loss_sdpo": m_sum.get("sdpo_loss_sum", 0.0) / tok_count,
            "grad_norm": float(sum(grad_norms) / len(grad_norms)),
            "grads_finite": finite,
            "lr": step_lr,
            "updates": n_updates,
            "seconds": {**{p: round(v, 5) for p, v in timer.seconds.items()}, "step": round(step_seconds, 5)},
            "tokens": tokens,
            "tokens_computed": computed,
            "flops": flops,
            "teacher_forward_samples": len(teacher_prefix),
            # the trainer's own tensors (vLLM's memory is its own allocator's)
            "peak_memory_gib": torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else None,
        }
        self.step += 1
        return rec

    @torch.no_grad()
    def _logprobs(self, rows, prefixes, responses) -> tuple[torch.Tensor, int]:
        """Current-policy log-probs of the response tokens, ``[n_samples, T_max]`` (CPU), and the
        tokens computed."""
        T = max(1, max(len(r) for r in responses))
        out = torch.zeros(len(responses), T)
        n_computed = 0
        mb = self.cfg.optim.micro_batch_size
        for i in range(self._n_micro_batches(len(rows))):
            idx = rows[i * mb : (i + 1) * mb].tolist()
            if not idx:
                self._dummy_pass(with_teacher=False, backward=False)
                continue
            b = make_batch([prefixes[j] for j in idx], [responses[j] for j in idx], self.tokenizer.pad_token_id, self.device,
                           self.cfg.optim.shared_prefix)
            lp = losses.token_logprobs(response_logits(self.model, b, self.autocast), b.resp, self.cfg.rollout.temperature)
            out[idx, : lp.shape[1]] = (lp * b.mask).cpu()
            n_computed += b.n_computed
        return out, n_computed

    def _update(self, rows, routing, advantages, student_prefix, responses, teacher_prefix, logp_old_all, logp_rollout,
                timer, tokens, computed, flops) -> dict:
        """One optimizer update over ``rows`` (this rank's samples of the mini-batch).

        The distilled samples' weights are normalised over the whole update (SPEC section 5 says
        the step: the same for one update per step, SRPO's paper layout; see the note in __init__).
        When the update is one micro-batch on every rank, both branches share that micro-batch:
        the teacher's weights are summed over ranks before the loss, which then uses the
        step-wide normaliser directly. Otherwise the distilled micro-batches run first with raw
        weights and their accumulated gradients are divided by the normaliser afterwards; the
        policy-gradient micro-batches follow. Both orders give the same gradient."""
        cfg, mb = self.cfg, self.cfg.optim.micro_batch_size
        n_tokens = all_sum(torch.tensor(float(sum(len(responses[i]) for i in rows.tolist())), dtype=torch.float64)).item()
        n_sequences = all_sum(torch.tensor(float(len(rows)), dtype=torch.float64)).item()
        # micro-batches of similar lengths (longest first): less padding; the update's sum is the same
        length = torch.tensor([len(student_prefix[i]) + len(responses[i]) for i in range(len(responses))])
        rows = rows[torch.argsort(length[rows], descending=True, stable=True)]
        distilled = routing.sdpo_coef[rows] > 0
        sdpo_rows, grpo_rows = rows[distilled], rows[~distilled & (routing.grpo_coef[rows] > 0)]
        metrics: dict[str, float] = {}
        self.optimizer.zero_grad(set_to_none=True)

        def micro_batch(idx: list[int], normalise_here: bool) -> None:
            """One forward/backward over the samples ``idx`` (both branches may be present).
            ``normalise_here``: the update's only micro-batch, so the weight normaliser is summed
            over ranks here; an empty ``idx`` then joins the other ranks' collectives."""
            if not idx:
                with timer("update"):
                    logits = self._dummy_pass(with_teacher=False, backward=False, keep_graph=True)
                if self.sharded and distributed.max_over_ranks(0) > 0:
                    with timer("teacher_forward"), torch.no_grad():
                        self._dummy_pass(with_teacher=True, backward=False, student=False)
                self._mean_weight(0.0, 0.0)
                with timer("update"):
                    (logits.sum() * 0.0).backward()
                return
            resp = [responses[j] for j in idx]
            with timer("update"):
                b = make_batch([student_prefix[j] for j in idx], resp, self.tokenizer.pad_token_id, self.device, cfg.optim.shared_prefix)
                logits = response_logits(self.model, b, self.autocast)
            local = [k for k, j in enumerate(idx) if routing.sdpo_coef[j] > 0]
            if normalise_here and self.sharded and distributed.max_over_ranks(int(bool(local))) > 0 and not local:
                with timer("teacher_forward"), torch.no_grad():  # another rank's teacher forward is a collective
                    self._dummy_pass(with_teacher=True, backward=False, student=False)
            teacher_logits = teacher_stats = topk_ids = None
            if local:
                with timer("teacher_forward"), torch.no_grad():
                    tb = make_batch([teacher_prefix[idx[k]] for k in local], [resp[k] for k in local],
                                    self.tokenizer.pad_token_id, self.device, cfg.optim.shared_prefix)
                    teacher_logits, teacher_stats, topk_ids = self._teacher_forward(tb, logits[local])
                    if len(local) < len(idx) or tb.resp.shape[1] != b.resp.shape[1]:  # the micro-batch's rows and length
                        teacher_logits, teacher_stats, topk_ids = _to_rows(local, logits.shape[:2], teacher_logits,
                                                                           teacher_stats, topk_ids)
                n_tt = sum(len(teacher_prefix[idx[k]]) + len(resp[k]) for k in local)
                computed["teacher_forward"] += tb.n_computed
                tokens["teacher_forward"] += n_tt
                flops["teacher_forward"] += self.flop_model.forward_pass([(len(teacher_prefix[idx[k]]), len(resp[k])) for k in local])
            normaliser = 1.0 if local else None  # raw weights; divided by the step's mean later
            if normalise_here:
                raw_sum, count = 0.0, 0.0
                if local:  # both are the micro-batch's rows; only the distilled ones count
                    entropy = (teacher_stats.entropy if teacher_stats is not None
                               else losses.teacher_entropy(teacher_logits, cfg.rollout.temperature))
                    distilled_mask = torch.zeros_like(b.mask)
                    distilled_mask[local] = b.mask[local]
                    raw_sum, count = losses.entropy_weight_sum(entropy, distilled_mask, self.loss_cfg.beta)
                normaliser = self._mean_weight(raw_sum, count)
            with timer("update"):
                logp = losses.token_logprobs(logits, b.resp, cfg.rollout.temperature)
                T = logp.shape[1]
                logp_old = logp.detach() if logp_old_all is None else logp_old_all[idx, :T].to(self.device)
                lp_roll = None if logp_rollout is None else logp_rollout[idx, :T].to(self.device)
                sub = routing.select(torch.tensor(idx))
                loss, m = losses.srpo_objective(
                    logp=logp, logp_old=logp_old, advantages=advantages[idx].to(self.device), mask=b.mask,
                    routing=_to(sub, self.device), num_tokens=n_tokens, cfg=self.loss_cfg,
                    student_logits=logits if local else None, teacher_logits=teacher_logits,
                    weight_normalizer=normaliser, logp_rollout=lp_roll, num_sequences=n_sequences,
                    teacher=teacher_stats, topk_ids=topk_ids,
                )
                # gradients are averaged over ranks (below, or by FSDP): scaled here to a sum
                (loss * world()).backward()
            n_st = sum(len(student_prefix[j]) + len(resp[k]) for k, j in enumerate(idx))
            computed["update"] += b.n_computed
            tokens["update"] += n_st
            flops["update"] += self.flop_model.update([(len(student_prefix[j]), len(resp[k])) for k, j in enumerate(idx)],
                                                      cfg.model.gradient_checkpointing)
            _accumulate(metrics, m)

        def run(idx_rows: torch.Tensor, with_teacher: bool) -> None:
            for i in range(self._n_micro_batches(len(idx_rows))):
                idx = idx_rows[i * mb : (i + 1) * mb].tolist()
                if idx:
                    micro_batch(idx, normalise_here=False)
                else:  # this rank has fewer micro-batches than another (sharded layout)
                    with timer("update"):
                        self._dummy_pass(with_teacher, backward=True)

        both = torch.cat([sdpo_rows, grpo_rows])
        both = both[torch.argsort(length[both], descending=True, stable=True)]
        if distributed.max_over_ranks(-(-len(both) // mb)) <= 1:  # the same choice on every rank
            micro_batch(both.tolist(), normalise_here=True)
        else:
            # a. distilled samples first; their gradients then get the step-wide weight normaliser
            run(sdpo_rows, with_teacher=True)
            mean_w = self._mean_weight(metrics.get("weight_sum", 0.0), metrics.get("sdpo_tokens_count", 0.0))
            if mean_w != 1.0:
                for p in self.model.parameters():
                    if p.grad is not None:
                        p.grad.div_(mean_w)
                for k, power in (("sdpo_loss_sum", 1), ("weight_sum", 1), ("weight_sq_sum", 2), ("weight_min", 1), ("weight_max", 1)):
                    if k in metrics:  # absent on a rank that distilled nothing
                        metrics[k] /= mean_w**power
            # b. then the policy-gradient samples
            run(grpo_rows, with_teacher=False)

        with timer("update"):
            distributed.average_gradients(self.model)
            grad_norm = distributed.clip_grad_norm(self.model, cfg.optim.grad_clip)
            finite = math.isfinite(grad_norm)
            if finite:
                self.optimizer.step()
        metrics["tokens_count"] = n_tokens / world()  # each rank reports its share; summed later
        return {"metrics": metrics, "grad_norm": grad_norm, "finite": finite}

    @staticmethod
    def _mean_weight(raw_sum, count) -> float:
        """The step-wide weight normaliser: this rank's sum of raw entropy weights and count of
        distilled tokens, summed over ranks, divided (1.0 when nothing was distilled). A
        collective: every rank calls it once per update."""
        raw = all_sum(torch.tensor([float(raw_sum), float(count)], dtype=torch.float64))
        return (raw[0] / raw[1]).item() if raw[1] > 0 else 1.0

    def _teacher_forward(self, tb: Batch, student_logits: torch.Tensor):
        """The teacher's forward on ``tb``: ``(teacher_logits, teacher_stats, topk_ids)``. With
        ``method.topk`` (memory-lean) only its top-K log-probs at the student's top-K ids, the tail
        and the entropy, a chunk of positions at a time; otherwise its full logits."""
        cfg = self.cfg
        teacher_model = self.teacher if self.teacher is not None else self.model
        if cfg.method.topk is None:
            return response_logits(teacher_model, tb, self.autocast), None, None
        # The teacher batch is as long as its longest (distilled) response, which can be shorter
        # than the student's micro-batch: the ids are the student's top-K at the teacher's positions.
        student_logits = student_logits[:, : tb.resp.shape[1]]
        topk_ids = student_logits.detach().topk(min(cfg.method.topk, student_logits.shape[-1]), dim=-1).indices
        stats = teacher_statistics(teacher_model, tb, self.autocast, topk_ids, cfg.rollout.temperature, cfg.method.logits_chunk)
        return None, stats, topk_ids

    def _n_micro_batches(self, n_rows: int) -> int:
        """Micro-batches this rank runs for ``n_rows`` samples. Sharded, a forward is a collective,
        so every rank runs as many as the busiest one (the extra ones are ``_dummy_pass``)."""
        n = -(-n_rows // self.cfg.optim.micro_batch_size)
        return distributed.max_over_ranks(n) if self.sharded else n

    def _dummy_pass(self, with_teacher: bool, backward: bool, student: bool = True, keep_graph: bool = False):
        """A one-token forward (and zero-loss backward) that joins the other ranks' collectives:
        the student's (unless ``student`` is false), then the teacher's (``with_teacher``).
        ``keep_graph`` returns the student's logits for the caller's own backward instead."""
        pad = self.tokenizer.pad_token_id
        b = make_batch([[pad, pad]], [[pad]], pad, self.device, self.cfg.optim.shared_prefix)
        logits = None
        if student:
            with contextlib.nullcontext() if backward or keep_graph else torch.no_grad():
                logits = response_logits(self.model, b, self.autocast)
        if with_teacher:
            with torch.no_grad():
                tb = make_batch([[pad, pad]], [[pad]], pad, self.device, self.cfg.optim.shared_prefix)
                self._teacher_forward(tb, logits if logits is not None else torch.zeros(1, 1, self.model.config.vocab_size,
                                                                                        device=self.device))
        if backward:
            (logits.sum() * 0.0).backward()
        return logits

    # ------------------------------------------------------------------ validation

    def validate(self) -> dict:
        """avg@k on the test split (this rank's share of questions, summed over ranks)."""
        cfg = self.cfg
        local = self.test_set[rank() :: world()]
        n_mine = len(local)
        if self.sharded:  # generation is a collective: every rank decodes as many questions (extras unscored)
            local = local + self.test_set[: distributed.max_over_ranks(n_mine) - n_mine]
        sampling = SamplingConfig(cfg.eval.temperature, cfg.eval.top_p, cfg.eval.max_new_tokens, step_seed(cfg.run.seed, self.step, salt=VALIDATION_SALT))
        groups = self.engine.generate([ids for _, ids in local], cfg.eval.k, sampling)[:n_mine]
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


def _accumulate(into: dict, metrics: dict) -> None:
    """Add micro-batch metric sums into ``into`` (min and max for the weight extremes)."""
    for k, v in metrics.items():
        if k == "weight_min":
            into[k] = min(into.get(k, math.inf), v)
        elif k == "weight_max":
            into[k] = max(into.get(k, -math.inf), v)
        else:
            into[k] = into.get(k, 0.0) + v


def _to_rows(local: list[int], shape: tuple, teacher_logits, teacher_stats, topk_ids):
    """The teacher's outputs for the micro-batch rows ``local``, placed in zero tensors of the
    micro-batch's ``shape = (B, T)``."""
    def place(x):
        if x is None:
            return None
        out = x.new_zeros(*shape, *x.shape[2:])
        out[local, : x.shape[1]] = x
        return out

    stats = None if teacher_stats is None else losses.TeacherStats(place(teacher_stats.logp), place(teacher_stats.entropy))
    return place(teacher_logits), stats, place(topk_ids)


def _to(r: losses.Routing, device) -> losses.Routing:
    return losses.Routing(**{k: getattr(r, k).to(device) for k in r.__dataclass_fields__})


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


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; returns the run directory."""
    distributed.init("cuda" if torch.cuda.is_available() and cfg.run.device != "cpu" else "cpu")
    if cfg.rollout.prompts_per_step % world() or cfg.optim.mini_batch_prompts % world():
        raise ConfigError(f"prompts_per_step and mini_batch_prompts must be multiples of the world size {world()}")
    trainer = Trainer(cfg)
    out = trainer.out
    out.mkdir(parents=True, exist_ok=True)
    steps_path, val_path = out / "steps.jsonl", out / "val.jsonl"
    ckpt = trainer.latest_checkpoint()
    if ckpt is not None:
        trainer.load(ckpt)
    kept_val: list[dict] = []
    if rank() == 0:
        _truncate_jsonl(steps_path, trainer.step)
        kept_val = _truncate_jsonl(val_path, trainer.step)
        (out / "config.yaml").write_text(__import__("yaml").safe_dump(cfg.to_dict(), sort_keys=False))
        (out / "provenance.json").write_text(json.dumps({**provenance(), "resumed_from_step": trainer.step, "world_size": world(),
                                                         "n_params": trainer.n_params}, indent=2))
    writer = None
    if cfg.run.tensorboard and rank() == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(out / "tensorboard")

    def log_val():
        t0 = time.perf_counter()
        v = trainer.validate()
        v["seconds"] = round(time.perf_counter() - t0, 3)
        if rank() == 0:
            with val_path.open("a") as f:
                f.write(json.dumps(v) + "\n")
            if writer:
                writer.add_scalar("val/avg_at_k", v["avg_at_k"], v["step"])
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
        if rank() == 0:
            with steps_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            if writer:
                for k in ("reward_mean", "accuracy", "frac_sdpo", "loss", "grad_norm"):
                    writer.add_scalar(f"train/{k}", rec[k], rec["step"])
        bar.update(1)
        bar.set_postfix(reward=f"{rec['reward_mean']:.3f}", sdpo=f"{rec['frac_sdpo']:.2f}", s_per_step=f"{rec['seconds']['step']:.2f}", refresh=False)
        last = trainer.step >= cfg.run.max_steps or budget_spent()
        if cfg.eval.val_every > 0 and (trainer.step % cfg.eval.val_every == 0 or last):
            log_val()
        if cfg.run.save_every > 0 and (trainer.step % cfg.run.save_every == 0 or last):
            trainer.save()
    bar.close()
    checkpoint.export_hf(trainer.model, trainer.tokenizer, out / "final")  # what evaluation reads
    if rank() == 0:
        (out / "DONE").write_text(json.dumps({"steps": trainer.step, "train_seconds": trainer.train_seconds,
                                              "train_flops": trainer.train_flops, "train_tokens": trainer.train_tokens}))
    if writer:
        writer.close()
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

        print(memory_plan.render(memory_plan.plan(cfg, a.gpus or int(os.environ.get("WORLD_SIZE", 1)), a.gpu_gib)))
        return 0
    try:
        train(cfg)
    except (ConfigError, tasks.DataNotFound, tasks.DataError) as e:
        print(f"srpo-train: error: {e}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
