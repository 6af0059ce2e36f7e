"""The reference on-policy step for GRPO, SDPO and SRPO (the run loop and CLI, ``srpo-train``, are
``srpo_ref.run``; the parts are built by ``srpo_ref.build``).

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
8. **record**: one line of ``steps.jsonl`` (``srpo_ref.record.step_record``).

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

import math
import random
import time
from pathlib import Path

import torch

from srpo_ref import build, checkpoint, distributed, loading, losses
from srpo_ref.config import TrainConfig
from srpo_ref.flops import FlopModel
from srpo_ref.record import PHASES, Cost, PhaseTimer, check_rollouts, step_record
from srpo_ref.rollout import SamplingConfig
from srpo_ref.teacher import teacher_input_ids
from srpo_ref.update import Rollouts, UpdateExecutor

rank, world, all_sum = distributed.rank, distributed.world, distributed.all_sum


# Salts of a step's random draws (step_seed): every draw has its own, and an engine's sampling
# adds 1000 r (r: its rank, or its tensor-parallel group), so no two engines share a seed.
DATA_ORDER_SALT, GENERATION_SALT, DEMO_SALT, RANDOM_REWARD_SALT, VALIDATION_SALT = 1, 2, 3, 4, 99


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    return (seed * 1_000_003 + step * 7_919 + salt * 104_729) % (2**31 - 1)


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.out = Path(cfg.run.out_dir)
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        dev = cfg.run.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = distributed.init(dev)  # cuda:$LOCAL_RANK, made current before anything touches CUDA
        compute_dtype = build.COMPUTE_DTYPES[cfg.model.dtype]
        self.sharded = cfg.run.sharding in ("fsdp", "hsdp")
        # Unsharded: fp32 weights with forwards under autocast. Sharded: FSDP's mixed-precision
        # policy casts the gathered weights instead (autocast would cast them a second time).
        self.autocast = None if self.sharded else compute_dtype
        self.tokenizer = build.tokenizer(cfg)
        # fp32 master weights (sharded ones built on the meta device and filled from rank 0's
        # reads: srpo_ref/loading.py); the teacher is an EMA/frozen copy, sharded the same way
        with_teacher = cfg.method.teacher in ("ema", "frozen", "mix") and cfg.method.name not in ("grpo",)
        self.model, self.teacher = loading.load_policy(cfg, self.device, compute_dtype, with_teacher)
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.flop_model = FlopModel.from_config(self.model.config)  # the budget's FLOP unit (srpo_ref/flops.py)
        self.optimizer, self.scheduler = build.optimizer_and_schedule(self.model, cfg)
        self.loss_cfg = build.loss_config(cfg)
        self.train_set, self.test_set = build.prompts(cfg, self.tokenizer)
        self.engine = build.engine(cfg, self.model, self.tokenizer, self.train_set + self.test_set, self.sharded,
                                   self.autocast)
        self.n_updates = cfg.rollout.prompts_per_step // cfg.optim.mini_batch_prompts
        self.executor = UpdateExecutor(self.model, self.teacher, self.optimizer, self.tokenizer.pad_token_id,
                                       self.device, cfg,
                                       self.loss_cfg, self.autocast, self.flop_model, self.sharded)
        self.step = 0
        # training consumed so far (validation excluded), in every budget unit
        self.train_seconds, self.train_flops, self.train_tokens = 0.0, 0.0, 0

    def consumed(self, unit: str) -> float:
        """Training consumed so far in ``unit`` (run.budget_unit)."""
        return {"seconds": self.train_seconds, "flops": self.train_flops, "tokens": float(self.train_tokens),
                "steps": float(self.step)}[unit]

    def progress(self, step: int) -> dict:
        """The first fields of a step's or a validation's record: where the run stands."""
        return {"step": step, "wall_seconds": round(self.train_seconds, 4), "cum_flops": self.train_flops,
                "cum_tokens": self.train_tokens}

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
        updates = [self.executor.update(rows[(group_ids >= u * per_rank) & (group_ids < (u + 1) * per_rank)], data,
                                        timer, cost)
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
        rec = step_record(self.progress(step + 1), cfg.method.success_threshold, cfg.data.reward,  # 8. record
                          [s for _, s in samples], rewards, data, updates, timer, cost, step_lr, step_seconds)
        self.step += 1
        return rec

    def generate(self, prompts: list) -> list:
        """``G`` rollouts of each prompt: ``[(prompt index, Sample)]``."""
        cfg = self.cfg
        groups = self.sample(prompts, cfg.rollout.rollouts_per_prompt, cfg.rollout.temperature, cfg.rollout.top_p,
                             cfg.rollout.max_response_tokens, GENERATION_SALT)
        check_rollouts(groups, len(prompts), cfg.rollout.rollouts_per_prompt, self.model.config.vocab_size,
                       self.engine.name)
        return [(pi, s) for pi, group in enumerate(groups) for s in group]

    def sample(self, prompts: list, n: int, temperature: float, top_p: float, max_new_tokens: int, salt: int) -> list:
        """The engine's ``n`` samples of each of this rank's ``prompts`` (``(example, ids)``). The
        seed is the step's, salted per engine (``engine.seed_rank``: ranks that share a
        tensor-parallel vLLM engine share its seed; the engine gathers their prompts)."""
        seed_rank = getattr(self.engine, "seed_rank", rank())  # an engine that shares nothing: this rank's
        seed = step_seed(self.cfg.run.seed, self.step, salt=salt + 1000 * seed_rank)
        sampling = SamplingConfig(temperature, top_p, max_new_tokens, seed)
        return self.engine.generate([p for _, p in prompts], n, sampling)

    def rewards(self, prompts: list, samples: list) -> torch.Tensor:
        """Each rollout's reward: the task's verifier, or with ``data.reward=random`` (smoke tests
        only) a coin flip seeded by the step and the rollout's place, so both branches run."""
        if self.cfg.data.reward == "random":
            g = torch.Generator().manual_seed(step_seed(self.cfg.run.seed, self.step,
                                                        salt=RANDOM_REWARD_SALT + 1000 * rank()))
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
        routing = losses.route_samples(all_rewards[order], all_keys[order] // G, cfg.method.name,
                                       cfg.method.success_threshold,
                                       generator=torch.Generator().manual_seed(step_seed(cfg.run.seed, self.step,
                                                                                         salt=DEMO_SALT)))
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
        if all(s.logprobs is not None for _, s in samples) and not any(math.isnan(v) for _,
                                                                       s in samples for v in s.logprobs):
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
        step_cost = all_sum(torch.tensor([sum(cost.flops.values()), float(sum(cost.tokens.values()))],
                                         dtype=torch.float64)).tolist()
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
        groups = self.sample(local, cfg.eval.k, cfg.eval.temperature, cfg.eval.top_p, cfg.eval.max_new_tokens,
                             VALIDATION_SALT)[:n_mine]
        local = local[:n_mine]
        scores = [[ex.score(s.text, self.cfg.data.grader) for s in g] for (ex, _), g in zip(local, groups)]
        lengths = [len(s.response_ids) for g in groups for s in g]
        trunc = [s.finish_reason == "length" for g in groups for s in g]
        s = all_sum(torch.tensor([sum(map(sum, scores)), sum(len(x) for x in scores), len(scores),
                                  sum(any(v >= cfg.method.success_threshold for v in sc) for sc in scores),
                                  sum(lengths), sum(trunc)], dtype=torch.float64)).tolist()
        return {**self.progress(self.step), "avg_at_k": s[0] / s[1], "k": cfg.eval.k,
                "pass_at_k": s[3] / s[2], "n_questions": int(s[2]), "response_length_mean": s[4] / s[1],
                "truncation_rate": s[5] / s[1]}

    # ------------------------------------------------------------------ checkpoints

    def save(self) -> Path:
        return checkpoint.save(self, self.cfg.run.keep_checkpoints)

    def latest_checkpoint(self) -> Path | None:
        return checkpoint.latest(self.out)

    def load(self, ckpt: Path) -> None:
        checkpoint.load(self, ckpt)
        if self.cfg.rollout.engine == "vllm":
            self.engine.sync_weights(self.model)


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
