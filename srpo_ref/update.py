"""One optimizer update over a mini-batch of rollouts (SPEC sections 3-6): a plan, then its run.

**The plan** (``plan_update``) is bookkeeping on the host:

- the update's rows, longest first (micro-batches of similar lengths pad less; the sum is the same);
- ``N``, the update's valid response tokens over every rank (each micro-batch's loss is divided
  by it, so the micro-batches' losses add up to the update's), and the number of sequences;
- the layout. *One pass* when the update fits one micro-batch on every rank: both branches share
  it, and the entropy-weight normaliser (SPEC section 5) is summed over ranks before the loss.
  Otherwise *two passes*: the distilled rows' micro-batches first, with the raw weights
  ``exp(-beta H)``; their accumulated gradients are then divided by the update's mean raw weight
  (summed over micro-batches and ranks), so no teacher output is kept; the policy-gradient rows'
  micro-batches follow. Both layouts give the same gradient (tests/test_equivalence.py).

**The run** (``UpdateExecutor.update``): per micro-batch, the student's forward, the teacher's
forward on the distilled rows only, ``losses.srpo_objective`` and the backward; then the gradient
all-reduce, clipping and the optimizer step.

**Collective pairing** (``Pairing``) keeps a sharded run's ranks in step; see its docstring.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch

from srpo_ref import distributed, losses
from srpo_ref.forward import Batch, make_batch, response_logits, teacher_statistics

world, all_sum = distributed.world, distributed.all_sum


@dataclass
class Rollouts:
    """This rank's rollouts of a step, as the update reads them (rows index every list)."""

    prefixes: list[list[int]]  # each rollout's prompt ids
    responses: list[list[int]]
    teacher_prefixes: dict[int, list[int]]  # distilled rows: the teacher's prompt with the demonstration
    routing: losses.Routing
    advantages: torch.Tensor
    logp_rollout: torch.Tensor | None = None  # the rollout engine's log-probs [n, T] (vLLM), for the TIS weight
    logp_old: torch.Tensor | None = None  # the old log-probs [n, T] when computed; None: exactly on-policy

    def lengths(self) -> torch.Tensor:
        return torch.tensor([len(p) + len(r) for p, r in zip(self.prefixes, self.responses)])


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


@dataclass
class UpdatePlan:
    rows: list[int]  # the update's rows, longest first (the one-pass micro-batch)
    one_pass: bool
    distilled: list[list[int]]  # two passes: micro-batches of distilled rows ([] = a dummy pass, see Pairing)
    policy: list[list[int]]  # two passes: micro-batches of policy-gradient rows
    n_tokens: float  # N over every rank (at least 1: a step of empty responses has a zero loss, not 0 / 0)
    n_sequences: float


def plan_update(rows: torch.Tensor, data: Rollouts, micro_batch_size: int, pairing: "Pairing") -> UpdatePlan:
    """The plan of one update over this rank's ``rows`` (collectives: the same calls on every rank)."""
    mb = micro_batch_size
    n_tokens = max(all_sum(torch.tensor(float(sum(len(data.responses[i]) for i in rows.tolist())), dtype=torch.float64)).item(), 1.0)
    n_sequences = all_sum(torch.tensor(float(len(rows)), dtype=torch.float64)).item()
    length = data.lengths()
    rows = rows[torch.argsort(length[rows], descending=True, stable=True)]
    distilled = data.routing.sdpo_coef[rows] > 0
    sdpo_rows, grpo_rows = rows[distilled], rows[~distilled & (data.routing.grpo_coef[rows] > 0)]
    both = torch.cat([sdpo_rows, grpo_rows])
    both = both[torch.argsort(length[both], descending=True, stable=True)]
    one_pass = distributed.max_over_ranks(-(-len(both) // mb)) <= 1  # the same choice on every rank
    if one_pass:
        return UpdatePlan(both.tolist(), True, [], [], n_tokens, n_sequences)
    split = lambda r: [r[i * mb : (i + 1) * mb].tolist() for i in range(pairing.n_micro_batches(len(r), mb))]
    return UpdatePlan(both.tolist(), False, split(sdpo_rows), split(grpo_rows), n_tokens, n_sequences)


class Pairing:
    """Collective pairing for sharded (FSDP) runs, stated once.

    Under FSDP every forward and backward is a collective: each layer all-gathers its weights from
    every rank. So all ranks must run the same sequence of passes, whatever rows they hold. A rank
    with fewer micro-batches than the busiest rank runs a one-token dummy pass (with a zero loss's
    backward) for each one it lacks, and a rank with nothing to distil runs a dummy teacher
    forward while another rank runs a real one. The dummies change no gradient (their loss is 0)
    and no cost (they are not counted). Unsharded runs need none of this: each rank computes on
    its own and gradients are all-reduced once, after the update."""

    def __init__(self, executor: "UpdateExecutor", sharded: bool):
        self.executor, self.sharded = executor, sharded

    def n_micro_batches(self, n_rows: int, micro_batch_size: int) -> int:
        """Micro-batches this rank runs for ``n_rows`` rows: sharded, as many as the busiest rank."""
        n = -(-n_rows // micro_batch_size)
        return distributed.max_over_ranks(n) if self.sharded else n

    def teacher_elsewhere(self, distils_here: bool) -> bool:
        """Sharded: another rank runs a teacher forward that this rank has no rows for."""
        return self.sharded and distributed.max_over_ranks(int(distils_here)) > 0 and not distils_here

    def dummy_pass(self, with_teacher: bool, backward: bool, student: bool = True, keep_graph: bool = False):
        """A one-token forward (and zero-loss backward) that joins the other ranks' collectives:
        the student's (unless ``student`` is false), then the teacher's (``with_teacher``).
        ``keep_graph`` returns the student's logits for the caller's own backward instead."""
        ex = self.executor
        b = make_batch([[ex.pad_id, ex.pad_id]], [[ex.pad_id]], ex.pad_id, ex.device, ex.cfg.optim.shared_prefix)
        logits = None
        if student:
            with contextlib.nullcontext() if backward or keep_graph else torch.no_grad():
                logits = response_logits(ex.model, b, ex.autocast)
        if with_teacher:
            with torch.no_grad():
                vocab = ex.model.config.vocab_size
                ex.teacher_forward(b, logits if logits is not None else torch.zeros(1, 1, vocab, device=ex.device))
        if backward:
            (logits.sum() * 0.0).backward()
        return logits


class UpdateExecutor:
    """Runs update plans on the trainer's student, teacher and optimizer."""

    def __init__(self, model, teacher, optimizer, pad_id: int, device, cfg, loss_cfg: losses.LossConfig, autocast,
                 flop_model, sharded: bool):
        self.model, self.teacher, self.optimizer = model, teacher, optimizer
        self.pad_id, self.device, self.cfg, self.loss_cfg, self.autocast = pad_id, device, cfg, loss_cfg, autocast
        self.flop_model = flop_model
        self.pairing = Pairing(self, sharded)

    # ------------------------------------------------------------------ old log-probs

    @torch.no_grad()
    def logprobs(self, rows: torch.Tensor, data: Rollouts) -> tuple[torch.Tensor, int, float]:
        """Current-policy log-probs of the response tokens, ``[n_rows, T_max]`` (CPU), and the
        tokens and FLOPs computed."""
        T = max(1, max(len(r) for r in data.responses))
        out = torch.zeros(len(data.responses), T)
        n_computed, flops_computed = 0, 0.0
        mb = self.cfg.optim.micro_batch_size
        for i in range(self.pairing.n_micro_batches(len(rows), mb)):
            idx = rows[i * mb : (i + 1) * mb].tolist()
            if not idx:
                self.pairing.dummy_pass(with_teacher=False, backward=False)
                continue
            b = self._student_batch(idx, data)
            lp = losses.token_logprobs(response_logits(self.model, b, self.autocast), b.resp, self.cfg.rollout.temperature)
            out[idx, : lp.shape[1]] = (lp * b.mask).cpu()
            n_computed += b.n_computed
            flops_computed += self.flop_model.computed(b.segments)
        return out, n_computed, flops_computed

    # ------------------------------------------------------------------ one update

    def update(self, rows: torch.Tensor, data: Rollouts, timer, cost: Cost) -> dict:
        """One optimizer update over ``rows`` (this rank's rows of the mini-batch): the plan, its
        micro-batches, then all-reduce, clip and step. Returns metric sums, grad norm, finiteness."""
        plan = plan_update(rows, data, self.cfg.optim.micro_batch_size, self.pairing)
        metrics: dict[str, float] = {}
        self.optimizer.zero_grad(set_to_none=True)
        if plan.one_pass:
            self._micro_batch(plan.rows, data, plan, timer, cost, metrics)
        else:
            for idx in plan.distilled:
                self._micro_batch(idx, data, plan, timer, cost, metrics, dummy_with_teacher=True)
            if self.cfg.method.weight_normalizer != "micro_batch":
                self._divide_distilled(metrics)
            for idx in plan.policy:
                self._micro_batch(idx, data, plan, timer, cost, metrics, dummy_with_teacher=False)
        with timer("update"):
            distributed.average_gradients(self.model)
            grad_norm = distributed.clip_grad_norm(self.model, self.cfg.optim.grad_clip)
            finite = math.isfinite(grad_norm)
            if finite:
                self.optimizer.step()
        metrics["tokens_count"] = plan.n_tokens / world()  # each rank reports its share; summed later
        return {"metrics": metrics, "grad_norm": grad_norm, "finite": finite}

    def _micro_batch(self, idx: list[int], data: Rollouts, plan: UpdatePlan, timer, cost: Cost, metrics: dict,
                     dummy_with_teacher: bool = False) -> None:
        """One forward/backward over the rows ``idx`` (both branches may be present). In the
        one-pass layout the weight normaliser is summed over ranks here; an empty ``idx`` joins the
        other ranks' passes instead (``Pairing``)."""
        if not idx:
            if plan.one_pass:
                return self._empty_one_pass(timer)
            with timer("update"):  # this rank has fewer micro-batches than another (sharded layout)
                self.pairing.dummy_pass(dummy_with_teacher, backward=True)
            return None
        with timer("update"):
            b = self._student_batch(idx, data)
            logits = response_logits(self.model, b, self.autocast)
        local = [k for k, j in enumerate(idx) if data.routing.sdpo_coef[j] > 0]  # distilled rows of the micro-batch
        if plan.one_pass and self.pairing.teacher_elsewhere(bool(local)):
            with timer("teacher_forward"), torch.no_grad():
                self.pairing.dummy_pass(with_teacher=True, backward=False, student=False)
        teacher = self._teacher(idx, local, b, logits, data, timer, cost) if local else (None, None, None)
        normaliser = 1.0 if local else None  # raw weights; the two-pass layout divides by the mean later
        if self.cfg.method.weight_normalizer == "micro_batch":
            normaliser = None  # this micro-batch's own mean (srpo_objective)
        elif plan.one_pass:
            normaliser = self._one_pass_normaliser(local, b, logits, teacher)
        with timer("update"):
            loss, m = self._loss(idx, b, logits, teacher, normaliser, data, plan)
            # gradients are averaged over ranks (after the update, or by FSDP): scaled here to a sum
            (loss * world()).backward()
        pairs = [(len(data.prefixes[j]), len(data.responses[j])) for j in idx]
        ckpt = self.cfg.model.gradient_checkpointing
        cost.add("update", sum(p + r for p, r in pairs), b.n_computed, self.flop_model.update(pairs, ckpt),
                 self.flop_model.computed(b.segments, backward=True, checkpointing=ckpt))
        accumulate_metrics(metrics, m)
        return None

    def _empty_one_pass(self, timer) -> None:
        """The one-pass layout on a rank without rows: every collective of the others' pass."""
        with timer("update"):
            logits = self.pairing.dummy_pass(with_teacher=False, backward=False, keep_graph=True)
        if self.pairing.teacher_elsewhere(False):
            with timer("teacher_forward"), torch.no_grad():
                self.pairing.dummy_pass(with_teacher=True, backward=False, student=False)
        if self.cfg.method.weight_normalizer != "micro_batch":
            mean_weight(0.0, 0.0)
        with timer("update"):
            (logits.sum() * 0.0).backward()

    def _student_batch(self, idx: list[int], data: Rollouts) -> Batch:
        return make_batch([data.prefixes[j] for j in idx], [data.responses[j] for j in idx], self.pad_id, self.device,
                          self.cfg.optim.shared_prefix)

    def _teacher(self, idx, local, b: Batch, logits, data: Rollouts, timer, cost: Cost):
        """The teacher on the micro-batch's distilled rows ``local`` only, placed back in the
        micro-batch's rows and length: ``(teacher_logits, teacher_stats, topk_ids)``."""
        rows = [idx[k] for k in local]
        with timer("teacher_forward"), torch.no_grad():
            tb = make_batch([data.teacher_prefixes[j] for j in rows], [data.responses[j] for j in rows], self.pad_id,
                            self.device, self.cfg.optim.shared_prefix)
            out = self.teacher_forward(tb, logits[local])
            if len(local) < len(idx) or tb.resp.shape[1] != b.resp.shape[1]:
                out = _to_rows(local, logits.shape[:2], *out)
        pairs = [(len(data.teacher_prefixes[j]), len(data.responses[j])) for j in rows]
        cost.add("teacher_forward", sum(p + r for p, r in pairs), tb.n_computed, self.flop_model.forward_pass(pairs),
                 self.flop_model.computed(tb.segments))
        return out

    def teacher_forward(self, tb: Batch, student_logits: torch.Tensor):
        """The teacher's forward on ``tb``: ``(teacher_logits, teacher_stats, topk_ids)``. With
        ``method.topk`` (memory-lean) only its top-K log-probs at the student's top-K ids, the tail
        and the entropy, a chunk of positions at a time; otherwise its full logits."""
        cfg = self.cfg
        teacher_model = self.teacher if self.teacher is not None else self.model
        if cfg.method.teacher == "mix":  # full logits of both models on the teacher's input, mixed
            mixed = losses.mix_logits(response_logits(teacher_model, tb, self.autocast), response_logits(self.model, tb, self.autocast),
                                      cfg.method.teacher_mix)
            if cfg.method.topk is None:
                return mixed, None, None
            student_logits = student_logits[:, : tb.resp.shape[1]]
            topk_ids = student_logits.detach().topk(min(cfg.method.topk, student_logits.shape[-1]), dim=-1).indices
            stats = losses.TeacherStats(losses.topk_logprobs(mixed, topk_ids, cfg.rollout.temperature),
                                        losses.teacher_entropy(mixed, cfg.rollout.temperature))
            return None, stats, topk_ids
        if cfg.method.topk is None:
            return response_logits(teacher_model, tb, self.autocast), None, None
        # The teacher batch is as long as its longest (distilled) response, which can be shorter
        # than the student's micro-batch: the ids are the student's top-K at the teacher's positions.
        student_logits = student_logits[:, : tb.resp.shape[1]]
        topk_ids = student_logits.detach().topk(min(cfg.method.topk, student_logits.shape[-1]), dim=-1).indices
        stats = teacher_statistics(teacher_model, tb, self.autocast, topk_ids, cfg.rollout.temperature, cfg.method.logits_chunk)
        return None, stats, topk_ids

    def _one_pass_normaliser(self, local, b: Batch, logits, teacher) -> float:
        """The update's mean raw weight over every rank (a collective), from this micro-batch."""
        raw_sum, count = 0.0, 0.0
        if local:  # the teacher's outputs cover the micro-batch's rows; only the distilled ones count
            teacher_logits, teacher_stats, topk_ids = teacher
            entropy = losses.weight_entropy(self.loss_cfg, logits, teacher_logits, teacher_stats, topk_ids)
            distilled_mask = torch.zeros_like(b.mask)
            distilled_mask[local] = b.mask[local]
            raw_sum, count = losses.entropy_weight_sum(entropy, distilled_mask, self.loss_cfg.beta)
        return mean_weight(raw_sum, count)

    def _loss(self, idx, b: Batch, logits, teacher, normaliser, data: Rollouts, plan: UpdatePlan):
        teacher_logits, teacher_stats, topk_ids = teacher
        logp = losses.token_logprobs(logits, b.resp, self.cfg.rollout.temperature)
        T = logp.shape[1]
        logp_old = logp.detach() if data.logp_old is None else data.logp_old[idx, :T].to(self.device)
        lp_roll = None if data.logp_rollout is None else data.logp_rollout[idx, :T].to(self.device)
        sub = data.routing.select(torch.tensor(idx))
        distils = teacher_logits is not None or teacher_stats is not None
        return losses.srpo_objective(
            logp=logp, logp_old=logp_old, advantages=data.advantages[idx].to(self.device), mask=b.mask,
            routing=_to(sub, self.device), num_tokens=plan.n_tokens, cfg=self.loss_cfg,
            student_logits=logits if distils else None, teacher_logits=teacher_logits,
            weight_normalizer=normaliser, logp_rollout=lp_roll, num_sequences=plan.n_sequences,
            teacher=teacher_stats, topk_ids=topk_ids,
        )

    def _divide_distilled(self, metrics: dict) -> None:
        """Two-pass layout: the distilled gradients (and their metric sums) get the update's mean
        raw weight, summed over micro-batches and ranks (a collective)."""
        mean_w = mean_weight(metrics.get("weight_sum", 0.0), metrics.get("sdpo_tokens_count", 0.0))
        if mean_w == 1.0:
            return
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.div_(mean_w)
        for k, power in (("sdpo_loss_sum", 1), ("weight_sum", 1), ("weight_sq_sum", 2), ("weight_min", 1), ("weight_max", 1)):
            if k in metrics:  # absent on a rank that distilled nothing
                metrics[k] /= mean_w**power


def mean_weight(raw_sum, count) -> float:
    """The weight normaliser: this rank's sum of raw entropy weights and count of distilled tokens,
    summed over ranks, divided (1.0 when nothing was distilled). A collective: every rank calls it
    once per update."""
    raw = all_sum(torch.tensor([float(raw_sum), float(count)], dtype=torch.float64))
    return (raw[0] / raw[1]).item() if raw[1] > 0 else 1.0


def accumulate_metrics(into: dict, metrics: dict) -> None:
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
