"""Seeded property tests of ``update.micro_batch_loss`` and the weight normalisers (SPEC sections 3-6).

Every randomized test is parametrized by its ``seed``: ``make_case(seed)`` rebuilds the whole case
(shapes, ragged mask, rewards and groups, routing, loss config, micro-batch partition), and every
assertion message starts with ``case.describe()``. To reproduce a failure::

    from tests.unit.test_micro_batch_loss import make_case
    case = make_case(SEED); print(case.describe())

The library computes in float32 whatever the input dtype (``token_logprobs`` and the divergence
cast to fp32), so the float64 inputs here are compared at fp32 tolerances.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest
import torch

from srpo_ref import losses
from srpo_ref.record import accumulate_metrics
from srpo_ref.normalizers import MicroBatchMean, UpdateMean, mean_raw_weight, normalizer
from srpo_ref.update import TeacherOutputs, lean_teacher, micro_batch_loss

SEEDS = list(range(40))
REFERENCE_SEEDS = list(range(24))
RTOL, ATOL = 2e-5, 2e-6  # two fp32 computations of the same numbers, summed in another order
REF_RTOL, REF_ATOL = 1e-4, 2e-5  # fp32 library against the float64 reference


def all_sum(t):  # a single rank: the sum over ranks is the value itself
    return t


def raising_all_sum(t):
    raise AssertionError("all_sum must not be called")


# ------------------------------------------------------------------------------------------------
# The random case
# ------------------------------------------------------------------------------------------------


@dataclass
class Case:
    seed: int
    B: int
    T: int
    V: int
    lengths: list[int]
    student: torch.Tensor  # [B, T, V] float64 (a fresh leaf is made from it per computation)
    teacher: torch.Tensor  # [B, T, V] float64
    ids: torch.Tensor  # [B, T] response tokens
    mask: torch.Tensor  # [B, T] bool or float64
    rewards: torch.Tensor
    group_ids: torch.Tensor
    method: str
    routing: losses.Routing
    advantages: torch.Tensor
    cfg: losses.LossConfig
    logp_old: torch.Tensor | None
    logp_rollout: torch.Tensor | None
    parts: list[list[int]]  # the micro-batch partition of the rows
    trim: bool  # micro-batches cut to their longest row (as make_batch pads them)

    @property
    def num_tokens(self) -> float:
        return float(max(sum(self.lengths), 1))  # as plan_update: at least 1

    @property
    def distilled(self) -> list[int]:
        return [i for i in range(self.B) if self.routing.sdpo_coef[i] > 0]

    @property
    def policy(self) -> list[int]:  # plan_update's policy-gradient rows
        return [i for i in range(self.B) if self.routing.sdpo_coef[i] <= 0 and self.routing.grpo_coef[i] > 0]

    def describe(self) -> str:
        return (f"seed={self.seed} B={self.B} T={self.T} V={self.V} lengths={self.lengths} method={self.method} "
                f"rewards={self.rewards.tolist()} groups={self.group_ids.tolist()} distilled={self.distilled} "
                f"parts={self.parts} trim={self.trim} off_policy={self.logp_old is not None} "
                f"rollout={self.logp_rollout is not None} mask_dtype={self.mask.dtype} cfg={self.cfg}")


def true_logp(student: torch.Tensor, ids: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.log_softmax(student / temperature, -1).gather(-1, ids[..., None])[..., 0]


def make_case(seed: int, **over) -> Case:
    """A random case; ``over`` fixes fields (``method``, ``topk``, ``alpha``, ``loss_agg``, ``beta``,
    ``off_policy``, ``old_noise``, ``dual_clip``, ``B``, ``T``, ``V``, ``entropy_source``, ``add_tail``;
    ``singletons``: one row per micro-batch)."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    B = over.get("B", rng.randint(1, 9))
    T = over.get("T", rng.randint(1, 7))
    V = over.get("V", rng.randint(5, 40))
    lengths = [rng.randint(0, T) for _ in range(B)]
    if B > 1:  # ragged: one row with no valid token, one full
        zero, full = rng.sample(range(B), 2)
        lengths[zero], lengths[full] = 0, T
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    mask = mask if rng.random() < 0.3 else mask.double()
    scale = rng.choice([0.5, 1.0, 2.5])
    student = torch.randn(B, T, V, generator=gen, dtype=torch.float64) * scale
    teacher = 0.5 * student + torch.randn(B, T, V, generator=gen, dtype=torch.float64) * scale
    ids = torch.randint(V, (B, T), generator=gen)
    rewards = torch.randint(2, (B,), generator=gen).float()
    n_groups = rng.randint(1, max(1, B // 2))  # groups of several rollouts: siblings to learn from
    group_ids = torch.randint(n_groups, (B,), generator=gen) * 7 + 3  # arbitrary labels
    method = over.get("method", rng.choice(["srpo", "srpo", "sdpo", "sdpo", "grpo"]))
    routing = losses.route_samples(rewards, group_ids, method, generator=gen)
    advantages = losses.group_advantages(rewards, group_ids, std_normalize=rng.random() < 0.3)
    topk = over.get("topk", rng.choice([None, 1, 3, V - 1, V, V + 5]))
    entropy_source = over.get("entropy_source", "topk_tail" if topk is not None and rng.random() < 0.3 else "full")
    cfg = losses.LossConfig(
        eps_low=rng.uniform(0.1, 0.3), eps_high=rng.uniform(0.2, 0.4),
        dual_clip=over.get("dual_clip", rng.choice([None, 3.0, 1.5])),
        is_clip=rng.choice([2.0, 1.5]), topk=topk, alpha=over.get("alpha", rng.choice([0.0, 0.3, 0.5, 1.0])),
        add_tail=over.get("add_tail", rng.random() < 0.7), temperature=rng.choice([1.0, 0.7, 1.3]),
        beta=over.get("beta", rng.choice([0.0, 0.5, 1.0, 2.0])),
        loss_agg=over.get("loss_agg", rng.choice(losses.LOSS_AGGREGATIONS)), entropy_source=entropy_source,
    )
    if rng.random() < 0.5:  # non-distilled rows' teacher logits: zeros, as the trainer places them
        keep = (routing.sdpo_coef > 0).double()[:, None, None]
        teacher = teacher * keep
    logp_old = logp_rollout = None
    if over.get("off_policy", rng.random() < 0.5):
        exact = true_logp(student, ids, cfg.temperature)
        noise = over.get("old_noise", rng.choice([0.3, 1.5]))
        logp_old = exact + torch.randn(B, T, generator=gen, dtype=torch.float64) * noise
        if rng.random() < 0.5:
            logp_rollout = logp_old + torch.randn(B, T, generator=gen, dtype=torch.float64) * 0.5
    # the partition: random order and sizes, often with a micro-batch of non-distilled rows only
    sdpo = [i for i in range(B) if routing.sdpo_coef[i] > 0]
    other = [i for i in range(B) if i not in sdpo]
    if sdpo and other and rng.random() < 0.6:
        rng.shuffle(other)
        cut = rng.randint(1, len(other))
        parts = [other[:cut]] + split(other[cut:] + sdpo, rng)
    else:
        parts = split(list(range(B)), rng)
    if over.get("singletons"):  # every row its own micro-batch
        parts = [[i] for i in range(B)]
    rng.shuffle(parts)
    return Case(seed, B, T, V, lengths, student, teacher, ids, mask, rewards, group_ids, method, routing,
                advantages, cfg, logp_old, logp_rollout, parts, rng.random() < 0.5)


def split(rows: list[int], rng: random.Random) -> list[list[int]]:
    """``rows`` shuffled and cut into micro-batches of random sizes (none empty)."""
    rows = list(rows)
    rng.shuffle(rows)
    parts = []
    while rows:
        k = rng.randint(1, len(rows) if rng.random() < 0.3 else max(1, len(rows) // 2))
        parts.append(rows[:k])
        rows = rows[k:]
    return parts


def distilling_seeds(n: int, rows: int = 1, **over) -> list[int]:
    """The first ``n`` seeds whose case distils valid tokens in at least ``rows`` rows."""
    def distilled_rows(case):
        return sum(1 for i in case.distilled if case.lengths[i])
    seeds = []
    for s in range(1000):
        if len(seeds) == n:
            break
        if distilled_rows(make_case(s, **over)) >= rows:
            seeds.append(s)
    return seeds


# Cases where the weight normaliser matters: distilled tokens of several rows, each row its own
# micro-batch, entropy weights on (a micro-batch's own mean differs from the update's).
SPREAD_SRPO = {"method": "srpo", "beta": 1.0, "singletons": True}
SPREAD_SDPO = {"method": "sdpo", "beta": 2.0, "singletons": True}
LAYOUT_CASES = (
    [pytest.param(s, {}, id=f"random-{s}") for s in SEEDS]
    + [pytest.param(s, SPREAD_SRPO, id=f"spread-srpo-{s}") for s in distilling_seeds(6, 2, **SPREAD_SRPO)]
    + [pytest.param(s, SPREAD_SDPO, id=f"spread-sdpo-{s}") for s in distilling_seeds(6, 2, **SPREAD_SDPO)]
)


# ------------------------------------------------------------------------------------------------
# Running layouts through micro_batch_loss
# ------------------------------------------------------------------------------------------------


def mb_kwargs(case: Case, idx: list[int], student: torch.Tensor, lean: bool = False) -> dict:
    """``micro_batch_loss``'s arguments for the micro-batch of rows ``idx`` (the whole update's N and S)."""
    ix = torch.tensor(idx, dtype=torch.long)
    Tm = max(1, max(case.lengths[i] for i in idx)) if case.trim else case.T
    s = student[ix, :Tm]
    teacher = None
    if bool((case.routing.sdpo_coef[ix] > 0).any()):
        tl = case.teacher[ix, :Tm]
        teacher = lean_teacher(tl, s, case.cfg) if lean else TeacherOutputs(logits=tl)
    return dict(
        student_logits=s, response_ids=case.ids[ix, :Tm], mask=case.mask[ix, :Tm], advantages=case.advantages[ix],
        routing=case.routing.select(ix), cfg=case.cfg, num_tokens=case.num_tokens, num_sequences=float(case.B),
        teacher=teacher, logp_old=None if case.logp_old is None else case.logp_old[ix, :Tm],
        logp_rollout=None if case.logp_rollout is None else case.logp_rollout[ix, :Tm],
    )


def raw_weight_sums(case: Case, parts: list[list[int]], student: torch.Tensor, lean: bool = False):
    """The update's raw-weight sum and distilled-token count, added over micro-batches (as the
    trainer's one-pass normaliser and TRL's pre-pass form them)."""
    raw, count = 0.0, 0.0
    for idx in parts:
        kw = mb_kwargs(case, idx, student, lean)
        t = kw["teacher"]
        if t is None:
            continue
        entropy = losses.weight_entropy(case.cfg, kw["student_logits"], t.logits, t.stats, t.topk_ids)
        distilled_mask = kw["mask"].float() * (kw["routing"].sdpo_coef > 0).float()[:, None]
        r, c = losses.entropy_weight_sum(entropy, distilled_mask, case.cfg.beta)
        raw, count = raw + float(r), count + float(c)
    return raw, count


def accumulate(into: dict, m: dict) -> dict:
    accumulate_metrics(into, m)  # the trainer's own sum of micro-batch metrics (min/max for the extremes)
    return into


def run_parts(case: Case, parts: list[list[int]], normaliser, lean: bool = False):
    """Sum of the micro-batches' losses, the gradient w.r.t. the student's logits, summed metrics."""
    student = case.student.clone().requires_grad_(True)
    total, metrics = torch.zeros((), dtype=torch.float32), {}
    for idx in parts:
        loss, m = micro_batch_loss(**mb_kwargs(case, idx, student, lean), weight_normalizer=normaliser)
        total = total + loss
        accumulate(metrics, m)
    if total.requires_grad:  # no micro-batch at all (an empty pass of the deferred layout)
        total.backward()
    grad = student.grad if student.grad is not None else torch.zeros_like(student)
    return total.detach().double(), grad, metrics


def single(case: Case, normaliser=None, lean: bool = False):
    return run_parts(case, [list(range(case.B))], normaliser, lean)


def close(actual, expected, case: Case, what: str, rtol=RTOL, atol=ATOL):
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol * max(1.0, scale),
                               msg=lambda m: f"{what}: {case.describe()}\n{m}")


def close_metrics(actual: dict, expected: dict, case: Case, keys=None):
    keys = keys or [k for k in expected if k.endswith(("_sum", "_count"))]
    for k in keys:
        close(actual.get(k, 0.0), expected.get(k, 0.0), case, f"metric {k}")
    for k in ("weight_min", "weight_max"):
        if math.isfinite(expected.get(k, math.inf)):
            close(actual[k], expected[k], case, f"metric {k}")


def assert_finite(loss, grad, what: str):
    assert torch.isfinite(loss).all(), f"{what}: loss {loss}"
    assert torch.isfinite(grad).all(), f"{what}: gradient not finite"


# ------------------------------------------------------------------------------------------------
# 1. Micro-batching changes nothing under the update-wide normaliser
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed,over", LAYOUT_CASES)
def test_micro_batches_add_up_to_the_single_batch(seed, over):
    case = make_case(seed, **over)
    one_loss, one_grad, one_m = single(case)  # its own mean = the update's mean
    norm = UpdateMean().update_mean(*raw_weight_sums(case, case.parts, case.student), all_sum=all_sum)
    loss, grad, m = run_parts(case, case.parts, norm)
    assert torch.isfinite(one_loss) and torch.isfinite(one_grad).all(), case.describe()
    close(loss, one_loss, case, "loss")
    close(grad, one_grad, case, "gradient")
    close_metrics(m, one_m, case)
    # the single batch with the update mean passed explicitly is the same loss as with its own mean
    whole = UpdateMean().update_mean(*raw_weight_sums(case, [list(range(case.B))], case.student), all_sum=all_sum)
    close(whole, norm, case, "update mean of one micro-batch vs of the partition")
    close(single(case, whole)[0], one_loss, case, "single batch, explicit update mean")


@pytest.mark.parametrize("seed", SEEDS[:10])
def test_row_order_and_padding_change_nothing(seed):
    """The micro-batch's row order and extra right padding (a longer ``T``) leave loss and grads."""
    case = make_case(seed)
    rng = random.Random(1000 + seed)
    perm = list(range(case.B))
    rng.shuffle(perm)
    one_loss, one_grad, _ = single(case)
    pad = rng.randint(1, 3)
    padded = make_case(seed)
    padded.student = torch.cat([case.student, torch.randn(case.B, pad, case.V, dtype=torch.float64)], 1)
    padded.teacher = torch.cat([case.teacher, torch.randn(case.B, pad, case.V, dtype=torch.float64)], 1)
    padded.ids = torch.cat([case.ids, torch.zeros(case.B, pad, dtype=torch.long)], 1)
    padded.mask = torch.cat([case.mask, torch.zeros(case.B, pad, dtype=case.mask.dtype)], 1)
    for name in ("logp_old", "logp_rollout"):
        x = getattr(case, name)
        if x is not None:
            setattr(padded, name, torch.cat([x, torch.zeros(case.B, pad, dtype=x.dtype)], 1))
    padded.T, padded.trim = case.T + pad, False
    loss, grad, _ = run_parts(padded, [perm], None)
    close(loss, one_loss, case, f"loss, rows {perm}, +{pad} padded positions")
    close(grad[:, : case.T], one_grad, case, "gradient")
    assert not grad[:, case.T:].any(), f"gradient on padding: {case.describe()}"


# ------------------------------------------------------------------------------------------------
# 2. The deferred (two-pass) layout gives the same gradient
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed,over", LAYOUT_CASES)
def test_deferred_layout_equals_single_batch(seed, over):
    case = make_case(seed, **over)
    rng = random.Random(2000 + seed)
    strategy = normalizer(rng.choice(["step", "update"]))
    one_loss, one_grad, one_m = single(case)
    distilled_parts, policy_parts = split(case.distilled, rng), split(case.policy, rng)

    d_loss, d_grad, d_m = run_parts(case, distilled_parts, strategy.deferred_pass_normaliser())
    divisor = strategy.gradient_divisor(d_m.get("weight_sum", 0.0), d_m.get("sdpo_tokens_count", 0.0), all_sum)
    raw, count = raw_weight_sums(case, distilled_parts, case.student)
    close(divisor, mean_raw_weight(raw, count, all_sum), case, "divisor from the metrics vs from the raw weights")
    p_loss, p_grad, p_m = run_parts(case, policy_parts, None)

    close(d_loss / divisor + p_loss, one_loss, case, "loss")
    close(d_grad / divisor + p_grad, one_grad, case, "gradient")
    for k in ("sdpo_loss_sum", "weight_sum"):
        close(d_m.get(k, 0.0) / divisor, one_m.get(k, 0.0), case, f"metric {k} divided")
    close(d_m.get("weight_sq_sum", 0.0) / divisor**2, one_m.get("weight_sq_sum", 0.0), case, "weight_sq_sum")
    # the rows of neither pass (sdpo without a teacher) really contribute nothing
    close(d_m.get("grpo_loss_sum", 0.0) + p_m.get("grpo_loss_sum", 0.0), one_m["grpo_loss_sum"], case, "grpo sum")


# ------------------------------------------------------------------------------------------------
# 3. The strategies
# ------------------------------------------------------------------------------------------------


def test_normalizer_names():
    assert isinstance(normalizer("step"), UpdateMean) and isinstance(normalizer("update"), UpdateMean)
    assert isinstance(normalizer("micro_batch"), MicroBatchMean)
    with pytest.raises(ValueError, match="weight_normalizer"):
        normalizer("batch")


def test_micro_batch_mean_never_communicates():
    s = MicroBatchMean()
    assert s.needs_raw_weights is False
    assert s.update_mean(3.0, 2.0, raising_all_sum) is None
    assert s.update_mean(0.0, 0.0, raising_all_sum) is None
    assert s.deferred_pass_normaliser() is None
    assert s.gradient_divisor(3.0, 2.0, raising_all_sum) == 1.0
    assert s.gradient_divisor(0.0, 0.0, raising_all_sum) == 1.0


def test_update_mean_strategy():
    s, calls = UpdateMean(), []

    def two_ranks(t):  # another rank holding raw sum 1.0 over 3 tokens
        calls.append(t.clone())
        return t + torch.tensor([1.0, 3.0], dtype=t.dtype)

    assert s.needs_raw_weights is True and s.deferred_pass_normaliser() == 1.0
    assert s.update_mean(3.0, 2.0, two_ranks) == pytest.approx(4.0 / 5.0)
    assert s.gradient_divisor(torch.tensor(3.0), torch.tensor(2.0), two_ranks) == pytest.approx(4.0 / 5.0)
    assert len(calls) == 2 and calls[0].dtype == torch.float64
    assert s.update_mean(0.0, 0.0, all_sum) == 1.0  # nothing distilled anywhere
    assert s.gradient_divisor(0.0, 0.0, all_sum) == 1.0
    assert mean_raw_weight(0.0, 0.0, all_sum) == 1.0


@pytest.mark.parametrize("seed", SEEDS[:12])
def test_micro_batch_mean_is_each_micro_batchs_own_mean(seed):
    """``MicroBatchMean``'s ``None`` is each micro-batch's own mean of raw weights."""
    case = make_case(seed, method="srpo", beta=1.0)
    student = case.student.clone()
    for idx in case.parts:
        own = mean_raw_weight(*raw_weight_sums(case, [idx], student), all_sum)
        none = micro_batch_loss(**mb_kwargs(case, idx, student), weight_normalizer=MicroBatchMean().update_mean(
            0.0, 0.0, raising_all_sum))[0]
        explicit = micro_batch_loss(**mb_kwargs(case, idx, student), weight_normalizer=own)[0]
        close(none, explicit, case, f"micro-batch {idx}")


# ------------------------------------------------------------------------------------------------
# 4. An independent computation of the SPEC loss (plain float64 loops)
# ------------------------------------------------------------------------------------------------


def ref_jsd(s_logp: torch.Tensor, t_logp: torch.Tensor, alpha: float) -> torch.Tensor:
    p, q = s_logp.exp(), t_logp.exp()
    if alpha == 0.0:
        return (q * (t_logp - s_logp)).sum()
    if alpha == 1.0:
        return (p * (s_logp - t_logp)).sum()
    log_m = torch.log((1 - alpha) * p + alpha * q)
    return (1 - alpha) * (p * (s_logp - log_m)).sum() + alpha * (q * (t_logp - log_m)).sum()


def ref_topk_tail(logp: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``[log p(ids), log(sum of p outside ids) floored at TAIL_FLOOR]``."""
    outside = torch.ones_like(logp, dtype=torch.bool)
    outside[ids] = False
    tail = torch.log(torch.clamp(logp[outside].exp().sum(), min=losses.TAIL_FLOOR))
    return torch.cat([logp[ids], tail[None]])


def reference_loss(case: Case, student: torch.Tensor) -> torch.Tensor:
    """SPEC section 6, token by token, from the docstrings of ``policy_gradient_loss``,
    ``distillation_loss``, ``entropy_weights`` and ``srpo_objective``."""
    cfg, B, V = case.cfg, case.B, case.V
    s_all = torch.log_softmax(student / cfg.temperature, -1)
    t_all = torch.log_softmax(case.teacher / cfg.temperature, -1)
    K = None if cfg.topk is None else min(cfg.topk, V)

    def top_ids(i, t):
        return torch.argsort(student[i, t].detach(), descending=True)[:K]

    def entropy(i, t):
        if cfg.entropy_source == "full":
            q = t_all[i, t]
        else:
            q = ref_topk_tail(t_all[i, t], top_ids(i, t))
        return -(q.exp() * q).sum()

    def divergence(i, t):
        s, q = s_all[i, t], t_all[i, t]
        if K is not None:
            ids = top_ids(i, t)
            if cfg.add_tail:
                s, q = ref_topk_tail(s, ids), ref_topk_tail(q, ids)
            else:
                s, q = s[ids] - torch.logsumexp(s[ids], 0), q[ids] - torch.logsumexp(q[ids], 0)
        return ref_jsd(s, q, cfg.alpha)

    raw = {(i, t): math.exp(-cfg.beta * float(entropy(i, t)))
           for i in range(B) if case.routing.sdpo_coef[i] > 0 for t in range(case.lengths[i])}
    mean_raw = sum(raw.values()) / len(raw) if raw else 1.0

    total = torch.zeros((), dtype=torch.float64)
    for i in range(B):
        g, sd, A = float(case.routing.grpo_coef[i]), float(case.routing.sdpo_coef[i]), float(case.advantages[i])
        row_scale = 1.0 if cfg.loss_agg == "token_mean" else 1.0 / max(case.lengths[i], 1)
        for t in range(case.lengths[i]):
            lp = s_all[i, t, case.ids[i, t]]
            lo = lp.detach() if case.logp_old is None else case.logp_old[i, t]
            tis = 1.0
            if case.logp_rollout is not None:
                tis = min(math.exp(max(-20.0, min(20.0, float(lo - case.logp_rollout[i, t])))), cfg.is_clip)
            if g > 0:
                ratio = torch.exp(torch.clamp(lp - lo, -20.0, 20.0))
                loss = torch.maximum(-A * ratio, -A * torch.clamp(ratio, 1 - cfg.eps_low, 1 + cfg.eps_high))
                if cfg.dual_clip is not None and A < 0:
                    loss = torch.minimum(loss, torch.tensor(-cfg.dual_clip * A, dtype=torch.float64))
                total = total + row_scale * g * loss * tis
            if sd > 0:
                rho = min(math.exp(max(-20.0, min(20.0, float(lp.detach() - lo)))), cfg.is_clip) * tis
                w = raw[(i, t)] / mean_raw
                total = total + row_scale * sd * w * rho * divergence(i, t)
    return total / (case.num_tokens if cfg.loss_agg == "token_mean" else case.B)


GRPO_CLIPPED = {"method": "grpo", "off_policy": True, "old_noise": 1.5, "dual_clip": 1.5}  # ratios past both clips
FULL_VOCAB = {"method": "sdpo", "topk": None, "alpha": 0.5, "beta": 1.0}
TOP3_TAIL = {"method": "srpo", "topk": 3, "alpha": 0.5, "add_tail": True, "V": 12, "off_policy": True}
REFERENCE_CASES = (
    [pytest.param(s, {}, id=f"random-{s}") for s in REFERENCE_SEEDS]
    + [pytest.param(s, GRPO_CLIPPED, id=f"grpo-only-{s}") for s in range(8)]
    + [pytest.param(s, FULL_VOCAB, id=f"full-vocab-jsd-{s}") for s in distilling_seeds(6, **FULL_VOCAB)]
    + [pytest.param(s, TOP3_TAIL, id=f"srpo-top3-tail-{s}") for s in distilling_seeds(6, **TOP3_TAIL)]
)


@pytest.mark.parametrize("seed,over", REFERENCE_CASES)
def test_matches_an_independent_computation(seed, over):
    case = make_case(seed, **over)
    student = case.student.clone().requires_grad_(True)
    expected = reference_loss(case, student)
    exp_grad = torch.zeros_like(student)
    if expected.requires_grad:  # else no token trains (all masked or no coefficient)
        (exp_grad,) = torch.autograd.grad(expected, student)
    loss, grad, _ = single(case)
    close(loss, expected.detach(), case, "loss vs reference", REF_RTOL, REF_ATOL)
    close(grad, exp_grad, case, "gradient vs reference", REF_RTOL, REF_ATOL)
    loss_mb, grad_mb, _ = run_parts(case, case.parts, mean_raw_weight(*raw_weight_sums(case, case.parts, case.student),
                                                                      all_sum))
    close(loss_mb, expected.detach(), case, "micro-batched loss vs reference", REF_RTOL, REF_ATOL)


def test_reference_hand_numbers():
    """The reference itself on a hand-checkable case: one GRPO token, ratio 1, A = 0.5 -> loss -A / N."""
    case = make_case(0, B=1, T=1, V=5, method="grpo", off_policy=False, loss_agg="token_mean")
    case.lengths, case.mask = [1], torch.ones(1, 1)
    case.advantages = torch.tensor([0.5])
    assert float(reference_loss(case, case.student)) == pytest.approx(-0.5)
    assert float(single(case)[0]) == pytest.approx(-0.5)


# ------------------------------------------------------------------------------------------------
# 5. The memory-lean teacher gives the full teacher's loss
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_lean_teacher_equals_full_teacher(seed):
    rng = random.Random(3000 + seed)
    case = make_case(seed, method=rng.choice(["srpo", "sdpo"]), topk=rng.choice([1, 2, 4, 100]))
    full_loss, full_grad, full_m = single(case)
    lean_loss, lean_grad, lean_m = single(case, lean=True)
    close(lean_loss, full_loss, case, "loss")
    close(lean_grad, full_grad, case, "gradient")
    close_metrics(lean_m, full_m, case)
    norm = mean_raw_weight(*raw_weight_sums(case, case.parts, case.student, lean=True), all_sum)
    mb_loss, mb_grad, _ = run_parts(case, case.parts, norm, lean=True)
    close(mb_loss, full_loss, case, "lean, micro-batched")
    close(mb_grad, full_grad, case, "lean, micro-batched gradient")


def test_lean_teacher_without_topk_is_the_logits():
    t, s = torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    out = lean_teacher(t, s, losses.LossConfig(topk=None))
    assert out.logits is t and out.stats is None and out.topk_ids is None and out.present
    out = lean_teacher(t, s, losses.LossConfig(topk=50))  # K > V: the whole vocabulary, empty tail
    assert out.logits is None and out.topk_ids.shape == (2, 3, 7) and out.stats.logp.shape == (2, 3, 8)
    assert not TeacherOutputs().present


# ------------------------------------------------------------------------------------------------
# 6. Hostile inputs: finite, or a clear ValueError, never a silent NaN
# ------------------------------------------------------------------------------------------------


def finite_case(case: Case, lean: bool = False, normaliser=None):
    loss, grad, _ = run_parts(case, [list(range(case.B))], normaliser, lean)
    assert_finite(loss, grad, case.describe())
    return loss, grad


@pytest.mark.parametrize("seed", SEEDS[:12])
def test_all_rows_masked_out(seed):
    case = make_case(seed, method=random.Random(seed).choice(["srpo", "sdpo"]))
    case.lengths = [0] * case.B
    case.mask = torch.zeros_like(case.mask)
    assert case.num_tokens == 1.0  # the trainer's N for a step of empty responses
    norm = UpdateMean().update_mean(*raw_weight_sums(case, [list(range(case.B))], case.student), all_sum)
    assert norm == 1.0
    for n in (None, norm):
        loss, grad = finite_case(case, normaliser=n)
        assert float(loss) == 0.0 and not grad.any(), case.describe()


@pytest.mark.parametrize("seed", SEEDS[:12])
def test_nothing_distilled_needs_no_teacher(seed):
    case = make_case(seed, method="grpo")
    assert not case.distilled
    loss, grad, m = single(case)
    assert_finite(loss, grad, case.describe())
    assert m["sdpo_tokens_count"] == 0.0


def test_distilled_rows_without_teacher_raise():
    case = make_case(5, method="sdpo", B=6)
    case.routing.sdpo_coef[:] = 1.0
    student = case.student.clone()
    kw = mb_kwargs(case, list(range(case.B)), student)
    kw["teacher"] = None
    with pytest.raises(ValueError, match="routed to SDPO"):
        micro_batch_loss(**kw)
    kw["teacher"] = TeacherOutputs(logits=case.teacher[:, :1])  # teacher shorter than the micro-batch
    if case.T > 1:
        with pytest.raises(ValueError, match="does not cover"):
            micro_batch_loss(**kw)
    with pytest.raises(ValueError, match="num_sequences"):
        micro_batch_loss(**{**mb_kwargs(case, [0], student), "num_sequences": None,
                            "cfg": losses.LossConfig(loss_agg="seq_mean_token_mean")})


@pytest.mark.parametrize("seed", SEEDS[:16])
def test_huge_logits_stay_finite(seed):
    rng = random.Random(4000 + seed)
    case = make_case(seed, method=rng.choice(["srpo", "sdpo", "grpo"]), alpha=rng.choice([0.3, 0.5]))
    case.student, case.teacher = case.student * 1e4, case.teacher * 1e4
    if case.logp_old is not None:  # old log-probs far from the new ones: the ratio's clamp
        case.logp_old = true_logp(case.student, case.ids, case.cfg.temperature) + case.logp_old
        case.logp_rollout = None
    finite_case(case)
    if case.cfg.topk is not None:
        finite_case(case, lean=True)


def with_neg_inf(x: torch.Tensor, rows: list[int], entries: list[int], positions=None) -> torch.Tensor:
    x = x.clone()
    for i in rows:
        x[i, slice(None) if positions is None else positions, entries] = -math.inf
    return x


def inf_case(method="srpo", **over) -> tuple[Case, list[int]]:
    """A fixed case with distilled and GRPO rows whose responses never use vocabulary ids 0-2
    (the entries set to -inf)."""
    over = {"B": 6, "T": 4, "V": 10, "off_policy": False, "entropy_source": "full", **over}
    case = make_case(11, method=method, **over)
    case.rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    case.group_ids = torch.tensor([0, 0, 0, 1, 1, 1])
    gen = torch.Generator().manual_seed(0)
    case.routing = losses.route_samples(case.rewards, case.group_ids, method, generator=gen)
    case.advantages = losses.group_advantages(case.rewards, case.group_ids)
    case.ids = 3 + case.ids % (case.V - 3)
    case.lengths, case.mask = [4, 3, 2, 4, 1, 4], torch.arange(4)[None] < torch.tensor([4, 3, 2, 4, 1, 4])[:, None]
    case.parts = [list(range(6))]
    return case, [0, 1, 2]


def test_neg_inf_student_entries_on_policy_rows_are_finite():
    case, entries = inf_case("srpo", topk=3)
    assert case.policy and case.distilled
    case.student = with_neg_inf(case.student, case.policy, entries)
    finite_case(case)


@pytest.mark.parametrize("topk", [1, 3, 6])
@pytest.mark.parametrize("lean", [False, True])
def test_neg_inf_student_entries_outside_topk_are_finite(topk, lean):
    """-inf on 3 of 10 entries of the distilled rows: a top-K of at most 7 never picks them."""
    case, entries = inf_case("sdpo", topk=topk, alpha=0.5)
    case.student = with_neg_inf(case.student, case.distilled, entries)
    finite_case(case, lean=lean)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "student logits with -inf on some vocabulary entries of a distilled row give a NaN loss (and NaN "
    "gradients) whenever the divergence sees those entries (topk=None, or K >= the number of finite "
    "entries): losses._kl computes p * (log p - log m) with p = 0 and log p = -inf, 0 * -inf = NaN "
    "(alpha in (0, 1]; alpha = 0 gives +inf, the true KL(P_t || P_s))."))
@pytest.mark.parametrize("topk", [None, 10])
def test_neg_inf_student_entries_in_the_divergence(topk):
    case, entries = inf_case("sdpo", topk=topk, alpha=0.5)
    case.student = with_neg_inf(case.student, case.distilled, entries)
    finite_case(case)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "-inf student logits at a PADDED position (mask 0) of a distilled row, with the full-vocabulary "
    "divergence, still make the loss NaN: the per-token NaN is multiplied by the mask (NaN * 0 = NaN) "
    "instead of being selected away."))
def test_neg_inf_student_entries_at_padding_only():
    case, entries = inf_case("sdpo", topk=None, alpha=0.5)
    row = next(i for i in case.distilled if case.lengths[i] < case.T)
    case.student = with_neg_inf(case.student, [row], entries, positions=case.T - 1)
    finite_case(case)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "teacher logits with -inf on some vocabulary entries of a distilled row give a NaN loss (and NaN "
    "gradients), with or without top-K, full or lean teacher: losses.teacher_entropy is "
    "-(q * log q).sum() with q = 0, log q = -inf (and teacher_stats' lse - sum(softmax(z) * z) likewise), "
    "so the entropy weight exp(-beta H) is NaN even for beta = 0; no ValueError is raised."))
@pytest.mark.parametrize("topk,lean", [(None, False), (3, False), (3, True)])
def test_neg_inf_teacher_entries(topk, lean):
    case, entries = inf_case("sdpo", topk=topk, alpha=0.5, beta=0.0)
    case.teacher = with_neg_inf(case.teacher, case.distilled, entries)
    finite_case(case, lean=lean)


def test_neg_inf_teacher_entries_on_rows_not_distilled_are_ignored():
    case, entries = inf_case("srpo", topk=3, alpha=0.5)
    case.teacher = with_neg_inf(case.teacher, case.policy, entries)
    finite_case(case)
    finite_case(case, lean=True)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "a response token whose student logit is -inf (probability 0) gives a NaN loss on the on-policy "
    "path (logp_old=None): logp_old = logp.detach() = -inf and logp - logp_old = -inf - (-inf) = NaN, "
    "which the +-20 clamp keeps NaN (the gradient stays finite, so the NaN is only in the reported loss)."))
def test_neg_inf_logit_on_the_sampled_token_on_policy():
    case, _ = inf_case("grpo", topk=3)
    case.student = case.student.clone()
    case.student[0, 0, case.ids[0, 0]] = -math.inf
    finite_case(case)


def test_neg_inf_logit_on_the_sampled_token_off_policy_is_finite():
    """With finite old log-probs the ratio's clamp keeps the policy loss finite."""
    case, _ = inf_case("grpo", topk=3)
    case.logp_old = true_logp(case.student, case.ids, case.cfg.temperature)
    case.student = case.student.clone()
    case.student[0, 0, case.ids[0, 0]] = -math.inf
    finite_case(case)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "when beta * H > ~103 on every distilled token (e.g. a uniform teacher over 40 ids with beta = 40, or "
    "H = 11 at a 150k vocabulary with beta = 10) every raw weight exp(-beta H) underflows to 0 in fp32: the "
    "mean raw weight is 0 and entropy_weights divides 0 by 0, a NaN loss with no error (own mean or update "
    "mean alike)."))
@pytest.mark.parametrize("own_mean", [True, False])
def test_entropy_weights_underflow(own_mean):
    case, _ = inf_case("sdpo", topk=None, alpha=0.5, beta=40.0, V=40)
    case.teacher = torch.zeros_like(case.teacher)  # uniform: H = log 40
    norm = None if own_mean else mean_raw_weight(*raw_weight_sums(case, case.parts, case.student), all_sum)
    finite_case(case, normaliser=norm)
