"""The SRPO objective as pure functions on tensors (SPEC sections 2-6).

Nothing here touches a model, a tokenizer or a file: every function takes tensors and returns
tensors, so each can be checked by hand on tiny inputs (tests/unit/test_losses.py).

Shapes: ``B`` samples (rollouts), ``T`` response tokens (right-padded), ``V`` vocabulary.
``mask`` is the valid-response-token mask, float or bool, ``[B, T]``.

The pieces, in the order a training step uses them:

1. ``route_samples``      which branch each rollout trains on (section 2, method table section 7)
2. ``group_advantages``   Dr. GRPO advantages ``A_i = r_i - mean_group(r)`` (section 3)
3. ``policy_gradient_loss``  clipped, dual-clipped PPO surrogate per token (section 3)
4. ``distillation_loss``  generalized JSD to the self-teacher on the student's top-K (section 4)
5. ``teacher_entropy`` / ``entropy_weights``  the teacher-confidence weights (section 5)
6. ``srpo_objective``     both branches, normalised by the global token count (section 6)

Choices where the paper is silent (each is an argument, stated again in the README):

- std normalisation (off by default) uses the unbiased group standard deviation.
- The loss is a token mean over *every* valid response token of the optimizer update, for every
  method: a sample that trains on no branch (``sdpo`` without a sibling success, all-failed
  groups under GRPO) still counts in ``N``. When a step makes one update (SDPO, SRPO in the
  paper) this is exactly the step-wide ``N`` of section 6.
- The top-K tail bucket's probability is floored at ``TAIL_FLOOR`` so that K = V (no tail mass)
  stays finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

TAIL_FLOOR = 1e-10
LOG_RATIO_CLAMP = 20.0  # log-ratios are clamped to +-20 before exp, as verl does
LOSS_AGGREGATIONS = ("token_mean", "seq_mean_token_mean")
ENTROPY_SOURCES = ("full", "topk_tail")
"""Smallest probability given to the top-K tail bucket (keeps ``log`` finite when K = V)."""


# --------------------------------------------------------------------------------------------
# 1. Routing (SPEC section 2 and the method table of section 7)
# --------------------------------------------------------------------------------------------


@dataclass
class Routing:
    """Per-sample routing decision for one batch of rollouts (all tensors ``[B]``).

    ``to_sdpo``: the sample trains on the distillation branch (its teacher forward is run).
    ``has_teacher``: ``m_i``, some sibling ``j != i`` in the group is correct.
    ``demo_index``: the batch index of the sibling used as demonstration, ``-1`` where none.
    ``correct``: ``c_i = 1[r_i >= success_threshold]``.
    ``grpo_coef`` / ``sdpo_coef``: the coefficient of each branch in the sample's loss
    (0 or 1 for every method except ``adv_mix``, which uses 0.9 / 0.1).
    """

    to_sdpo: torch.Tensor
    has_teacher: torch.Tensor
    demo_index: torch.Tensor
    correct: torch.Tensor
    grpo_coef: torch.Tensor
    sdpo_coef: torch.Tensor

    def select(self, index: torch.Tensor) -> "Routing":
        """Rows ``index`` of every field. ``demo_index`` keeps pointing into the full batch."""
        return Routing(**{k: getattr(self, k)[index] for k in self.__dataclass_fields__})


RoutePolicy = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
"""(correct, has_teacher) -> (to_sdpo, grpo_coef, sdpo_coef)."""

ROUTE_POLICIES: dict[str, RoutePolicy] = {}
ENTROPY_BETA: dict[str, float] = {}
"""Default ``beta`` of section 5 for each method (0 = no entropy weighting)."""


def register_method(name: str, beta: float = 0.0):
    """Register a routing policy under ``name`` (verl-style registry)."""

    def wrap(fn: RoutePolicy) -> RoutePolicy:
        ROUTE_POLICIES[name] = fn
        ENTROPY_BETA[name] = beta
        return fn

    return wrap


def _ones(x):
    return torch.ones_like(x, dtype=torch.float32)


@register_method("grpo")
def _route_grpo(correct, has_teacher):
    return torch.zeros_like(correct), _ones(correct), 0 * _ones(correct)


@register_method("sdpo")
def _route_sdpo(correct, has_teacher):
    to_sdpo = has_teacher.clone()
    return to_sdpo, 0 * _ones(correct), to_sdpo.float()


def _route_srpo(correct, has_teacher):
    to_sdpo = ~correct & has_teacher
    return to_sdpo, (~to_sdpo).float(), to_sdpo.float()


register_method("srpo", beta=1.0)(_route_srpo)
register_method("srpo_no_dw", beta=0.0)(_route_srpo)


@register_method("adv_mix")
def _route_adv_mix(correct, has_teacher):
    return has_teacher.clone(), 0.9 * _ones(correct), 0.1 * has_teacher.float()


@register_method("sdpo_failed_only")
def _route_sdpo_failed_only(correct, has_teacher):
    to_sdpo = ~correct & has_teacher
    return to_sdpo, 0 * _ones(correct), to_sdpo.float()


@register_method("sdpo_correct_only")
def _route_sdpo_correct_only(correct, has_teacher):
    to_sdpo = correct & has_teacher
    return to_sdpo, 0 * _ones(correct), to_sdpo.float()


METHODS = tuple(ROUTE_POLICIES)


def _group_index(group_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Map arbitrary group labels to ``0..n_groups-1``."""
    _, inverse = torch.unique(group_ids, return_inverse=True)
    return inverse, int(inverse.max().item()) + 1 if inverse.numel() else 0


def route_samples(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    method: str = "srpo",
    success_threshold: float = 0.5,
    generator: torch.Generator | None = None,
) -> Routing:
    """Route each rollout to GRPO or SDPO (SPEC section 2)::

        c_i = 1[r_i >= success_threshold]
        m_i = 1[exists j != i in the same group with c_j = 1]
        srpo:  z_sdpo_i = (1 - c_i) * m_i,  z_grpo_i = 1 - z_sdpo_i

    Other methods (section 7) reuse ``c`` and ``m`` with their own rule. Every sample with
    ``m_i = 1`` gets a demonstration: one correct sibling ``j != i`` drawn uniformly with
    ``generator`` (seeded draws are reproducible). ``demo_index`` is ``-1`` elsewhere.
    """
    if method not in ROUTE_POLICIES:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(ROUTE_POLICIES)}")
    rewards = rewards.detach().float().cpu()
    group_ids = group_ids.detach().cpu()
    if rewards.shape != group_ids.shape or rewards.dim() != 1:
        raise ValueError(f"rewards {tuple(rewards.shape)} and group_ids {tuple(group_ids.shape)} must be equal 1-D")
    correct = rewards >= success_threshold
    gidx, n_groups = _group_index(group_ids)
    correct_per_group = torch.zeros(n_groups).index_add_(0, gidx, correct.float())
    has_teacher = (correct_per_group[gidx] - correct.float()) > 0

    demo_index = torch.full_like(gidx, -1)
    for i in torch.nonzero(has_teacher).flatten().tolist():
        siblings = torch.nonzero((gidx == gidx[i]) & correct).flatten()
        siblings = siblings[siblings != i]
        pick = torch.randint(len(siblings), (1,), generator=generator).item()
        demo_index[i] = siblings[pick]

    to_sdpo, grpo_coef, sdpo_coef = ROUTE_POLICIES[method](correct, has_teacher)
    return Routing(
        to_sdpo=to_sdpo, has_teacher=has_teacher, demo_index=demo_index, correct=correct,
        grpo_coef=grpo_coef, sdpo_coef=sdpo_coef,
    )


# --------------------------------------------------------------------------------------------
# 2-3. GRPO branch (SPEC section 3)
# --------------------------------------------------------------------------------------------


def group_advantages(rewards: torch.Tensor, group_ids: torch.Tensor, std_normalize: bool = False) -> torch.Tensor:
    """Dr. GRPO advantage ``A_i = r_i - mean_{j in group(i)} r_j`` over all rollouts of the group,
    whatever their route. With ``std_normalize``: ``A_i / (std_group(r) + 1e-6)`` (unbiased std;
    a group of one has std 0)."""
    rewards = rewards.float()
    gidx, n_groups = _group_index(group_ids.to(rewards.device))
    count = torch.zeros(n_groups, device=rewards.device).index_add_(0, gidx, torch.ones_like(rewards))
    mean = torch.zeros(n_groups, device=rewards.device).index_add_(0, gidx, rewards) / count
    adv = rewards - mean[gidx]
    if std_normalize:
        sq = torch.zeros(n_groups, device=rewards.device).index_add_(0, gidx, adv**2)
        std = torch.sqrt(sq / (count - 1).clamp(min=1))
        adv = adv / (std[gidx] + 1e-6)
    return adv


def truncated_is_weight(logp_num: torch.Tensor, logp_den: torch.Tensor, cap: float = 2.0) -> torch.Tensor:
    """``min(exp(logp_num - logp_den), cap)``, detached. Used twice: the rollout-engine
    correction ``min(exp(logp_old - logp_rollout), 2)`` and the SDPO importance factor
    ``min(exp(logp - logp_old), 2)``. The log-ratio is clamped to +-20 first."""
    log_ratio = (logp_num.detach() - logp_den.detach()).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return torch.exp(log_ratio).clamp(max=cap)


def policy_gradient_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    dual_clip: float | None = 3.0,
    tis_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token clipped surrogate (SPEC section 3), ``[B, T]``::

        ratio = exp(clamp(logp - logp_old, -20, 20))      (the clamp as in verl)
        l = -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)
        l = min(l, -c * A)            where A < 0 (dual clip, c = dual_clip)
        l = l * tis_weight            (detached rollout-engine weight, when given)

    ``advantages`` is ``[B]`` (broadcast over tokens) or ``[B, T]``.
    """
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    ratio = torch.exp((logp - logp_old).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    loss = torch.maximum(unclipped, clipped)
    if dual_clip is not None:
        loss = torch.where(advantages < 0, torch.minimum(loss, -dual_clip * advantages), loss)
    if tis_weight is not None:
        loss = loss * tis_weight.detach()
    return loss


# --------------------------------------------------------------------------------------------
# 4. SDPO branch (SPEC section 4)
# --------------------------------------------------------------------------------------------


def _kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """``KL(P || Q) = sum_v p_v (log p_v - log q_v)`` over the last dim."""
    return (logp.exp() * (logp - logq)).sum(-1)


def generalized_jsd(student_logp: torch.Tensor, teacher_logp: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Generalized Jensen-Shannon divergence between two log-distributions (last dim)::

        M = (1 - alpha) * P_s + alpha * P_t
        JSD_alpha = (1 - alpha) * KL(P_s || M) + alpha * KL(P_t || M)

    The ends are the plain KLs (the formula itself vanishes there):
    ``alpha = 0`` -> ``KL(P_t || P_s)`` (teacher first), ``alpha = 1`` -> ``KL(P_s || P_t)``
    (student first).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if alpha == 0.0:
        return _kl(teacher_logp, student_logp)
    if alpha == 1.0:
        return _kl(student_logp, teacher_logp)
    log_m = torch.logsumexp(
        torch.stack([student_logp + math.log(1 - alpha), teacher_logp + math.log(alpha)]), dim=0
    )
    return (1 - alpha) * _kl(student_logp, log_m) + alpha * _kl(teacher_logp, log_m)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    topk: int | None = 100,
    alpha: float = 0.5,
    add_tail: bool = True,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-token divergence from the student to the self-teacher (SPEC section 4), ``[B, T]``.

    Both logits ``[B, T, V]`` are divided by ``temperature`` and log-softmaxed over the full
    vocabulary (teacher without gradient). With ``topk = K``: gather both at the *student's*
    top-K token ids and, with ``add_tail``, append the tail bucket ``log(1 - sum_topk p)`` to
    each (without it, renormalise both over the K ids). Then ``generalized_jsd(student, teacher,
    alpha)``. ``topk=None`` uses the full vocabulary.

    The tail is computed in log space, ``logsumexp(log p outside the top-K)``, i.e.
    ``logsumexp(logits outside) - logsumexp(logits)``: ``1 - sum p`` in fp32 loses every digit
    when the top-K hold almost all the mass. It is floored at ``log(TAIL_FLOOR)`` (an empty tail,
    K >= V, would otherwise be ``-inf``).
    """
    student_logp = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_logp = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    if topk is not None:
        # K >= V keeps the whole vocabulary; its tail bucket is then empty (floored).
        ids = student_logp.detach().topk(min(topk, student_logp.shape[-1]), dim=-1).indices
        if add_tail:
            floor = math.log(TAIL_FLOOR)
            s_tail = torch.logsumexp(student_logp.scatter(-1, ids, -math.inf), -1, keepdim=True).clamp(min=floor)
            t_tail = torch.logsumexp(teacher_logp.scatter(-1, ids, -math.inf), -1, keepdim=True).clamp(min=floor)
        student_logp = student_logp.gather(-1, ids)
        teacher_logp = teacher_logp.gather(-1, ids)
        if add_tail:
            student_logp = torch.cat([student_logp, s_tail], -1)
            teacher_logp = torch.cat([teacher_logp, t_tail], -1)
        else:
            student_logp = student_logp - torch.logsumexp(student_logp, -1, keepdim=True)
            teacher_logp = teacher_logp - torch.logsumexp(teacher_logp, -1, keepdim=True)
    return generalized_jsd(student_logp, teacher_logp, alpha)


# Memory-lean form of the same divergence: the student's log-probs at its top-K ids and the tail
# bucket, and the teacher's, without ever holding a [B, T, V] log-softmax (or, for the teacher,
# any [B, T, V] tensor): positions are processed in chunks. At Qwen3's vocabulary one fp32
# [2, 8192, V] tensor is 10 GB.

CHUNK_ELEMENTS = 1 << 25  # about 128 MB of fp32 per [chunk, V] temporary


def auto_chunk(vocab: int, chunk: int | None = None) -> int:
    """Positions per chunk: ``chunk`` if given, else as many as fit ``CHUNK_ELEMENTS``."""
    return chunk if chunk else max(1, CHUNK_ELEMENTS // vocab)


def _topk_and_tail(z: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For scaled logits ``z [N, V]``: ``[log p(ids), log p(outside ids)]`` ``[N, K + 1]`` (the tail
    in log space, floored at ``log(TAIL_FLOOR)``) and ``logsumexp(z)`` ``[N, 1]``."""
    lse = torch.logsumexp(z, -1, keepdim=True)
    tail = (torch.logsumexp(z.scatter(-1, ids, -math.inf), -1, keepdim=True) - lse).clamp(min=math.log(TAIL_FLOOR))
    return torch.cat([z.gather(-1, ids) - lse, tail], -1), lse


class _TopKLogProbs(torch.autograd.Function):
    """``[log p(ids), log(tail mass)]`` under ``softmax(logits / T)``, ``[..., K + 1]``, computed
    and differentiated chunk by chunk; only ``logits`` (alive anyway) and ``ids`` are saved."""

    @staticmethod
    def forward(ctx, logits, ids, temperature, chunk):
        V, K = logits.shape[-1], ids.shape[-1]
        flat, fid = logits.reshape(-1, V), ids.reshape(-1, K)
        out = torch.empty(flat.shape[0], K + 1, device=logits.device, dtype=torch.float32)
        for s in range(0, flat.shape[0], chunk):
            z = flat[s : s + chunk].float() / temperature
            out[s : s + chunk] = _topk_and_tail(z, fid[s : s + chunk])[0]
        ctx.save_for_backward(logits, ids, out)
        ctx.temperature, ctx.chunk = temperature, chunk
        return out.view(*ids.shape[:-1], K + 1)

    @staticmethod
    def backward(ctx, grad_out):
        logits, ids, out = ctx.saved_tensors
        V, K = logits.shape[-1], ids.shape[-1]
        flat, fid = logits.reshape(-1, V), ids.reshape(-1, K)
        g = grad_out.reshape(-1, K + 1).float()
        floored = out[:, K] <= math.log(TAIL_FLOOR)  # a floored tail has no gradient (as clamp)
        grad = torch.empty_like(flat)
        for s in range(0, flat.shape[0], ctx.chunk):
            e = s + ctx.chunk
            z = flat[s:e].float() / ctx.temperature
            p = torch.softmax(z, -1)
            gk, gt = g[s:e, :K], torch.where(floored[s:e, None], 0.0, g[s:e, K:])
            gz = -p * (gk.sum(-1, keepdim=True) + gt)
            if bool(gt.any()):  # token log-probs alone (token_logprobs) need no tail gradient
                gz += gt * torch.nan_to_num(torch.softmax(z.scatter(-1, fid[s:e], -math.inf), -1), nan=0.0)
            gz.scatter_add_(-1, fid[s:e], gk)
            grad[s:e] = (gz / ctx.temperature).to(grad.dtype)
        return grad.view_as(logits), None, None, None


def topk_logprobs(logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0,
                  chunk: int | None = None) -> torch.Tensor:
    """``[log p(ids), log(1 - sum p(ids))]`` under ``softmax(logits / temperature)``:
    ``[B, T, V], [B, T, K] -> [B, T, K + 1]``, differentiable, in chunks of positions."""
    if ids.shape[:-1] != logits.shape[:-1]:
        raise ValueError(f"ids {tuple(ids.shape)} must index the positions of logits {tuple(logits.shape)}")
    return _TopKLogProbs.apply(logits, ids, temperature, auto_chunk(logits.shape[-1], chunk))


@dataclass
class TeacherStats:
    """What the loss needs from the teacher, ``[B, T, ...]``: its log-probs at the student's
    top-K ids plus the tail bucket, and its full-vocabulary entropy."""

    logp: torch.Tensor  # [B, T, K + 1]
    entropy: torch.Tensor  # [B, T]

    def rows(self, index: torch.Tensor) -> "TeacherStats":
        return TeacherStats(self.logp[index], self.entropy[index])


@torch.no_grad()
def teacher_stats(hidden: torch.Tensor, head, ids: torch.Tensor, temperature: float = 1.0,
                  chunk: int | None = None) -> TeacherStats:
    """The teacher's ``TeacherStats`` from its final hidden states ``[B, T, H]`` and output
    layer ``head`` (hidden -> logits), a chunk of positions at a time: no ``[B, T, V]`` tensor."""
    B, T, H = hidden.shape
    if ids.dim() != 3 or ids.shape[:2] != (B, T):
        raise ValueError(f"top-K ids {tuple(ids.shape)} must be [B, T, K] for the teacher's positions {(B, T)}")
    K = ids.shape[-1]
    flat_h, fid = hidden.reshape(-1, H), ids.reshape(-1, K)
    logp = torch.empty(B * T, K + 1, device=hidden.device)
    entropy = torch.empty(B * T, device=hidden.device)
    chunk = auto_chunk(head.weight.shape[0] if hasattr(head, "weight") else CHUNK_ELEMENTS, chunk)
    for s in range(0, B * T, chunk):
        z = head(flat_h[s : s + chunk]).float() / temperature
        logp[s : s + chunk], lse = _topk_and_tail(z, fid[s : s + chunk])
        entropy[s : s + chunk] = lse.squeeze(-1) - (torch.softmax(z, -1) * z).sum(-1)
    return TeacherStats(logp.view(B, T, K + 1), entropy.view(B, T))


def distillation_loss_topk(student_logp: torch.Tensor, teacher_logp: torch.Tensor, alpha: float = 0.5,
                           add_tail: bool = True) -> torch.Tensor:
    """``distillation_loss`` from the ``[B, T, K + 1]`` outputs of ``topk_logprobs`` and
    ``teacher_stats``: the same numbers, without the full vocabulary."""
    if not add_tail:
        student_logp, teacher_logp = student_logp[..., :-1], teacher_logp[..., :-1]
        student_logp = student_logp - torch.logsumexp(student_logp, -1, keepdim=True)
        teacher_logp = teacher_logp - torch.logsumexp(teacher_logp, -1, keepdim=True)
    return generalized_jsd(student_logp, teacher_logp, alpha)


# --------------------------------------------------------------------------------------------
# 5. Entropy-aware weights (SPEC section 5)
# --------------------------------------------------------------------------------------------


def teacher_entropy(teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``H_t = -sum_v q_t(v) log q_t(v)`` over the full vocabulary, ``[B, T]``, no gradient."""
    logq = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    return -(logq.exp() * logq).sum(-1)


def topk_tail_entropy(logp_topk_tail: torch.Tensor) -> torch.Tensor:
    """Entropy of the teacher's top-K + tail distribution (``[..., K+1]`` log-probs, as
    ``topk_logprobs`` gives them), ``[...]``: the third-party verl forks' choice of ``H`` for the
    weights (``method.entropy_source: topk_tail``); ours is the full vocabulary."""
    logp = logp_topk_tail.float()
    return -(logp.exp() * logp).sum(-1)


def mix_logits(reference_logits: torch.Tensor, student_logits: torch.Tensor, lam: float) -> torch.Tensor:
    """A "trust-region" teacher's logits, ``lam * reference + (1 - lam) * student`` (both on the
    teacher's input; ``method.teacher: mix``, ``lam = method.teacher_mix``)."""
    return lam * reference_logits + (1.0 - lam) * student_logits


def entropy_weight_sum(entropy: torch.Tensor, mask: torch.Tensor, beta: float = 1.0) -> tuple[torch.Tensor,
                                                                                              torch.Tensor]:
    """``(sum of exp(-beta * H) over mask, number of masked tokens)``: the two numbers a caller
    adds up over micro-batches and ranks to form the step-wide normaliser."""
    mask = mask.float()
    return (torch.exp(-beta * entropy.detach().float()) * mask).sum(), mask.sum()


def entropy_weights(
    entropy: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 1.0,
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Teacher-confidence weights (SPEC section 5), constants, ``[B, T]``::

        w~ = exp(-beta * H);   w = w~ / mean(w~ over mask);   0 outside mask

    ``normalizer`` replaces ``mean(w~ over mask)``: pass the mean over the whole step (every
    micro-batch and rank, see ``entropy_weight_sum``) so that micro-batching changes nothing.
    ``beta = 0`` gives 1 on every masked token.
    """
    mask = mask.float()
    raw = torch.exp(-beta * entropy.detach().float()) * mask
    if normalizer is None:
        count = mask.sum()
        if count == 0:
            return torch.zeros_like(raw)
        normalizer = raw.sum() / count
    return raw / normalizer


# --------------------------------------------------------------------------------------------
# 6. The objective (SPEC section 6)
# --------------------------------------------------------------------------------------------


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log p(tokens)`` under ``softmax(logits / temperature)``: ``[B, T, V], [B, T] -> [B, T]``,
    a chunk of positions at a time (no ``[B, T, V]`` log-softmax is kept for the backward)."""
    return topk_logprobs(logits, tokens.unsqueeze(-1), temperature)[..., 0]


@dataclass
class LossConfig:
    """Loss hyperparameters (SPEC sections 3-5; defaults are the paper's)."""

    eps_low: float = 0.2
    eps_high: float = 0.28
    dual_clip: float | None = 3.0
    is_clip: float = 2.0
    topk: int | None = 100
    alpha: float = 0.5
    add_tail: bool = True
    temperature: float = 1.0
    beta: float = 1.0
    loss_agg: str = "token_mean"  # token_mean | seq_mean_token_mean (see srpo_objective)
    entropy_source: str = "full"  # full | topk_tail: the distribution whose entropy sets the weights


def srpo_objective(
    *,
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    routing: Routing,
    num_tokens: float | torch.Tensor,
    cfg: LossConfig = LossConfig(),
    student_logits: torch.Tensor | None = None,
    teacher_logits: torch.Tensor | None = None,
    weight_normalizer: float | torch.Tensor | None = None,
    logp_rollout: torch.Tensor | None = None,
    num_sequences: float | torch.Tensor | None = None,
    teacher: TeacherStats | None = None,
    topk_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One micro-batch's share of the SPEC section 6 loss::

        L = ( sum_{GRPO tokens} g_i * l_grpo + sum_{SDPO tokens} s_i * w * rho * l_sdpo ) / N

    with ``g_i, s_i`` the routing coefficients, ``w`` the entropy weights (``cfg.beta``; the
    mean in their normaliser is ``weight_normalizer`` when given, else this micro-batch's),
    ``rho = min(exp(logp - logp_old), is_clip) * tis`` the detached importance factor and
    ``N = num_tokens`` the number of valid response tokens of the whole update (all micro-batches
    and ranks). Summing the returned losses over micro-batches gives the loss of the batch.

    ``teacher_logits`` only need meaningful rows where ``routing.to_sdpo`` (others are ignored);
    they may be ``None`` when no sample of the micro-batch is distilled. The memory-lean form
    passes ``teacher`` (``teacher_stats`` at the student's top-K ids ``topk_ids``) instead, for
    ``cfg.topk`` set: the same loss, with no ``[B, T, V]`` teacher tensor.
    ``logp_rollout`` (the rollout engine's log-probs) adds the truncated importance weight
    ``min(exp(logp_old - logp_rollout), is_clip)`` to both branches.

    ``cfg.loss_agg``: ``token_mean`` is the formula above (SPEC section 6). ``seq_mean_token_mean``
    is the SDPO authors' effective objective (verl with micro-batches of one sequence, a token
    mean each, scaled by 1/gradient-accumulation): each sequence's token losses are averaged over
    its own length, then averaged over the ``num_sequences`` sequences of the update::

        L = (1/S) sum_i (1/|y_i|) sum_t (g_i l_grpo + s_i w rho l_sdpo)_it

    Returns ``(loss, metrics)``; metrics are sums and counts (keys ending in ``_sum`` or
    ``_count``) so the caller can add them over micro-batches before dividing. The loss sums in
    the metrics are unscaled token sums under either aggregation.
    """
    mask = mask.float()
    if cfg.loss_agg == "token_mean":
        row_scale, denominator = torch.ones(mask.shape[0], 1, device=mask.device), num_tokens
    elif cfg.loss_agg == "seq_mean_token_mean":
        if num_sequences is None:
            raise ValueError("loss_agg=seq_mean_token_mean needs num_sequences (sequences in the update)")
        row_scale, denominator = 1.0 / mask.sum(1, keepdim=True).clamp(min=1), num_sequences
    else:
        raise ValueError(f"loss_agg must be one of {LOSS_AGGREGATIONS}, got {cfg.loss_agg!r}")
    tis = None if logp_rollout is None else truncated_is_weight(logp_old, logp_rollout, cfg.is_clip)

    grpo_tok = routing.grpo_coef[:, None].to(mask) * mask
    l_grpo = policy_gradient_loss(logp, logp_old, advantages, cfg.eps_low, cfg.eps_high, cfg.dual_clip, tis)
    grpo_sum = (l_grpo * grpo_tok).sum()
    total = (l_grpo * grpo_tok * row_scale).sum()

    sdpo_rows = routing.sdpo_coef > 0
    # metrics stay on the device until one transfer at the end (one host sync, not one per value)
    values = {
        "tokens_count": mask.sum(),
        "grpo_tokens_count": (mask * (routing.grpo_coef[:, None].to(mask) > 0)).sum(),
        "grpo_loss_sum": grpo_sum.detach(),
    }
    metrics = {"sdpo_tokens_count": 0.0, "sdpo_loss_sum": 0.0, "teacher_entropy_sum": 0.0, "weight_sum": 0.0,
               "raw_weight_sum": 0.0,
               "weight_sq_sum": 0.0, "weight_min": float("inf"), "weight_max": float("-inf")}
    rows = torch.nonzero(sdpo_rows).flatten()
    if len(rows):
        smask = mask[rows]
        l_sdpo, entropy = _distillation_terms(rows, mask, cfg, student_logits, teacher_logits, teacher, topk_ids)
        weights = entropy_weights(entropy, smask, cfg.beta, weight_normalizer)
        rho = truncated_is_weight(logp[rows], logp_old[rows], cfg.is_clip)
        if tis is not None:
            rho = rho * tis[rows]
        per_token = routing.sdpo_coef[rows][:, None].to(mask) * weights * rho * l_sdpo * smask
        total = total + (per_token * row_scale[rows]).sum()
        valid = smask > 0
        w = weights.detach()
        values.update(
            sdpo_tokens_count=smask.sum(),
            sdpo_loss_sum=per_token.detach().sum(),
            sdpo_divergence_sum=(l_sdpo.detach() * smask).sum(),
            teacher_entropy_sum=(entropy * smask).sum(),
            weight_sum=(w * valid).sum(),
            weight_sq_sum=(w**2 * valid).sum(),
            raw_weight_sum=(torch.exp(-cfg.beta * entropy.detach().float()) * valid).sum(),  # before normalising
            weight_min=torch.where(valid, w, torch.inf).min(),  # inf / -inf when no token is valid
            weight_max=torch.where(valid, w, -torch.inf).max(),
        )
    metrics.update(zip(values, torch.stack([v.float() for v in values.values()]).tolist()))
    return total / denominator, metrics


def _distillation_terms(rows, mask, cfg: LossConfig, student_logits, teacher_logits, teacher: TeacherStats | None,
                        topk_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """The distilled ``rows``' per-token divergence and teacher entropy, ``[R, T]`` each, from the
    teacher's full logits or (memory-lean) its ``TeacherStats`` at the student's ``topk_ids``."""
    if student_logits is None or (teacher_logits is None and teacher is None):
        raise ValueError("samples are routed to SDPO but the student's logits or the teacher's were not given")
    for name, x in (("student_logits", student_logits), ("teacher_logits", teacher_logits), ("topk_ids", topk_ids),
                    ("teacher.logp", None if teacher is None else teacher.logp)):
        if x is not None and tuple(x.shape[:2]) != tuple(mask.shape):
            raise ValueError(f"{name} {tuple(x.shape)} does not cover the mask's rows and positions "
                             f"{tuple(mask.shape)}")
    if teacher is not None:
        if topk_ids is None or cfg.topk is None:
            raise ValueError("teacher stats need the student's top-K ids (and method.topk set)")
        student_topk = topk_logprobs(student_logits[rows], topk_ids[rows], cfg.temperature)
        l_sdpo = distillation_loss_topk(student_topk, teacher.logp[rows], cfg.alpha, cfg.add_tail)
        return l_sdpo, weight_entropy(cfg, student_logits[rows], teacher=teacher.rows(rows), topk_ids=topk_ids[rows])
    l_sdpo = distillation_loss(student_logits[rows], teacher_logits[rows], cfg.topk, cfg.alpha, cfg.add_tail,
                               cfg.temperature)
    return l_sdpo, weight_entropy(cfg, student_logits[rows], teacher_logits[rows])


def weight_entropy(cfg: LossConfig, student_logits: torch.Tensor | None = None,
                   teacher_logits: torch.Tensor | None = None,
                   teacher: TeacherStats | None = None, topk_ids: torch.Tensor | None = None) -> torch.Tensor:
    """``H`` of the entropy weights, ``[B, T]``, per ``cfg.entropy_source``: ``full``, the
    teacher's entropy over the whole vocabulary (ours, SPEC section 5); ``topk_tail``, over its
    top-K + tail distribution at the student's top-K ids (the verl forks')."""
    if cfg.entropy_source == "full":
        return teacher.entropy if teacher is not None else teacher_entropy(teacher_logits, cfg.temperature)
    if cfg.entropy_source != "topk_tail":
        raise ValueError(f"entropy_source must be one of {ENTROPY_SOURCES}, got {cfg.entropy_source!r}")
    if cfg.topk is None:
        raise ValueError("entropy_source=topk_tail needs method.topk")
    if teacher is not None:
        return topk_tail_entropy(teacher.logp)
    if topk_ids is None:
        topk_ids = student_logits.detach().topk(min(cfg.topk, student_logits.shape[-1]), dim=-1).indices
    return topk_tail_entropy(topk_logprobs(teacher_logits.detach(), topk_ids, cfg.temperature))
