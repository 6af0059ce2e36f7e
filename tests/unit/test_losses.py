"""srpo_ref.losses on tiny hand-made tensors; expected numbers are computed by hand in comments."""

import math

import pytest
import torch

from srpo_ref.losses import (
    METHODS,
    LossConfig,
    distillation_loss,
    entropy_weight_sum,
    entropy_weights,
    generalized_jsd,
    group_advantages,
    policy_gradient_loss,
    route_samples,
    srpo_objective,
    teacher_entropy,
    token_logprobs,
    truncated_is_weight,
)


def logits_of(*probs):
    """Logits whose softmax is ``probs`` (one distribution per token), shape [1, T, V]."""
    return torch.log(torch.tensor(probs, dtype=torch.float64)).float()[None]


# ---------------------------------------------------------------- advantages


def test_group_advantages_dr_grpo():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    g = torch.tensor([7, 7, 7, 3, 3, 3])
    # group 7: mean 1/3 -> [2/3, -1/3, -1/3]; group 3 likewise
    expected = torch.tensor([2 / 3, -1 / 3, -1 / 3, 2 / 3, -1 / 3, -1 / 3])
    assert torch.allclose(group_advantages(r, g), expected, atol=1e-6)


def test_group_advantages_std_normalized():
    r = torch.tensor([1.0, 0.0, 0.5, 0.5])
    g = torch.tensor([0, 0, 1, 1])
    # group 0: adv +-0.5, unbiased std sqrt(0.5) = 0.707107 -> +-0.707106; group 1: 0 / (0 + 1e-6) = 0
    out = group_advantages(r, g, std_normalize=True)
    assert torch.allclose(out, torch.tensor([0.707106, -0.707106, 0.0, 0.0]), atol=1e-5)


# ---------------------------------------------------------------- policy gradient


def test_policy_gradient_clip_and_dual_clip():
    ratio = torch.tensor([[1.5, 1.5, 5.0, 0.5, 0.5]])
    adv = torch.tensor([[1.0, -1.0, -1.0, 1.0, -1.0]])
    logp = torch.log(ratio)
    out = policy_gradient_loss(logp, torch.zeros_like(logp), adv, eps_low=0.2, eps_high=0.28, dual_clip=3.0)
    # A=+1, r=1.5: max(-1.5, -1.28) = -1.28      A=-1, r=1.5: max(1.5, 1.28) = 1.5, dual min(1.5, 3)
    # A=-1, r=5:   max(5, 1.28) = 5 -> dual 3      A=+1, r=0.5: max(-0.5, -0.8) = -0.5
    # A=-1, r=0.5: max(0.5, 0.8) = 0.8
    assert torch.allclose(out, torch.tensor([[-1.28, 1.5, 3.0, -0.5, 0.8]]), atol=1e-6)
    no_dual = policy_gradient_loss(logp, torch.zeros_like(logp), adv, dual_clip=None)
    assert no_dual[0, 2].item() == pytest.approx(5.0)
    tis = torch.full_like(logp, 0.5)
    halved = policy_gradient_loss(logp, torch.zeros_like(logp), adv, tis_weight=tis)
    assert torch.allclose(halved, out * 0.5)


def test_policy_gradient_broadcasts_sample_advantage():
    logp = torch.zeros(2, 3)
    out = policy_gradient_loss(logp, logp, torch.tensor([0.25, -2.0]))
    assert torch.allclose(out, torch.tensor([[-0.25] * 3, [2.0] * 3]))


# ---------------------------------------------------------------- distillation

S, T = (0.5, 0.5), (0.9, 0.1)
KL_T_S = 0.9 * math.log(1.8) + 0.1 * math.log(0.2)  # 0.368064, teacher first
KL_S_T = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(5.0)  # 0.510826, student first
# M = (0.7, 0.3): 0.5 * KL(S||M) + 0.5 * KL(T||M)
JSD_HALF = 0.5 * (0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3)) + 0.5 * (
    0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3)
)  # 0.101749


@pytest.mark.parametrize("alpha, expected", [(0.0, KL_T_S), (1.0, KL_S_T), (0.5, JSD_HALF)])
def test_divergence_hand_values(alpha, expected):
    out = distillation_loss(logits_of(S), logits_of(T), topk=None, alpha=alpha)
    assert out.item() == pytest.approx(expected, abs=1e-6)


def test_jsd_half_is_symmetric_and_ends_are_argument_ordered():
    s, t = torch.randn(4, 9).log_softmax(-1), torch.randn(4, 9).log_softmax(-1)
    assert torch.allclose(generalized_jsd(s, t, 0.5), generalized_jsd(t, s, 0.5), atol=1e-6)
    kl_t_s = (t.exp() * (t - s)).sum(-1)
    kl_s_t = (s.exp() * (s - t)).sum(-1)
    assert torch.allclose(generalized_jsd(s, t, 0.0), kl_t_s, atol=1e-6)
    assert torch.allclose(generalized_jsd(s, t, 1.0), kl_s_t, atol=1e-6)
    assert not torch.allclose(kl_t_s, kl_s_t)


def test_topk_tail_bucket_hand_value():
    # student (0.5, 0.3, 0.2), teacher (0.2, 0.3, 0.5); student's top-1 is token 0.
    s, t = logits_of((0.5, 0.3, 0.2)), logits_of((0.2, 0.3, 0.5))
    # with tail: S = (0.5, 0.5), T = (0.2, 0.8); KL(S||T) = 0.5 ln 2.5 + 0.5 ln 0.625 = 0.223144
    with_tail = distillation_loss(s, t, topk=1, alpha=1.0, add_tail=True)
    assert with_tail.item() == pytest.approx(0.5 * math.log(2.5) + 0.5 * math.log(0.625), abs=1e-6)
    # top-2 renormalised: S = (0.625, 0.375), T = (0.4, 0.6) -> 0.102678
    renorm = distillation_loss(s, t, topk=2, alpha=1.0, add_tail=False)
    assert renorm.item() == pytest.approx(0.625 * math.log(0.625 / 0.4) + 0.375 * math.log(0.375 / 0.6), abs=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_topk_equal_vocab_with_tail_is_full_vocab(alpha):
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    full = distillation_loss(s, t, topk=None, alpha=alpha)
    topv = distillation_loss(s, t, topk=11, alpha=alpha, add_tail=True)
    assert torch.allclose(full, topv, atol=1e-5)


def test_divergence_zero_when_teacher_is_student():
    s = torch.randn(3, 4, 20)
    for topk in (None, 5):
        assert distillation_loss(s, s.clone(), topk=topk).abs().max() < 1e-6


def test_temperature_divides_logits():
    s, t = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    assert torch.allclose(distillation_loss(s, t, temperature=2.0), distillation_loss(s / 2, t / 2), atol=1e-6)


def test_gradients_flow_to_student_only():
    s = torch.randn(2, 3, 8, requires_grad=True)
    t = torch.randn(2, 3, 8, requires_grad=True)
    distillation_loss(s, t, topk=4).sum().backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


# ---------------------------------------------------------------- entropy weights


def test_teacher_entropy_hand_values():
    logits = logits_of((0.25, 0.25, 0.25, 0.25), (0.9, 0.1, 1e-30, 1e-30))
    h = teacher_entropy(logits)
    # ln 4 = 1.386294; -(0.9 ln 0.9 + 0.1 ln 0.1) = 0.325083
    assert torch.allclose(h, torch.tensor([[math.log(4), 0.325083]]), atol=1e-5)


def test_entropy_weights_hand_values_and_mean_one():
    h = torch.tensor([[0.0, math.log(2), 5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    # w~ = (1, 0.5); mean 0.75 -> (4/3, 2/3); masked token 0
    w = entropy_weights(h, mask, beta=1.0)
    assert torch.allclose(w, torch.tensor([[4 / 3, 2 / 3, 0.0]]), atol=1e-6)
    assert (w * mask).sum() / mask.sum() == pytest.approx(1.0)
    assert w[0, 0] > w[0, 1]  # lower entropy, larger weight


def test_entropy_weights_beta_zero_is_ones():
    h = torch.rand(3, 5) * 4
    mask = (torch.rand(3, 5) > 0.3).float()
    assert torch.equal(entropy_weights(h, mask, beta=0.0), mask)


def test_entropy_weights_external_normalizer():
    h = torch.tensor([[0.0, math.log(2)]])
    mask = torch.ones(1, 2)
    raw_sum, count = entropy_weight_sum(h, mask, beta=1.0)
    assert raw_sum.item() == pytest.approx(1.5) and count.item() == 2
    assert torch.allclose(entropy_weights(h, mask, normalizer=0.5), torch.tensor([[2.0, 1.0]]))


# ---------------------------------------------------------------- routing


def route(rewards, groups, method="srpo", seed=0):
    return route_samples(torch.tensor(rewards), torch.tensor(groups), method,
                         generator=torch.Generator().manual_seed(seed))


def test_routing_all_correct_all_failed_lone_success():
    r = route([1, 1, 1, 0, 0, 0, 1, 0, 0], [0, 0, 0, 1, 1, 1, 2, 2, 2])
    assert r.to_sdpo.tolist() == [False, False, False, False, False, False, False, True, True]
    assert r.has_teacher.tolist() == [True, True, True, False, False, False, False, True, True]
    # the lone success of group 2 (index 6) teaches its failed siblings, has no teacher itself
    assert r.demo_index.tolist()[6:] == [-1, 6, 6]
    assert r.demo_index.tolist()[3:6] == [-1, -1, -1]


def test_routing_threshold_is_inclusive():
    r = route([0.5, 0.49999], [0, 0])
    assert r.correct.tolist() == [True, False]
    assert r.to_sdpo.tolist() == [False, True]


def test_demo_never_self_and_always_correct_sibling():
    g = torch.arange(16).repeat_interleave(8)
    rewards = (torch.rand(128, generator=torch.Generator().manual_seed(3)) > 0.6).float()
    r = route_samples(rewards, g, "sdpo", generator=torch.Generator().manual_seed(1))
    for i, j in enumerate(r.demo_index.tolist()):
        if j >= 0:
            assert j != i and g[j] == g[i] and rewards[j] >= 0.5
        assert (j >= 0) == bool(r.has_teacher[i])


def test_seeded_draws_reproducible():
    g = torch.zeros(8, dtype=torch.long)
    rewards = torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0])
    a = route_samples(rewards, g, generator=torch.Generator().manual_seed(5)).demo_index
    b = route_samples(rewards, g, generator=torch.Generator().manual_seed(5)).demo_index
    draws = {tuple(route_samples(rewards, g,
                                 generator=torch.Generator().manual_seed(s)).demo_index.tolist()) for s in range(10)}
    assert torch.equal(a, b) and len(draws) > 1


def test_method_table():
    rewards = [1, 1, 0, 0, 1, 0, 0, 0]
    groups = [0, 0, 0, 0, 1, 1, 1, 1]
    grpo = route(rewards, groups, "grpo")
    assert not grpo.to_sdpo.any() and grpo.grpo_coef.eq(1).all() and grpo.sdpo_coef.eq(0).all()
    sdpo = route(rewards, groups, "sdpo")
    # correct samples 0 and 1 have each other: both distilled; lone success 4 is not.
    assert sdpo.to_sdpo.tolist() == [True, True, True, True, False, True, True, True]
    assert sdpo.grpo_coef.eq(0).all()
    for m in ("srpo", "srpo_no_dw"):
        s = route(rewards, groups, m)
        assert not (s.to_sdpo & s.correct).any()
        assert torch.equal(s.grpo_coef + s.sdpo_coef, torch.ones(8))
    mix = route(rewards, groups, "adv_mix")
    assert mix.grpo_coef.eq(0.9).all() and torch.allclose(mix.sdpo_coef, 0.1 * mix.has_teacher.float())
    assert route(rewards, groups, "sdpo_failed_only").to_sdpo.tolist() == [False, False, True, True, False, True, True,
                                                                           True]
    assert route(rewards, groups, "sdpo_correct_only").to_sdpo.tolist() == [True, True] + [False] * 6
    assert set(METHODS) == {"grpo", "sdpo", "srpo", "srpo_no_dw", "adv_mix", "sdpo_failed_only", "sdpo_correct_only"}
    with pytest.raises(ValueError, match="unknown method"):
        route(rewards, groups, "ppo")


# ---------------------------------------------------------------- objective


def test_objective_hand_value():
    # sample 0: GRPO, ratio 1, A = 0.5, 3 tokens -> -0.5 each; sample 1: SDPO on 2 tokens with
    # student S = (0.5, 0.5), teacher T = (0.9, 0.1) -> JSD 0.101749 each, equal entropies -> w = 1.
    routing = route([1.0, 0.0], [0, 0])
    assert routing.to_sdpo.tolist() == [False, True]
    student = torch.log(torch.tensor(S)).expand(2, 3, 2).clone()
    teacher = torch.log(torch.tensor(T)).expand(2, 3, 2).clone()
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0]])
    logp = torch.zeros(2, 3)
    loss, m = srpo_objective(
        logp=logp, logp_old=logp, advantages=torch.tensor([0.5, -0.5]), mask=mask, routing=routing,
        num_tokens=5, cfg=LossConfig(topk=None), student_logits=student, teacher_logits=teacher,
    )
    assert loss.item() == pytest.approx((3 * -0.5 + 2 * JSD_HALF) / 5, abs=1e-6)
    assert m["sdpo_tokens_count"] == 2 and m["grpo_tokens_count"] == 3


def _random_batch(seed=0, B=8, T=6, V=13):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.tensor([1.0, 0, 0, 1, 0, 0, 1, 1])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    tokens = torch.randint(V, (B, T), generator=g)
    mask = torch.ones(B, T)
    for b in range(B):
        mask[b, torch.randint(2, T + 1, (1,), generator=g).item():] = 0
    student_logits = torch.randn(B, T, V, generator=g, requires_grad=True)
    teacher_logits = torch.randn(B, T, V, generator=g) * 2
    logp_old = token_logprobs(student_logits.detach(), tokens) + 0.1 * torch.randn(B, T, generator=g)
    return rewards, groups, tokens, mask, student_logits, teacher_logits, logp_old


@pytest.mark.parametrize("method", ["srpo", "sdpo", "adv_mix"])
def test_microbatch_split_matches_whole_batch(method):
    rewards, groups, tokens, mask, student_logits, teacher_logits, logp_old = _random_batch()
    routing = route_samples(rewards, groups, method, generator=torch.Generator().manual_seed(0))
    adv = group_advantages(rewards, groups)
    cfg = LossConfig(topk=5, beta=1.0 if method == "srpo" else 0.0)
    n = mask.sum()
    sdpo_mask = mask * routing.to_sdpo[:, None]
    raw, cnt = entropy_weight_sum(teacher_entropy(teacher_logits), sdpo_mask, cfg.beta)
    normalizer = raw / cnt

    def loss_on(rows):
        logits = student_logits[rows]
        logp = token_logprobs(logits, tokens[rows])
        loss, _ = srpo_objective(
            logp=logp, logp_old=logp_old[rows], advantages=adv[rows], mask=mask[rows],
            routing=routing.select(rows), num_tokens=n, cfg=cfg, student_logits=logits,
            teacher_logits=teacher_logits[rows], weight_normalizer=normalizer,
        )
        return loss

    whole = loss_on(torch.arange(8))
    (g_whole,) = torch.autograd.grad(whole, student_logits)
    parts = [loss_on(torch.tensor(rows)) for rows in ([0, 5], [1, 2, 3], [4], [6, 7])]
    split = sum(parts)
    (g_split,) = torch.autograd.grad(split, student_logits)
    assert abs(whole.item() - split.item()) < 1e-6
    assert torch.allclose(g_whole, g_split, atol=1e-6)


# ----------------------------------------------------------------------------- upstream parity details


def test_seq_mean_token_mean_against_hand_computation():
    """(1/S) sum_i (1/|y_i|) sum_t l_it, with the GRPO loss on-policy: l = -A per token."""
    logp = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    adv = torch.tensor([1.0, -2.0])
    routing = route_samples(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), "grpo")
    cfg = LossConfig(loss_agg="seq_mean_token_mean")
    loss, _ = srpo_objective(logp=logp, logp_old=logp.detach(), advantages=adv, mask=mask, routing=routing,
                             num_tokens=4.0, num_sequences=2.0, cfg=cfg)
    # sequence 1: three tokens of -1 -> mean -1; sequence 2: one token of +2 -> mean 2
    assert loss.item() == pytest.approx((-1.0 + 2.0) / 2)
    token_mean, _ = srpo_objective(logp=logp, logp_old=logp.detach(), advantages=adv, mask=mask, routing=routing,
                                   num_tokens=4.0, cfg=LossConfig())
    assert token_mean.item() == pytest.approx((-3.0 + 2.0) / 4)
    with pytest.raises(ValueError, match="num_sequences"):
        srpo_objective(logp=logp, logp_old=logp.detach(), advantages=adv, mask=mask, routing=routing, num_tokens=4.0,
                       cfg=cfg)


def test_tail_bucket_keeps_its_digits_when_topk_holds_almost_all_mass():
    """The tail is logsumexp(logits outside the top-K) - logsumexp(logits): exact where
    log(1 - sum p_topk) in fp32 would round to log(0)."""
    V = 50
    logits = torch.full((1, 1, V), -30.0)
    logits[..., 0] = 0.0  # p(top-1) = 1 - 49 e^-30, the tail is 49 e^-30 ~ 4.6e-12
    student = logits.clone()
    exact_tail_s = math.log(49) - 30.0
    # the tail as distillation_loss computes it
    from srpo_ref.losses import TAIL_FLOOR

    s_logp = torch.log_softmax(student, -1)
    ids = s_logp.topk(1, -1).indices
    tail = torch.logsumexp(s_logp.scatter(-1, ids, -math.inf), -1).item()
    assert tail == pytest.approx(exact_tail_s, abs=1e-4)
    naive = torch.log((1 - s_logp.gather(-1, ids).exp().sum(-1)).clamp(min=TAIL_FLOOR)).item()
    assert abs(naive - exact_tail_s) > 1.0  # the old formula lost it (floored)
    # In the loss: tails of 1e-7 (student) and 1e-5 (teacher) beside one dominant token, where
    # 1 - sum p in fp32 is off by ~20% for the student; the divergence must match a float64
    # computation on the exact two-bucket distributions.
    def two_bucket_logits(tail):
        x = torch.full((1, 1, V), math.log(tail / (V - 1)))
        x[..., 0] = math.log1p(-tail)
        return x

    loss = distillation_loss(two_bucket_logits(1e-7), two_bucket_logits(1e-5), topk=1, alpha=0.5, add_tail=True).item()
    exact = generalized_jsd(torch.tensor([[math.log1p(-1e-7), math.log(1e-7)]], dtype=torch.float64),
                            torch.tensor([[math.log1p(-1e-5), math.log(1e-5)]], dtype=torch.float64), 0.5).item()
    assert loss == pytest.approx(exact, rel=0.05)


def test_log_ratio_is_clamped_before_exp():
    logp = torch.tensor([[100.0]])
    old = torch.tensor([[0.0]])
    assert torch.isfinite(truncated_is_weight(logp, old, cap=1e30)).all()
    assert truncated_is_weight(logp, old, cap=1e30).item() == pytest.approx(math.exp(20.0), rel=1e-5)
    loss = policy_gradient_loss(logp, old, torch.tensor([-1.0]), dual_clip=None)
    assert torch.isfinite(loss).all()


# ----------------------------------------------------------------------------- memory-lean distillation


@pytest.mark.parametrize("temperature, add_tail, topk", [(1.0, True, 10), (0.7, True, 10), (0.7, False, 10), (1.0, True,
                                                                                                              50)])
def test_memory_lean_distillation_matches_the_full_vocabulary_form(temperature, add_tail, topk):
    from srpo_ref.losses import distillation_loss_topk, teacher_stats, topk_logprobs

    torch.manual_seed(0)
    B, T, V, H = 3, 7, 50, 6
    head = torch.nn.Linear(H, V)
    h_s, h_t = torch.randn(B, T, H), torch.randn(B, T, H)
    s_logits = (head(h_s) * 2).detach().requires_grad_(True)
    t_logits = (head(h_t) * 2).detach()
    ref = distillation_loss(s_logits, t_logits, topk=topk, alpha=0.5, add_tail=add_tail, temperature=temperature)
    (g_ref,) = torch.autograd.grad(ref.sum(), s_logits)
    ids = s_logits.detach().topk(topk, -1).indices
    stats = teacher_stats(h_t, lambda h: head(h) * 2, ids, temperature, chunk=4)  # chunks that do not divide B*T
    lean = distillation_loss_topk(topk_logprobs(s_logits, ids, temperature, chunk=5), stats.logp, 0.5, add_tail)
    (g_lean,) = torch.autograd.grad(lean.sum(), s_logits)
    assert torch.allclose(lean, ref, atol=1e-5) and torch.allclose(g_lean, g_ref, atol=1e-5)
    assert torch.allclose(stats.entropy, teacher_entropy(t_logits, temperature), atol=1e-5)


def test_token_logprobs_chunked_gradient_matches_log_softmax():
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 30, requires_grad=True)
    tokens = torch.randint(0, 30, (2, 5))
    ref = torch.log_softmax(logits / 0.8, -1).gather(-1, tokens[..., None]).squeeze(-1)
    (g_ref,) = torch.autograd.grad((ref * torch.arange(10.0).view(2, 5)).sum(), logits)
    ours = token_logprobs(logits, tokens, 0.8)
    (g,) = torch.autograd.grad((ours * torch.arange(10.0).view(2, 5)).sum(), logits)
    assert torch.allclose(ours, ref, atol=1e-6) and torch.allclose(g, g_ref, atol=1e-6)


def test_loss_path_peak_memory_drops_at_qwen_vocabulary():
    """V = 151,936, T = 2,048, one sequence, tiny hidden size: the full-vocabulary path holds
    several [T, V] fp32 tensors (1.2 GB each); the lean path only the student's logits and their
    gradients, plus chunks (benchmarks/distill_memory.py prints the figures)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import distill_memory

    out = distill_memory.measure(151936, 2048, 16)
    full, lean = out["full"]["peak_growth_mb"], out["lean"]["peak_growth_mb"]
    assert out["full"]["loss"] == pytest.approx(out["lean"]["loss"], rel=1e-4)
    assert lean < 0.5 * full, out
    # at least four [T, V] fp32 tensors (1244 MB each) fewer: the teacher's logits, its two
    # log-softmaxes (divergence, entropy) and the student's log-softmax
    assert full - lean > 4 * 1244, out


# ------------------------------------------------------------------ options of the public SRPO forks

def test_topk_tail_entropy_by_hand():
    from srpo_ref.losses import topk_tail_entropy

    logp = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    assert topk_tail_entropy(logp).item() == pytest.approx(1.5 * math.log(2))
    assert topk_tail_entropy(torch.log(torch.tensor([1.0, 1e-30]))).item() == pytest.approx(0.0, abs=1e-6)


def test_weight_entropy_sources_by_hand_and_in_both_teacher_forms():
    """``topk_tail``: the teacher's probabilities at the student's top-K ids plus the rest as one
    bucket; ``full``: the whole vocabulary. The memory-lean TeacherStats give the same values."""
    from srpo_ref.losses import LossConfig, teacher_stats, weight_entropy

    g = torch.Generator().manual_seed(7)
    B, T, V, K = 2, 3, 11, 4
    student, teacher = torch.randn(B, T, V, generator=g), torch.randn(B, T, V, generator=g)
    ids = student.topk(K, dim=-1).indices
    p = torch.softmax(teacher, -1)
    pk = p.gather(-1, ids)
    dist = torch.cat([pk, 1 - pk.sum(-1, keepdim=True)], -1)
    by_hand_tt = -(dist * dist.log()).sum(-1)
    by_hand_full = -(p * p.log()).sum(-1)
    tt, full = LossConfig(topk=K, entropy_source="topk_tail"), LossConfig(topk=K, entropy_source="full")
    torch.testing.assert_close(weight_entropy(tt, student, teacher), by_hand_tt, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weight_entropy(full, student, teacher), by_hand_full, rtol=1e-5, atol=1e-6)
    head = torch.nn.Linear(V, V, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(V))
    stats = teacher_stats(teacher, head, ids)
    torch.testing.assert_close(weight_entropy(tt, student, teacher=stats, topk_ids=ids), by_hand_tt, rtol=1e-5,
                               atol=1e-6)
    torch.testing.assert_close(weight_entropy(full, student, teacher=stats, topk_ids=ids), by_hand_full, rtol=1e-5,
                               atol=1e-6)
    assert (by_hand_tt <= by_hand_full + 1e-6).all()  # a coarser distribution has less entropy
    with pytest.raises(ValueError, match="topk"):
        weight_entropy(LossConfig(topk=None, entropy_source="topk_tail"), student, teacher)


def test_srpo_objective_weights_use_the_configured_entropy_and_report_raw_weights():
    from srpo_ref.losses import (LossConfig, Routing, distillation_loss, srpo_objective, truncated_is_weight,
                                 weight_entropy)

    g = torch.Generator().manual_seed(3)
    B, T, V = 3, 4, 9
    student, teacher = torch.randn(B, T, V, generator=g), torch.randn(B, T, V, generator=g)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.float)
    logp = torch.log_softmax(student, -1).gather(-1, torch.zeros(B, T, 1, dtype=torch.long)).squeeze(-1)
    routing = Routing(to_sdpo=torch.ones(B, dtype=torch.bool), has_teacher=torch.ones(B, dtype=torch.bool),
                      demo_index=torch.zeros(B, dtype=torch.long), correct=torch.zeros(B, dtype=torch.bool),
                      grpo_coef=torch.zeros(B), sdpo_coef=torch.ones(B))
    for source in ("full", "topk_tail"):
        cfg = LossConfig(topk=3, entropy_source=source, beta=1.0)
        loss, m = srpo_objective(logp=logp, logp_old=logp.detach(), advantages=torch.zeros(B), mask=mask,
                                 routing=routing,
                                 num_tokens=mask.sum(), cfg=cfg, student_logits=student, teacher_logits=teacher)
        H = weight_entropy(cfg, student, teacher)
        raw = torch.exp(-H) * mask
        w = raw / (raw.sum() / mask.sum())
        l_sdpo = distillation_loss(student, teacher, 3, 0.5, True, 1.0)
        rho = truncated_is_weight(logp, logp, 2.0)
        expected = (w * rho * l_sdpo * mask).sum() / mask.sum()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        assert m["raw_weight_sum"] == pytest.approx(raw.sum().item(), rel=1e-5)
        assert m["teacher_entropy_sum"] == pytest.approx((H * mask).sum().item(), rel=1e-5)


def test_mix_logits_by_hand():
    from srpo_ref.losses import mix_logits

    ref, stu = torch.tensor([1.0, 3.0]), torch.tensor([5.0, -1.0])
    torch.testing.assert_close(mix_logits(ref, stu, 0.9), torch.tensor([1.4, 2.6]))
    torch.testing.assert_close(mix_logits(ref, stu, 1.0), ref)
    torch.testing.assert_close(mix_logits(ref, stu, 0.0), stu)
