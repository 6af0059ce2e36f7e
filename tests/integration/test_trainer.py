"""The reference trainer end to end on the tiny model (CPU)."""

import json
import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from srpo_ref.config import load_config
from srpo_ref.rollout import Sample
from srpo_ref.run import train
from srpo_ref.trainer import Trainer

VOLATILE = {"wall_seconds", "seconds"}


def tiny_cfg(base, out, *extra):
    return load_config(None, [
        f"model.path={base}", f"run.out_dir={out}", "data.benchmark=tiny_mcq", "rollout.prompts_per_step=4",
        "rollout.rollouts_per_prompt=4", "rollout.max_response_tokens=24", "optim.lr=1e-3", "optim.warmup_steps=0",
        "optim.mini_batch_prompts=4", "optim.micro_batch_size=5", "eval.k=2", "eval.limit=8", "eval.max_new_tokens=24",
        "eval.val_every=2", "run.save_every=2", "run.progress=false", "run.threads=1", *extra,
    ])


def records(path):
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE} for line in path.read_text().splitlines()]


@pytest.mark.parametrize("method", ["srpo", "grpo"])
def test_steps_record_cost_and_routing(tiny_base, tmp_path, method):
    extra = ["optim.mini_batch_prompts=2"] if method == "grpo" else ["run.tensorboard=true"]
    out = train(tiny_cfg(tiny_base, tmp_path / method, f"method.name={method}", "run.max_steps=2", *extra))
    if method == "srpo":  # optional TensorBoard logging beside the JSONL records
        assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    recs = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2]
    for r in recs:
        assert set(r["seconds"]) >= {"generate", "reward", "old_logprob", "teacher_forward", "update", "teacher_ema",
                                     "step"}
        assert r["tokens"]["generate"] > 0 and r["flops"]["update"] > 0
        assert abs(r["frac_sdpo"] + r["frac_grpo"] - 1.0) < 1e-9 if method == "srpo" else r["frac_sdpo"] == 0
        if method == "grpo":
            assert r["updates"] == 2 and r["tokens"]["old_logprob"] > 0 and r["tokens"]["teacher_forward"] == 0
        else:
            assert r["updates"] == 1 and r["tokens"]["old_logprob"] == 0
            # the teacher runs on exactly the distilled samples
            assert r["teacher_forward_samples"] == round(r["frac_sdpo"] * 16)
            assert (r["tokens"]["teacher_forward"] > 0) == (r["teacher_forward_samples"] > 0)
    assert (out / "final" / "config.json").exists() and (out / "provenance.json").exists()
    assert len((out / "val.jsonl").read_text().splitlines()) == 2  # step 0 and step 2


def test_resume_reproduces_uninterrupted_run(tiny_base, tmp_path):
    full = train(tiny_cfg(tiny_base, tmp_path / "full", "run.max_steps=4"))
    # "killed" after step 2: a run that stops there, then a new process that resumes to step 4
    part = tmp_path / "part"
    train(tiny_cfg(tiny_base, part, "run.max_steps=2"))
    # a half-written checkpoint from a crash must never be picked up
    (part / "checkpoints" / ".tmp_step_000003").mkdir()
    (part / "checkpoints" / "step_000003").mkdir()
    with (part / "steps.jsonl").open("a") as f:  # a record written after the checkpoint
        f.write(json.dumps({"step": 3, "reward_mean": -1}) + "\n")
    trainer = Trainer(tiny_cfg(tiny_base, part, "run.max_steps=4"))
    assert trainer.latest_checkpoint().name == "step_000002"
    train(tiny_cfg(tiny_base, part, "run.max_steps=4"))
    a, b = records(full / "steps.jsonl"), records(part / "steps.jsonl")
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        for k in ra:
            if isinstance(ra[k], float):
                assert ra[k] == pytest.approx(rb[k], rel=1e-5, abs=1e-7), (ra["step"], k)
            else:
                assert ra[k] == rb[k], (ra["step"], k)
    assert records(full / "val.jsonl") == records(part / "val.jsonl")


# ----------------------------------------------------------------------------- two ranks


class FixedRollouts:
    """Stands in for the rollout engine in the two-rank test: both runs must see the same samples,
    which real sampling on differently sharded prompts cannot give. Responses are fixed per prompt
    (a mix of right and wrong letters); everything downstream is the real trainer."""

    name = "fixed"

    def __init__(self, tokenizer):
        self.tok = tokenizer

    def sync_weights(self, model):
        pass

    def generate(self, prompt_ids, n, sampling):
        from srpo_ref.tasks import tiny_mcq_response

        out = []
        for ids in prompt_ids:
            text = self.tok.decode(ids)
            num = int(text.split("Which is true of ")[1].split("?")[0])
            letters = ["A", "B", "C", "D", "A", "C"][(num % 3) : (num % 3) + n]
            group = []
            for letter in letters:
                resp = tiny_mcq_response(num, letter)
                rid = self.tok.encode(resp, add_special_tokens=False) + [self.tok.eos_token_id]
                group.append(Sample(rid, resp, "stop"))
            out.append(group)
        return out


def _one_step(rank, world, port, base, out, method, result_dir):
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    extra = ["optim.mini_batch_prompts=2"] if method == "grpo" else []
    cfg = tiny_cfg(base, out, f"method.name={method}", "optim.micro_batch_size=3", *extra)
    trainer = Trainer(cfg)
    trainer.engine = FixedRollouts(trainer.tokenizer)
    rec = trainer.train_step()
    if rank == 0:
        torch.save({"rec": rec, "params": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}},
                   os.path.join(result_dir, f"{method}_{world}.pt"))
    if world > 1:
        torch.distributed.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("method", ["srpo", "grpo"])
def test_two_ranks_match_one_process(tiny_base, tmp_path, method):
    _one_step(0, 1, 0, str(tiny_base), str(tmp_path / "single"), method, str(tmp_path))
    mp.spawn(_one_step, args=(2, _free_port(), str(tiny_base), str(tmp_path / "dist"), method, str(tmp_path)), nprocs=2,
             join=True)
    single = torch.load(tmp_path / f"{method}_1.pt", weights_only=False)
    double = torch.load(tmp_path / f"{method}_2.pt", weights_only=False)
    for k in ("loss", "loss_grpo", "loss_sdpo", "reward_mean", "frac_sdpo", "grad_norm"):
        assert single["rec"][k] == pytest.approx(double["rec"][k], abs=1e-6), k
    if method == "srpo":
        assert single["rec"]["frac_sdpo"] > 0  # the distillation branch and its normaliser are exercised
    # Adam's first step is about lr * sign(g) = 1e-3 per weight; summation order across ranks can
    # move a near-zero gradient's normalised step slightly, so compare to 3% of the step size.
    for name, p in single["params"].items():
        torch.testing.assert_close(p, double["params"][name], atol=3e-5, rtol=0)
    assert single["rec"]["grad_norm"] > 0 and single["rec"]["lr"] > 0
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_base).state_dict()
    assert max((single["params"][k] - base[k]).abs().max().item() for k in base) > 1e-4  # an update really happened


def test_scheduler_steps_once_per_training_step(tiny_base, tmp_path):
    """verl's constant schedule with warm-up: lr 0 at step 0, s / warmup_steps, then constant,
    stepped once per training step whatever the number of updates in it (GRPO: 2 here)."""
    cfg = tiny_cfg(tiny_base, tmp_path / "lr", "method.name=grpo", "optim.mini_batch_prompts=2", "optim.warmup_steps=3",
                   "run.max_steps=5", "eval.val_every=0")
    out = train(cfg)
    recs = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert [r["updates"] for r in recs] == [2] * 5
    assert [r["lr"] for r in recs] == pytest.approx([0.0, 1e-3 / 3, 2e-3 / 3, 1e-3, 1e-3])


@pytest.mark.parametrize("unit, budget", [("steps", 2), ("tokens", 1), ("flops", 1.0)])
def test_budget_in_a_deterministic_unit_stops_the_run(tiny_base, tmp_path, unit, budget):
    out = train(tiny_cfg(tiny_base, tmp_path / unit, "run.max_steps=6", "eval.val_every=0", f"run.budget={budget}",
                         f"run.budget_unit={unit}"))
    recs = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert len(recs) == (2 if unit == "steps" else 1)  # a budget of one token / one FLOP ends after the first step
    assert recs[-1]["cum_flops"] == pytest.approx(sum(sum(r["flops"].values()) for r in recs))
    assert recs[-1]["cum_tokens"] == sum(sum(r["tokens"].values()) for r in recs)
    assert json.loads((out / "DONE").read_text())["train_flops"] == pytest.approx(recs[-1]["cum_flops"])


def test_resume_keeps_one_step0_validation_and_drops_a_torn_line(tiny_base, tmp_path):
    out = tmp_path / "torn"
    train(tiny_cfg(tiny_base, out, "run.max_steps=1", "run.save_every=0"))
    # simulate a kill before the first checkpoint: no checkpoint, a step-0 validation, a torn line
    import shutil

    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    (out / "DONE").unlink()
    with (out / "steps.jsonl").open("a") as f:
        f.write('{"step": 2, "reward_me')
    train(tiny_cfg(tiny_base, out, "run.max_steps=2"))
    val = [json.loads(line) for line in (out / "val.jsonl").read_text().splitlines()]
    assert [v["step"] for v in val].count(0) == 1
    assert [json.loads(line)["step"] for line in (out / "steps.jsonl").read_text().splitlines()] == [1, 2]


def test_shared_prefix_batch_matches_whole_sequences(tiny_base):
    """``make_batch(share_prefix=True)`` (each distinct prefix once, its KV cache expanded to the
    rows) gives the logits, gradients and teacher statistics of whole sequences: prefixes of
    different lengths, one of a single token, several shared by many rows, an empty response."""
    from transformers import AutoModelForCausalLM

    from srpo_ref.forward import make_batch, response_logits, teacher_statistics

    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32).train()
    V = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    distinct = [torch.randint(3, V, (n,), generator=g).tolist() for n in (11, 4, 1, 7)]
    prefixes = [distinct[i % 4] for i in range(10)]
    responses = [torch.randint(3, V, (int(n),), generator=g).tolist() for n in torch.randint(1, 9, (10,), generator=g)]
    responses[5] = []
    out = {}
    for share in (False, True):
        model.zero_grad()
        b = make_batch(prefixes, responses, 0, "cpu", share_prefix=share)
        logits = response_logits(model, b, None)
        weights = torch.randn(logits.shape, generator=torch.Generator().manual_seed(1))
        ((logits * weights).sum(-1) * b.mask).sum().backward()
        topk = logits.detach().topk(5, dim=-1).indices
        stats = teacher_statistics(model, b, None, topk, 1.0, None)
        out[share] = (logits * b.mask[..., None], {n: p.grad.clone() for n, p in model.named_parameters()},
                      stats.logp * b.mask[..., None], stats.entropy * b.mask, b.n_computed)
    (l0, g0, s0, e0, n0), (l1, g1, s1, e1, n1) = out[False], out[True]
    torch.testing.assert_close(l1, l0, rtol=0, atol=1e-5)
    torch.testing.assert_close(s1, s0, rtol=0, atol=1e-5)
    torch.testing.assert_close(e1, e0, rtol=0, atol=1e-5)
    for name, grad in g0.items():
        assert (g1[name] - grad).norm() <= 1e-5 * grad.norm(), name
    assert n0 == sum(len(p) + len(r) for p, r in zip(prefixes, responses))
    assert n1 == sum(len(p) - 1 for p in distinct) + sum(max(1, len(r)) for r in responses)  # each prefix once


def _fixed_steps(base, out, *extra, steps=2):
    trainer = Trainer(tiny_cfg(base, out, "method.name=srpo", *extra))
    trainer.engine = FixedRollouts(trainer.tokenizer)
    recs = [trainer.train_step() for _ in range(steps)]
    return recs, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}, \
        {k: v.detach().clone() for k,
         v in trainer.teacher.state_dict().items()} if trainer.teacher is not None else None


def test_shared_prefix_and_one_pass_update_give_the_plain_update(tiny_base, tmp_path):
    """Whole sequences with the distilled micro-batches first (``shared_prefix=false``, 3 per
    micro-batch) against: shared prefixes; shared prefixes with both branches in the update's
    one micro-batch (16) and the weight normaliser summed before the loss; shared prefixes under
    gradient checkpointing (the suffix pass recomputed with a read-only cache). Same losses, weight
    statistics, gradient norms, weights and EMA teacher after two SRPO steps."""
    plain = _fixed_steps(tiny_base, tmp_path / "plain", "optim.shared_prefix=false", "optim.micro_batch_size=3")
    assert all(r["frac_sdpo"] > 0 and r["frac_grpo"] > 0 for r in plain[0])  # both branches every step
    variants = {
        "shared": ("optim.micro_batch_size=3",),
        "one_pass": ("optim.micro_batch_size=16",),
        "checkpointing": ("optim.micro_batch_size=3", "model.gradient_checkpointing=true"),
    }
    for name, extra in variants.items():
        recs, params, teacher = _fixed_steps(tiny_base, tmp_path / name, *extra)
        for a, b in zip(plain[0], recs):
            for k in ("loss", "loss_grpo", "loss_sdpo", "grad_norm", "weight_mean", "weight_std", "weight_max",
                      "teacher_entropy_mean"):
                assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-7), (name, a["step"], k)
            assert b["tokens"] == a["tokens"], name  # the cost model is the method's, whatever the sharing
            recompute = name == "checkpointing"  # counted: a second decoder forward in the backward
            assert {k: v for k, v in b["flops"].items() if k != "update" or not recompute} == \
                   {k: v for k, v in a["flops"].items() if k != "update" or not recompute}, name
            assert (b["flops"]["update"] > a["flops"]["update"]) == recompute, name
        # per element within 3% of one Adam step (lr 1e-3): a near-zero gradient's normalised step
        # moves with the summation order
        for ref, got in ((plain[1], params), (plain[2], teacher)):
            for k, p in ref.items():
                assert (got[k] - p).norm() <= 1e-5 * p.norm(), (name, k)
                torch.testing.assert_close(got[k], p, rtol=0, atol=3e-5)
        assert recs[0]["tokens_computed"]["update"] < recs[0]["tokens"]["update"]  # prefixes really shared
        assert recs[0]["tokens_computed"]["teacher_forward"] < recs[0]["tokens"]["teacher_forward"]


def test_hf_generation_prefills_each_prompt_once_with_the_same_samples(tiny_base):
    """The HF engine's shared prefill (each prompt once, its cache repeated for the ``n`` samples)
    draws the same tokens as ``generate`` prefilling every copy; prompts of different lengths."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from srpo_ref import tasks
    from srpo_ref.rollout import HFEngine, SamplingConfig
    from srpo_ref.teacher import chat_prompt_ids

    tok = AutoTokenizer.from_pretrained(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    prompts = [chat_prompt_ids(tok, ex.messages)[: 60 - 9 * i] for i, ex in enumerate(tasks.load_task("tiny_mcq",
                                                                                                      "train")[:5])]
    sampling = SamplingConfig(temperature=1.0, top_p=0.9, max_new_tokens=12, seed=7)
    got = {shared: [[s.response_ids for s in group] for group in HFEngine(model, tok,
                                                                          shared_prefill=shared).generate(prompts, 4,
                                                                                                          sampling)]
           for shared in (False, True)}
    assert got[True] == got[False]
    assert len({tuple(r) for group in got[True] for r in group}) > 5  # really sampled, not one sequence


# ----------------------------------------------------------------------------- small defects


def test_truncated_response_keeps_sampled_pad_ids():
    from srpo_ref.rollout import trim_generated

    pad, eos = 0, 5
    # never stopped: every token was sampled, the pad id in the middle and at the end included
    assert trim_generated([7, pad, 8, pad], [eos]) == ([7, pad, 8, pad], "length")
    # stopped: cut after the end of sequence (generate pads what follows)
    assert trim_generated([7, pad, eos, pad, pad], [eos]) == ([7, pad, eos], "stop")
    assert trim_generated([9, 3, 2], [3, 2]) == ([9, 3], "stop")  # the first of several stop ids


def test_seed_salts_are_distinct_across_draws_and_ranks():
    from srpo_ref import trainer as tr

    fixed = {tr.DATA_ORDER_SALT, tr.DEMO_SALT, tr.VALIDATION_SALT}
    generation = {tr.GENERATION_SALT + 1000 * r for r in range(64)}
    assert len(fixed) == 3 and not fixed & generation and len(generation) == 64


def test_hf_rollouts_sample_under_the_trainers_autocast(tiny_base, tmp_path):
    seen = []
    trainer = Trainer(tiny_cfg(tiny_base, tmp_path, "model.dtype=bfloat16"))
    hook = trainer.model.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    trainer.engine.generate([trainer.train_set[0][1]], 2, __import__("srpo_ref.rollout").rollout.SamplingConfig(1.0,
                                                                                                                1.0, 4,
                                                                                                                0))
    hook.remove()
    assert seen and set(seen) == {torch.bfloat16}


def test_engine_answers_that_break_the_step_are_clear_errors():
    from srpo_ref.record import check_rollouts as _check_rollouts

    ok = [[Sample([1, 2], "a", "stop", [-0.1, -0.2]), Sample([3], "b", "stop", [-1.0])]]
    _check_rollouts(ok, 1, 2, 10, "x")
    for groups, n_prompts, n, match in [
        (ok, 2, 2, "1 groups for 2 prompts"),
        ([ok[0] + [Sample([4], "c", "stop")]], 1, 2, "3 samples for prompt 0"),  # would mis-group silently
        ([[Sample([1, 10], "a", "stop"), ok[0][1]]], 1, 2, r"outside the vocabulary of 10: \[10\]"),
        ([[Sample([-1], "a", "stop"), ok[0][1]]], 1, 2, "outside the vocabulary"),
        ([[Sample([1, 2], "a", "stop", [-0.1]), ok[0][1]]], 1, 2, "1 log-probs for 2 tokens"),
    ]:
        with pytest.raises(RuntimeError, match=match):
            _check_rollouts(groups, n_prompts, n, 10, "x")


class EmptyRollouts(FixedRollouts):
    """Every response empty; the engine's log-probs, when asked, are NaN."""

    def __init__(self, tokenizer, nan_logprobs=False):
        super().__init__(tokenizer)
        self.nan = nan_logprobs

    def generate(self, prompt_ids, n, sampling):
        groups = super().generate(prompt_ids, n, sampling)
        if self.nan:
            return [[Sample(s.response_ids, s.text, s.finish_reason, [float("nan")] * len(s.response_ids)) for s in g]
                    for g in groups]
        return [[Sample([], "", "stop") for _ in g] for g in groups]


@pytest.mark.parametrize("nan_logprobs", [False, True])
def test_degenerate_rollouts_give_a_finite_step(tiny_base, tmp_path, nan_logprobs):
    """All responses empty: a zero loss and a finite (zero) gradient, not 0/0. NaN engine log-probs:
    the step runs without the truncated importance weight instead of losing its update."""
    trainer = Trainer(tiny_cfg(tiny_base, tmp_path, "method.name=srpo"))
    trainer.engine = EmptyRollouts(trainer.tokenizer, nan_logprobs)
    rec = trainer.train_step()
    assert rec["grads_finite"] and math.isfinite(rec["loss"]) and math.isfinite(rec["grad_norm"])
    if not nan_logprobs:
        assert rec["loss"] == 0.0 and rec["grad_norm"] == 0.0
    else:
        assert rec["grad_norm"] > 0


def test_teacher_mix_normaliser_and_entropy_source_options(tiny_base, tmp_path):
    """The third-party forks' choices as options, on one fixed SRPO step each: ``teacher=mix``
    with lambda 1 is the frozen reference and with 0 the live student; ``weight_normalizer=
    micro_batch`` equals the step's mean when the update is one micro-batch and differs from it
    with smaller ones (raw weights unchanged); ``entropy_source=topk_tail`` gives a smaller entropy
    than the full vocabulary's."""
    def one(name, *extra):
        return _fixed_steps(tiny_base, tmp_path / name, *extra, steps=1)[0][0]

    keys = ("loss", "loss_sdpo", "grad_norm", "weight_mean", "raw_weight_mean", "teacher_entropy_mean")
    frozen, mix1 = one("frozen", "method.teacher=frozen"), one("mix1", "method.teacher=mix", "method.teacher_mix=1.0")
    live, mix0 = one("live", "method.teacher=live"), one("mix0", "method.teacher=mix", "method.teacher_mix=0.0")
    assert frozen["frac_sdpo"] > 0
    for a, b in ((frozen, mix1), (live, mix0)):
        for k in keys:
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-7), k
    step = one("step", "optim.micro_batch_size=16")
    mb_whole = one("mb_whole", "optim.micro_batch_size=16", "method.weight_normalizer=micro_batch")
    for k in keys:
        assert mb_whole[k] == pytest.approx(step[k], rel=1e-5, abs=1e-7), k
    mb_small = one("mb_small", "optim.micro_batch_size=3", "method.weight_normalizer=micro_batch")
    assert mb_small["raw_weight_mean"] == pytest.approx(step["raw_weight_mean"], rel=1e-5)
    assert mb_small["loss_sdpo"] != pytest.approx(step["loss_sdpo"], rel=1e-4)
    topk_tail = one("topk_tail", "method.entropy_source=topk_tail")
    assert topk_tail["teacher_entropy_mean"] < step["teacher_entropy_mean"]
    assert step["raw_weight_mean"] < 1.0 and step["weight_mean"] == pytest.approx(1.0)


def test_option_errors_name_the_key(tiny_base, tmp_path):
    from srpo_ref.config import ConfigError

    for extra, match in ((["optim.mini_batch_prompts=2"], "weight_normalizer=step needs one optimizer update"),
                         (["method.entropy_source=topk_tail", "method.topk=null"],
                          "entropy_source=topk_tail needs method.topk"),
                         (["method.teacher_mix=1.5"], "teacher_mix must be in"),
                         (["method.weight_normalizer=rank"], "method.weight_normalizer must be one of")):
        with pytest.raises(ConfigError, match=match):
            tiny_cfg(tiny_base, tmp_path, "method.name=srpo", *extra)
    tiny_cfg(tiny_base, tmp_path, "method.name=srpo", "optim.mini_batch_prompts=2", "method.weight_normalizer=update")
