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
  micro-batches follow. Both layouts give the same gradient (tests/integration/test_equivalence.py).

**The run** (``UpdateExecutor.update``): per micro-batch, the student's forward, the teacher's
forward on the distilled rows only, ``losses.srpo_objective`` and the backward; then the gradient
all-reduce, clipping and the optimizer step.

**Collective pairing** (``srpo_ref.pairing``) keeps a sharded run's ranks in step; the weight
normaliser's strategies are ``srpo_ref.normalizers``. ``micro_batch_loss`` is the one micro-batch
loss of the project: this update and the TRL integration (``srpo_ref.integrations.trl``) call it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from srpo_ref import distributed, losses
from srpo_ref.forward import Batch, make_batch, response_logits, teacher_statistics
from srpo_ref.normalizers import normalizer
from srpo_ref.pairing import Pairing
from srpo_ref.record import Cost, accumulate_metrics

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
class TeacherOutputs:
    """What the loss needs from the teacher on a micro-batch: its full ``logits`` ``[B, T, V]``, or
    (memory-lean, ``method.topk``) its ``stats`` at the student's ``topk_ids``; rows that are not
    distilled are zeros. All None: nothing in the micro-batch is distilled."""

    logits: torch.Tensor | None = None
    stats: losses.TeacherStats | None = None
    topk_ids: torch.Tensor | None = None

    @property
    def present(self) -> bool:
        return self.logits is not None or self.stats is not None


@torch.no_grad()
def lean_teacher(teacher_logits: torch.Tensor, student_logits: torch.Tensor, cfg: losses.LossConfig) -> TeacherOutputs:
    """The teacher's full logits as the loss takes them: with ``cfg.topk``, its ``TeacherStats`` at
    the student's top-K ids (so no ``[B, T, V]`` teacher tensor is kept for the loss; the same
    loss as the full logits); without, the logits themselves."""
    if cfg.topk is None:
        return TeacherOutputs(logits=teacher_logits)
    topk_ids = student_logits.detach().topk(min(cfg.topk, student_logits.shape[-1]), dim=-1).indices
    stats = losses.TeacherStats(losses.topk_logprobs(teacher_logits, topk_ids, cfg.temperature),
                                losses.teacher_entropy(teacher_logits, cfg.temperature))
    return TeacherOutputs(stats=stats, topk_ids=topk_ids)


def micro_batch_loss(*, student_logits: torch.Tensor, response_ids: torch.Tensor, mask: torch.Tensor,
                     advantages: torch.Tensor, routing: losses.Routing, cfg: losses.LossConfig, num_tokens: float,
                     num_sequences: float | None = None, teacher: TeacherOutputs | None = None,
                     logp_old: torch.Tensor | None = None, logp_rollout: torch.Tensor | None = None,
                     weight_normalizer: float | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """One micro-batch's share of the update's loss: ``losses.srpo_objective`` on the student's
    ``[B, T, V]`` logits over the response tokens. ``logp_old`` ``None``: exactly on-policy
    (``logp.detach()``); ``weight_normalizer`` the mean raw weight to divide by (``None``: this
    micro-batch's own); ``num_tokens`` / ``num_sequences`` the whole update's (every micro-batch
    and rank)."""
    logp = losses.token_logprobs(student_logits, response_ids, cfg.temperature)
    logp_old = logp.detach() if logp_old is None else logp_old.to(logp)
    teacher = teacher or TeacherOutputs()
    return losses.srpo_objective(
        logp=logp, logp_old=logp_old, advantages=advantages, mask=mask, routing=routing, num_tokens=num_tokens,
        cfg=cfg, student_logits=student_logits if teacher.present else None, teacher_logits=teacher.logits,
        weight_normalizer=weight_normalizer, logp_rollout=logp_rollout, num_sequences=num_sequences,
        teacher=teacher.stats, topk_ids=teacher.topk_ids,
    )


@dataclass
class UpdatePlan:
    rows: list[int]  # the update's rows, longest first (the one-pass micro-batch)
    one_pass: bool
    distilled: list[list[int]]  # two passes: micro-batches of distilled rows ([] = a dummy pass, see Pairing)
    policy: list[list[int]]  # two passes: micro-batches of policy-gradient rows
    n_tokens: float  # N over every rank (at least 1: a step of empty responses has a zero loss, not 0 / 0)
    n_sequences: float


def plan_update(rows: torch.Tensor, data: Rollouts, micro_batch_size: int, pairing: Pairing) -> UpdatePlan:
    """The plan of one update over this rank's ``rows`` (collectives: the same calls on every rank)."""
    mb = micro_batch_size
    n_tokens = max(all_sum(torch.tensor(float(sum(len(data.responses[i]) for i in rows.tolist())),
                                        dtype=torch.float64)).item(), 1.0)
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
    def split(r):
        return [r[i * mb : (i + 1) * mb].tolist() for i in range(pairing.n_micro_batches(len(r), mb))]
    return UpdatePlan(both.tolist(), False, split(sdpo_rows), split(grpo_rows), n_tokens, n_sequences)


class UpdateExecutor:
    """Runs update plans on the trainer's student, teacher and optimizer."""

    def __init__(self, model, teacher, optimizer, pad_id: int, device, cfg, loss_cfg: losses.LossConfig, autocast,
                 flop_model, sharded: bool):
        self.model, self.teacher, self.optimizer = model, teacher, optimizer
        self.pad_id, self.device, self.cfg, self.loss_cfg, self.autocast = pad_id, device, cfg, loss_cfg, autocast
        self.flop_model = flop_model
        self.normalizer = normalizer(cfg.method.weight_normalizer)
        self.pairing = Pairing(model, pad_id, device, autocast, cfg.optim.shared_prefix, self.teacher_forward, sharded)

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
            lp = losses.token_logprobs(response_logits(self.model, b, self.autocast), b.resp,
                                       self.cfg.rollout.temperature)
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
        teacher = self._teacher(idx, local, b, logits, data, timer, cost) if local else TeacherOutputs()
        if plan.one_pass:
            normaliser = self._one_pass_normaliser(local, b, logits, teacher)
        else:  # raw weights when the strategy divides the accumulated gradients later
            normaliser = self.normalizer.deferred_pass_normaliser() if local else None
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
        self.normalizer.update_mean(0.0, 0.0, all_sum)  # joins the others' collective (if the strategy has one)
        with timer("update"):
            (logits.sum() * 0.0).backward()

    def _student_batch(self, idx: list[int], data: Rollouts) -> Batch:
        return make_batch([data.prefixes[j] for j in idx], [data.responses[j] for j in idx], self.pad_id, self.device,
                          self.cfg.optim.shared_prefix)

    def _teacher(self, idx, local, b: Batch, logits, data: Rollouts, timer, cost: Cost) -> TeacherOutputs:
        """The teacher on the micro-batch's distilled rows ``local`` only, placed back in the
        micro-batch's rows and length."""
        rows = [idx[k] for k in local]
        with timer("teacher_forward"), torch.no_grad():
            tb = make_batch([data.teacher_prefixes[j] for j in rows], [data.responses[j] for j in rows], self.pad_id,
                            self.device, self.cfg.optim.shared_prefix)
            out = self.teacher_forward(tb, logits[local])
            if len(local) < len(idx) or tb.resp.shape[1] != b.resp.shape[1]:
                out = _to_rows(local, logits.shape[:2], out)
        pairs = [(len(data.teacher_prefixes[j]), len(data.responses[j])) for j in rows]
        cost.add("teacher_forward", sum(p + r for p, r in pairs), tb.n_computed, self.flop_model.forward_pass(pairs),
                 self.flop_model.computed(tb.segments))
        return out

    def teacher_forward(self, tb: Batch, student_logits: torch.Tensor) -> TeacherOutputs:
        """The teacher's forward on ``tb``. With
        ``method.topk`` (memory-lean) only its top-K log-probs at the student's top-K ids, the tail
        and the entropy, a chunk of positions at a time; otherwise its full logits."""
        cfg = self.cfg
        teacher_model = self.teacher if self.teacher is not None else self.model
        if cfg.method.teacher == "mix":  # full logits of both models on the teacher's input, mixed
            mixed = losses.mix_logits(response_logits(teacher_model, tb, self.autocast), response_logits(self.model, tb,
                                                                                                         self.autocast),
                                      cfg.method.teacher_mix)
            return lean_teacher(mixed, student_logits[:, : tb.resp.shape[1]], self.loss_cfg)
        if cfg.method.topk is None:
            return TeacherOutputs(logits=response_logits(teacher_model, tb, self.autocast))
        # The teacher batch is as long as its longest (distilled) response, which can be shorter
        # than the student's micro-batch: the ids are the student's top-K at the teacher's positions.
        student_logits = student_logits[:, : tb.resp.shape[1]]
        topk_ids = student_logits.detach().topk(min(cfg.method.topk, student_logits.shape[-1]), dim=-1).indices
        stats = teacher_statistics(teacher_model, tb, self.autocast, topk_ids, cfg.rollout.temperature,
                                   cfg.method.logits_chunk)
        return TeacherOutputs(stats=stats, topk_ids=topk_ids)

    def _one_pass_normaliser(self, local, b: Batch, logits, teacher: TeacherOutputs) -> float | None:
        """The update's normaliser when it is this one micro-batch per rank (the strategy's update
        mean: a collective), from this micro-batch's raw weights."""
        raw_sum, count = 0.0, 0.0
        if local and self.normalizer.needs_raw_weights:  # only the distilled rows count
            entropy = losses.weight_entropy(self.loss_cfg, logits, teacher.logits, teacher.stats, teacher.topk_ids)
            distilled_mask = torch.zeros_like(b.mask)
            distilled_mask[local] = b.mask[local]
            raw_sum, count = losses.entropy_weight_sum(entropy, distilled_mask, self.loss_cfg.beta)
        return self.normalizer.update_mean(raw_sum, count, all_sum)

    def _loss(self, idx, b: Batch, logits, teacher: TeacherOutputs, normaliser, data: Rollouts, plan: UpdatePlan):
        T = b.resp.shape[1]
        logp_old = None if data.logp_old is None else data.logp_old[idx, :T].to(self.device)
        lp_roll = None if data.logp_rollout is None else data.logp_rollout[idx, :T].to(self.device)
        return micro_batch_loss(
            student_logits=logits, response_ids=b.resp, mask=b.mask, advantages=data.advantages[idx].to(self.device),
            routing=_to(data.routing.select(torch.tensor(idx)), self.device), cfg=self.loss_cfg,
            num_tokens=plan.n_tokens, num_sequences=plan.n_sequences, teacher=teacher, logp_old=logp_old,
            logp_rollout=lp_roll, weight_normalizer=normaliser,
        )

    def _divide_distilled(self, metrics: dict) -> None:
        """Two-pass layout: the distilled gradients (and their metric sums) get the update's mean
        raw weight, summed over micro-batches and ranks (a collective)."""
        mean_w = self.normalizer.gradient_divisor(metrics.get("weight_sum", 0.0), metrics.get("sdpo_tokens_count", 0.0),
                                                  all_sum)
        if mean_w == 1.0:
            return
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.div_(mean_w)
        for k, power in (("sdpo_loss_sum", 1), ("weight_sum", 1), ("weight_sq_sum", 2), ("weight_min", 1),
                         ("weight_max", 1)):
            if k in metrics:  # absent on a rank that distilled nothing
                metrics[k] /= mean_w**power


def _to_rows(local: list[int], shape: tuple, out: TeacherOutputs) -> TeacherOutputs:
    """The teacher's outputs for the micro-batch rows ``local``, placed in zero tensors of the
    micro-batch's ``shape = (B, T)``."""
    def place(x):
        if x is None:
            return None
        out = x.new_zeros(*shape, *x.shape[2:])
        out[local, : x.shape[1]] = x
        return out

    stats = None if out.stats is None else losses.TeacherStats(place(out.stats.logp), place(out.stats.entropy))
    return TeacherOutputs(place(out.logits), stats, place(out.topk_ids))


def _to(r: losses.Routing, device) -> losses.Routing:
    return losses.Routing(**{k: getattr(r, k).to(device) for k in r.__dataclass_fields__})
