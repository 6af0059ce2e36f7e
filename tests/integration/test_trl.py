"""The TRL integration (srpo_ref/integrations/trl.py) computes our SRPO loss.

(a) On a fixed batch with both branches, ``SRPOTrainer.compute_loss`` (its routing, teacher
    prompts, forwards and ``srpo_objective`` call) gives the loss and gradient of
    ``srpo_ref.losses.srpo_objective`` on independently computed tensors.
(b) Three training steps end to end with HF generation; the logged route fractions match the
    rewards.
(c) Each option (weight_normalizer, entropy_source, teacher mix) through the trainer's loss path,
    on hand-made tensors and on the fixed batch.
"""

from __future__ import annotations

import math

import pytest
import torch

from srpo_ref import losses, tasks  # noqa: E402
from srpo_ref.integrations.trl import (  # noqa: E402
    SRPOConfig,
    SRPOTrainer,
    raw_weight_sum,
    routing_from_inputs,
    srpo_micro_batch_loss,
    teacher_for_loss,
    teacher_logits_for,
)
from srpo_ref.teacher import chat_prompt_ids, teacher_input_ids  # noqa: E402

G = 4
# three groups: a mixed one, one whose only correct sample is in the middle (non-binary rewards:
# 0.2 and 0.4 are failures), and an all-failed one (policy branch, non-zero advantages)
REWARDS = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.2, 0.0, 1.0, 0.4, 0.0, 0.3, 0.0, 0.0])
TOPK = 16


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def dataset():
    from datasets import Dataset

    return Dataset.from_list([{"prompt": ex.messages} for ex in tasks.load_task("tiny_mcq", "train")[:8]])


def make_trainer(model_dir, out, dataset, reward=None, **overrides) -> SRPOTrainer:
    kw = dict(output_dir=str(out), per_device_train_batch_size=12, num_generations=G, max_completion_length=8,
              report_to="none", save_strategy="no", use_cpu=True, bf16=False, gradient_checkpointing=False, seed=0,
              learning_rate=1e-3, disable_tqdm=True, logging_steps=1, distillation_topk=TOPK, temperature=0.7,
              dataloader_num_workers=0)
    kw.update(overrides)
    reward = reward or (lambda completions, **_: [0.0] * len(completions))
    return SRPOTrainer(model=str(model_dir), reward_funcs=reward, args=SRPOConfig(**kw), train_dataset=dataset)


# --------------------------------------------------------------------------------------------
# A fixed batch, built the way SDPOTrainer.sample_rollouts builds one, and its reference loss
# --------------------------------------------------------------------------------------------


def fixed_rollouts(tok):
    """Three prompts x G responses of different lengths (one cut before its end token)."""
    exs = tasks.load_task("tiny_mcq", "train")[:3]
    prompts, responses = [], []
    for ex in exs:
        n = ex.meta["n"]
        for k, letter in enumerate("ABCD"):
            text = tasks.tiny_mcq_response(n, letter) if k % 2 == 0 else f"<answer>{letter}</answer>"
            ids = tok.encode(text + "<|im_end|>", add_special_tokens=False)
            prompts.append(ex.messages)
            responses.append(ids[:6] if k == 3 else ids)
    return prompts, responses


def fixed_batch(trainer: SRPOTrainer, prompts, responses, rewards=REWARDS):
    from trl.trainer.utils import pad

    trainer.model.train()
    pad_id = trainer._tokenizer.pad_token_id
    p = [torch.tensor(x) for x in trainer._tokenize_prompts(prompts)]
    c = [torch.tensor(x) for x in responses]
    batch = {
        "prompt_ids": pad(p, padding_value=pad_id, padding_side="left"),
        "prompt_mask": pad([torch.ones_like(x) for x in p], padding_value=0, padding_side="left"),
        "completion_ids": pad(c, padding_value=pad_id, padding_side="right"),
        "completion_mask": pad([torch.ones_like(x) for x in c], padding_value=0, padding_side="right"),
        "raw_completion_lengths": torch.tensor([len(x) for x in responses]),
    }
    batch.update(trainer.teacher_context_builder.build(batch, prompts, rewards))
    return batch


def _response_logits(model, prefix, response):
    ids = torch.tensor([list(prefix) + list(response)])
    return model(input_ids=ids).logits[0, len(prefix) - 1 : len(prefix) + len(response) - 1]


def reference(trainer: SRPOTrainer, prompts, responses, rewards=REWARDS, teacher="ema", mix=0.9):
    """The loss from scratch: per-sample unpadded forwards, ``route_samples``, ``group_advantages``,
    the teacher prompt of ``srpo_ref.teacher`` and ``srpo_objective`` on raw logits."""
    model, tok, args = trainer.model, trainer.processing_class, trainer.args
    group_ids = torch.arange(len(rewards)) // G
    routing = losses.route_samples(rewards, group_ids, "srpo", args.success_reward_threshold)
    B, T, V = len(responses), max(map(len, responses)), model.config.vocab_size
    student = torch.zeros(B, T, V)
    teacher_logits = torch.zeros(B, T, V)
    resp = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, T)
    for i, (msgs, r) in enumerate(zip(prompts, responses)):
        student[i, : len(r)] = _response_logits(model, chat_prompt_ids(tok, msgs), r)
        resp[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1.0
        if routing.sdpo_coef[i] > 0:
            demo = tok.decode(responses[routing.demo_index[i]], skip_special_tokens=True)
            ids, plen = teacher_input_ids(tok, msgs, demo, r, args.max_reprompt_len)
            with torch.no_grad():
                t = _response_logits(trainer.teacher_model, ids[:plen], r)
                if teacher == "mix":
                    t = losses.mix_logits(t, _response_logits(model, ids[:plen], r), mix)
            teacher_logits[i, : len(r)] = t
    cfg = losses.LossConfig(topk=trainer.loss_config.topk, temperature=args.temperature, loss_agg=args.loss_agg,
                            entropy_source=args.entropy_source, beta=args.entropy_beta)
    distilled = routing.sdpo_coef > 0
    entropy = losses.weight_entropy(cfg, student[distilled].detach(), teacher_logits[distilled])
    raw, count = losses.entropy_weight_sum(entropy, mask[distilled], cfg.beta)
    logp = losses.token_logprobs(student, resp, cfg.temperature)
    loss, metrics = losses.srpo_objective(
        logp=logp, logp_old=logp.detach(), advantages=losses.group_advantages(rewards, group_ids), mask=mask,
        routing=routing, num_tokens=mask.sum(), num_sequences=float(B), cfg=cfg, student_logits=student,
        teacher_logits=teacher_logits, weight_normalizer=raw / count,
    )
    return loss, metrics, routing


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def trainer_loss(trainer, batch):
    trainer._srpo_update, trainer._step = None, 0
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return loss.detach(), grads(trainer.model)


def reference_loss(trainer, prompts, responses, **kw):
    trainer.model.zero_grad()
    loss, metrics, routing = reference(trainer, prompts, responses, **kw)
    loss.backward()
    return loss.detach(), grads(trainer.model), metrics, routing


def assert_grads_close(a, b, tol=1e-5):
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=tol, atol=tol, msg=name)


# --------------------------------------------------------------------------------------------
# (a) the trainer's loss is srpo_objective's
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_agg, mode", [("token_mean", "topk_logits"), ("seq_mean_token_mean", "topk_logits"),
                                            ("token_mean", "full_logits")])
def test_loss_and_gradient_equal_srpo_objective(tiny_base, tmp_path, dataset, loss_agg, mode):
    trainer = make_trainer(tiny_base, tmp_path, dataset, loss_agg=loss_agg, distillation_mode=mode)
    prompts, responses = fixed_rollouts(trainer.processing_class)
    batch = fixed_batch(trainer, prompts, responses)

    # routing, advantages and teacher prompts as srpo_ref computes them
    group_ids = torch.arange(len(REWARDS)) // G
    routing = losses.route_samples(REWARDS, group_ids, "srpo", 0.5)
    assert routing.to_sdpo.tolist() == [False, True, True, True, True, True, False, True] + [False] * 4
    assert batch["srpo_sdpo_coef"].tolist() == routing.sdpo_coef.tolist()
    assert batch["srpo_grpo_coef"].tolist() == routing.grpo_coef.tolist()
    torch.testing.assert_close(batch["advantages"], losses.group_advantages(REWARDS, group_ids))
    tok = trainer.processing_class
    for i in torch.nonzero(routing.to_sdpo).flatten().tolist():
        demo = tok.decode(responses[routing.demo_index[i]], skip_special_tokens=True)
        ids, _ = teacher_input_ids(tok, prompts[i], demo, responses[i], trainer.args.max_reprompt_len)
        row = batch["teacher_input_ids"][i][batch["teacher_attention_mask"][i].bool()].tolist()
        assert row == ids
    assert not batch["teacher_attention_mask"][~routing.to_sdpo, : -batch["completion_ids"].shape[1]].any()

    loss, g = trainer_loss(trainer, batch)
    ref_loss, ref_g, ref_metrics, _ = reference_loss(trainer, prompts, responses)
    assert ref_metrics["sdpo_tokens_count"] > 0 and ref_metrics["grpo_tokens_count"] > 0  # both branches
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    assert_grads_close(g, ref_g)


# --------------------------------------------------------------------------------------------
# (b) end to end
# --------------------------------------------------------------------------------------------


def test_three_steps_end_to_end_route_fractions(tiny_base, tmp_path, dataset):
    seen: list[list[float]] = []
    patterns = ([0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0])

    def reward(completions, **_):  # deterministic by place: group 0 mixed, group 1 varies per step
        step = len(seen)
        out = [float([1, 0, 0,
                      0][i % G] if i // G == 0 else patterns[step % 3][i % G]) for i in range(len(completions))]
        seen.append(out)
        return out

    trainer = make_trainer(tiny_base, tmp_path, dataset, reward, per_device_train_batch_size=8, max_steps=3)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    logs = [h for h in trainer.state.log_history if "srpo/frac_to_distill" in h]
    assert len(seen) == 3 and len(logs) == 3
    for rewards, log in zip(seen, logs):
        r = torch.tensor(rewards)
        routing = losses.route_samples(r, torch.arange(len(r)) // G, "srpo", 0.5)
        assert log["srpo/frac_correct"] == pytest.approx((r >= 0.5).float().mean().item())
        assert log["srpo/frac_to_distill"] == pytest.approx(routing.to_sdpo.float().mean().item())
        assert log["srpo/frac_to_policy"] == pytest.approx((routing.grpo_coef > 0).float().mean().item())
        assert log["srpo/frac_to_distill"] > 0 and log["srpo/frac_to_policy"] > 0
        assert log["srpo/weight_mean"] == pytest.approx(1.0, abs=1e-5)  # step normaliser
        assert 0 < log["srpo/raw_weight_mean"] <= 1 and log["srpo/teacher_entropy_mean"] > 0
        assert log["srpo/weight_min"] <= 1 <= log["srpo/weight_max"]
        assert math.isfinite(log["loss"])
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


# --------------------------------------------------------------------------------------------
# (c) options on hand-made tensors, through the trainer's loss path
# --------------------------------------------------------------------------------------------


def hand_made(B=4, T=3, V=11):
    g = torch.Generator().manual_seed(0)
    student = torch.randn(B, T, V, generator=g, requires_grad=True)
    teacher = torch.randn(B, T, V, generator=g) * torch.tensor([1.0, 6.0, 1.0, 0.3])[:, None, None]  # entropies differ
    ids = torch.randint(V, (B, T), generator=g)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.float32)
    routing = routing_from_inputs({"srpo_grpo_coef": torch.tensor([1.0, 0, 1, 0]), "srpo_sdpo_coef": torch.tensor([0.0,
                                                                                                                   1, 0,
                                                                                                                   1]),
                                   "srpo_correct": torch.tensor([1.0, 0, 0, 0]), "srpo_has_teacher": torch.tensor([0.0,
                                                                                                                   1, 0,
                                                                                                                   1])})
    adv = torch.tensor([0.5, -0.5, -0.25, -0.5])
    return student, teacher, ids, mask, routing, adv


def mb_loss(student, teacher, ids, mask, routing, adv, rows, cfg, normaliser, n_tokens):
    idx = torch.tensor(rows)
    return srpo_micro_batch_loss(student_logits=student[idx], completion_ids=ids[idx], completion_mask=mask[idx],
                                 advantages=adv[idx], routing=routing.select(idx), cfg=cfg, num_tokens=n_tokens,
                                 num_sequences=4.0, teacher_logits=teacher[idx], weight_normalizer=normaliser)


def test_weight_normalizer_on_hand_made_tensors():
    student, teacher, ids, mask, routing, adv = hand_made()
    cfg = losses.LossConfig(topk=5)
    N = mask.sum().item()
    parts = [(0, 1), (2, 3)]  # two micro-batches, one distilled row each
    raw = [raw_weight_sum(cfg, mask[[p[1]]], student_logits=student[[p[1]]],
                          teacher_logits=teacher[[p[1]]]) for p in parts]
    update_norm = (raw[0][0] + raw[1][0]) / (raw[0][1] + raw[1][1])
    # the whole batch as one micro-batch: its own mean is the update's
    whole, whole_m = mb_loss(student, teacher, ids, mask, routing, adv, [0, 1, 2, 3], cfg, None, N)
    (g_whole,) = torch.autograd.grad(whole, student)

    # update: two micro-batches with the update's mean = one micro-batch (micro-batching changes nothing)
    split = sum(mb_loss(student, teacher, ids, mask, routing, adv, list(p), cfg, update_norm, N)[0] for p in parts)
    (g_split,) = torch.autograd.grad(split, student)
    torch.testing.assert_close(split, whole, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(g_split, g_whole, rtol=1e-6, atol=1e-7)
    assert whole_m["weight_sum"] / whole_m["sdpo_tokens_count"] == pytest.approx(1.0)

    # micro_batch: each micro-batch's own mean (None), which is its raw sum / count, and differs here
    own = [mb_loss(student, teacher, ids, mask, routing, adv, list(p), cfg, None, N)[0] for p in parts]
    explicit = [mb_loss(student, teacher, ids, mask, routing, adv, list(p), cfg, (s / c).item(), N)[0]
                for p, (s, c) in zip(parts, raw)]
    for a, b in zip(own, explicit):
        torch.testing.assert_close(a, b)
    assert abs((own[0] + own[1]).item() - whole.item()) > 1e-4


def test_entropy_source_on_hand_made_tensors():
    student, teacher, ids, mask, routing, adv = hand_made()
    rows = torch.tensor([1, 3])
    for source in ("full", "topk_tail"):
        cfg = losses.LossConfig(topk=5, entropy_source=source, beta=0.7)
        if source == "full":
            H = losses.teacher_entropy(teacher[rows])
        else:
            top = student[rows].detach().topk(5, dim=-1).indices
            H = losses.topk_tail_entropy(losses.topk_logprobs(teacher[rows], top))
        raw = torch.exp(-0.7 * H) * mask[rows]
        s, c = raw_weight_sum(cfg, mask[rows], student_logits=student[rows], teacher_logits=teacher[rows])
        torch.testing.assert_close(s, raw.sum())
        assert c.item() == mask[rows].sum().item()
        _, m = mb_loss(student, teacher, ids, mask, routing, adv, [0, 1, 2, 3], cfg, (s / c).item(), mask.sum().item())
        w = (raw / (s / c))[mask[rows] > 0]
        assert m["weight_min"] == pytest.approx(w.min().item(), rel=1e-5)
        assert m["weight_max"] == pytest.approx(w.max().item(), rel=1e-5)
        assert m["teacher_entropy_sum"] == pytest.approx((H * mask[rows]).sum().item(), rel=1e-5)
        # the trainer's memory-lean teacher (stats at the student's top-K) gives the same weights and loss
        lean = teacher_for_loss(cfg, student, teacher[rows], rows)
        s2, _ = raw_weight_sum(cfg, mask[rows], teacher=lean["teacher"].rows(rows), topk_ids=lean["topk_ids"][rows])
        torch.testing.assert_close(s2, s)
        full_loss, _ = mb_loss(student, teacher, ids, mask, routing, adv, [0, 1, 2, 3], cfg, (s / c).item(),
                               mask.sum().item())
        lean_loss, _ = srpo_micro_batch_loss(student_logits=student, completion_ids=ids, completion_mask=mask,
                                             advantages=adv,
                                             routing=routing, cfg=cfg, num_tokens=mask.sum().item(), num_sequences=4.0,
                                             weight_normalizer=(s / c).item(), **lean)
        torch.testing.assert_close(lean_loss, full_loss)
    full = raw_weight_sum(losses.LossConfig(topk=5), mask[rows], student_logits=student[rows],
                          teacher_logits=teacher[rows])[0]
    tail = raw_weight_sum(losses.LossConfig(topk=5, entropy_source="topk_tail"), mask[rows],
                          student_logits=student[rows],
                          teacher_logits=teacher[rows])[0]
    assert abs(full.item() - tail.item()) > 1e-3


def test_teacher_mix_on_hand_made_tensors():
    student, teacher, ids, mask, routing, adv = hand_made()
    live = torch.randn_like(teacher)
    for lam in (0.0, 0.3, 1.0):
        mixed = teacher_logits_for("mix", teacher, live, lam)
        torch.testing.assert_close(mixed, losses.mix_logits(teacher, live, lam))
    torch.testing.assert_close(teacher_logits_for("mix", teacher, live, 1.0), teacher)
    torch.testing.assert_close(teacher_logits_for("mix", teacher, live, 0.0), live)
    assert teacher_logits_for("ema", teacher, live, 0.3) is teacher
    cfg = losses.LossConfig(topk=5)
    mixed = teacher_logits_for("mix", teacher, live, 0.3)
    got, _ = mb_loss(student, mixed, ids, mask, routing, adv, [0, 1, 2, 3], cfg, None, mask.sum().item())
    logp = losses.token_logprobs(student, ids)
    want, _ = losses.srpo_objective(logp=logp, logp_old=logp.detach(), advantages=adv, mask=mask, routing=routing,
                                    num_tokens=mask.sum().item(), num_sequences=4.0, cfg=cfg, student_logits=student,
                                    teacher_logits=0.3 * teacher + 0.7 * live)
    torch.testing.assert_close(got, want)


def test_options_validated(tmp_path):
    base = dict(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", num_generations=4,
                per_device_train_batch_size=4)
    assert SRPOConfig(**base, teacher="frozen").teacher_model_kind == "base"
    assert SRPOConfig(**base, teacher="mix").teacher_model_kind == "base"
    assert SRPOConfig(**base, teacher="live").teacher_model_kind == "live"
    cfg = SRPOConfig(**base, entropy_beta=0.5, entropy_source="topk_tail", loss_agg="seq_mean_token_mean").loss_config()
    assert (cfg.beta, cfg.entropy_source, cfg.loss_agg, cfg.topk, cfg.alpha, cfg.eps_high, cfg.temperature) == \
        (0.5, "topk_tail", "seq_mean_token_mean", 100, 0.5, 0.28, 1.0)
    # step: one update per generation step; update: an update inside one generation batch
    SRPOConfig(**base, steps_per_generation=2, weight_normalizer="update")
    with pytest.raises(ValueError, match="weight_normalizer='step'"):
        SRPOConfig(**base, steps_per_generation=2, weight_normalizer="step")
    with pytest.raises(ValueError, match="weight_normalizer='step'"):
        SRPOConfig(**base, num_iterations=2)
    with pytest.raises(ValueError, match="multiple of `gradient_accumulation_steps`"):
        SRPOConfig(**base, gradient_accumulation_steps=2, steps_per_generation=1, weight_normalizer="micro_batch")
    for bad in (dict(weight_normalizer="batch"), dict(entropy_source="x"), dict(teacher="base"), dict(teacher_mix=1.5),
                dict(entropy_source="topk_tail", distillation_mode="full_logits"), dict(distillation_weight=0.5),
                dict(distillation_mode="sampled_token", distillation_alpha=1.0), dict(teacher_model_kind="live")):
        with pytest.raises(ValueError):
            SRPOConfig(**base, **bad)


def test_weight_normalizer_through_trainer_with_gradient_accumulation(tiny_base, tmp_path, dataset):
    """GA=2 (the fixed batch in two micro-batches): ``update`` and ``step`` give the gradient of
    one micro-batch; ``micro_batch`` normalises each on its own and does not."""
    from trl.trainer.utils import split_tensor_dict

    one = make_trainer(tiny_base, tmp_path / "one", dataset)
    prompts, responses = fixed_rollouts(one.processing_class)
    _, g_one = trainer_loss(one, fixed_batch(one, prompts, responses))

    two = make_trainer(tiny_base, tmp_path / "two", dataset, per_device_train_batch_size=6,
                       gradient_accumulation_steps=2,
                       weight_normalizer="step")
    batch = fixed_batch(two, prompts, responses)
    two._buffered_inputs = split_tensor_dict(batch, 2)
    results = {}
    for option in ("step", "update", "micro_batch"):
        two.args.weight_normalizer = option
        two._srpo_update, two.current_gradient_accumulation_steps = None, 2
        two.model.zero_grad()
        total = 0.0
        for k in range(2):
            two._step = k
            loss = two.compute_loss(two.model, two._buffered_inputs[k])
            loss.backward()
            total += loss.item()
        results[option] = grads(two.model)
    assert_grads_close(results["step"], g_one)
    assert_grads_close(results["update"], g_one)
    diff = max((results["micro_batch"][n] - g_one[n]).abs().max().item() for n in g_one)
    assert diff > 1e-5
    # the logged weights: normalised over the update, the mean is 1
    assert two._metrics["train"]["srpo/weight_mean"][0] == pytest.approx(1.0, abs=1e-5)


def test_entropy_source_and_teacher_mix_through_trainer(tiny_base, tmp_path, dataset):
    """topk_tail weights and the mix teacher, on the fixed batch, against the from-scratch loss
    (the student moved off the frozen reference, so the mix differs from either model)."""
    trainer = make_trainer(tiny_base, tmp_path, dataset, teacher="mix", teacher_mix=0.3, entropy_source="topk_tail")
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    prompts, responses = fixed_rollouts(trainer.processing_class)
    batch = fixed_batch(trainer, prompts, responses)
    loss, g = trainer_loss(trainer, batch)
    ref_loss, ref_g, _, _ = reference_loss(trainer, prompts, responses, teacher="mix", mix=0.3)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    assert_grads_close(g, ref_g)
    frozen_loss, _, _, _ = reference_loss(trainer, prompts, responses, teacher="mix", mix=1.0)
    assert abs(frozen_loss.item() - ref_loss.item()) > 1e-6
