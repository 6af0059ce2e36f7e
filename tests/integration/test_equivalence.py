"""Randomized equivalence: the trainer's gradient against autograd on the SPEC loss.

Each draw (seeded: a failure names its draw and repeats) builds a real ``Trainer`` on the tiny
model and runs one real step, with the rollout engine replaced by ``ScriptedRollouts``: sampling
cannot be told to produce the longest row in one branch, empty or truncated responses, or a given
mix of rewards, and the test needs all of those. Everything downstream (reward, routing,
micro-batching, shared prefixes, the teacher forward, the one-pass and two-pass update layouts,
checkpointing, gradient all-reduce) is the trainer's own.

The reference is independent of the trainer's batching: every sequence runs alone through a
float64 copy of the model (no padding, no KV cache, no hooks), log-softmax over the full
vocabulary, and the SPEC section 3-6 loss is written out here in plain tensor code. Only the
routing draw (``losses.route_samples``, checked by hand in test_losses.py) and the teacher's
prompt (``teacher.teacher_input_ids``) are shared with the trainer.

The step is the first of the run, where the warm-up schedule's learning rate is 0: parameters do
not move between updates, so every update's gradient (captured at ``optimizer.step``, before
which nothing scales it: ``grad_clip`` is huge) is compared with the reference at one point.
"""

from __future__ import annotations

import math
import os
import random
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from srpo_ref import losses
from srpo_ref.config import load_config
from srpo_ref.rollout import Sample
from srpo_ref.teacher import teacher_input_ids
from srpo_ref.trainer import DEMO_SALT, Trainer, step_seed

N_DRAWS = int(os.environ.get("SRPO_EQUIV_DRAWS", "20"))
REL_TOL = 1e-5


class ScriptedRollouts:
    """Responses of chosen shapes and rewards (see the module docstring). Token ids are random,
    pad ids included (a sampled pad token is a token like any other); the text, which the real
    reward scores, names the gold letter or a wrong one. ``kinds`` picks each response's shape:
    ``stop`` (EOS at a random place inside the budget), ``length`` (truncated: the whole budget,
    no EOS), ``empty`` (no token at all) and ``eos`` (EOS alone)."""

    name = "scripted"

    def __init__(self, trainer, rng: random.Random, max_tokens: int, rewards: str = "mixed",
                 longest_correct: bool = False, with_logprobs: bool = False, long_branch: str | None = None):
        self.by_prompt = {tuple(ids): ex for ex, ids in trainer.train_set}
        self.tok, self.rng, self.max_tokens = trainer.tokenizer, rng, max_tokens
        self.rewards, self.longest_correct, self.with_logprobs = rewards, longest_correct, with_logprobs
        self.long_branch = long_branch  # "correct" / "wrong": those rows are the long ones (one branch the longest)
        self.vocab = trainer.model.config.vocab_size
        self.outputs: list[list[Sample]] = []

    def sync_weights(self, model):
        pass

    def _ids(self, n):
        eos = self.tok.eos_token_id
        return [t for t in (self.rng.randrange(self.vocab) for _ in range(n * 2)) if t != eos][:n]

    def generate(self, prompt_ids, n, sampling):
        out = []
        eos = self.tok.eos_token_id
        for gi, ids in enumerate(prompt_ids):
            gold = self.by_prompt[tuple(ids)].gold
            p = {"mixed": self.rng.random(), "all_wrong": 0.0, "all_right": 1.0}[self.rewards]
            group = []
            for j in range(n):
                kind = self.rng.choice(["stop"] * 5 + ["length", "empty", "eos"])
                correct = self.rng.random() < p
                if self.longest_correct:  # one correct truncated row, beside a failed one; the rest short
                    kind = "length" if (gi, j) == (0, 0) else ("stop" if kind == "length" else kind)
                    correct = True if (gi, j) == (0, 0) else (False if (gi, j) == (0, 1) else correct)
                half = self.max_tokens // 2
                lo, hi = 1, self.max_tokens
                if self.long_branch is not None:  # the chosen branch's rows long, the other's short
                    lo, hi = (half, self.max_tokens) if correct == (self.long_branch == "correct") else (1, max(2,
                                                                                                                half))
                if kind == "stop":
                    rid = self._ids(self.rng.randrange(lo, hi)) + [eos]
                elif kind == "length":
                    rid = self._ids(self.max_tokens)
                elif kind == "empty":
                    rid = []
                else:
                    rid = [eos]
                letter = gold if correct else next(c for c in "ABCD" if c != gold)
                text = f"<reasoning>scripted</reasoning> <answer>{letter}</answer>"
                lp = [-self.rng.uniform(0.05, 3.0) for _ in rid] if self.with_logprobs else None
                group.append(Sample(rid, text, "length" if kind == "length" else "stop", lp))
            out.append(group)
        self.outputs.extend(out)
        return out


def draw_setup(draw: int) -> dict:
    """The configuration of one draw, from its seed."""
    rng = random.Random(1000 + draw)
    method = ["srpo", "grpo", "sdpo", "srpo", "adv_mix"][draw % 5]
    P = rng.choice([2, 4])
    M = rng.choice([m for m in (1, 2, 4) if P % m == 0])  # prompts per update: P // M updates
    G = rng.choice([3, 4])
    one_pass = draw % 4 == 0 or rng.random() < 0.5
    mb = 64 if one_pass else rng.randint(1, 7)
    return {
        "method": method, "P": P, "M": M, "G": G, "micro_batch": mb,
        "shared_prefix": rng.random() < 0.6, "checkpointing": rng.random() < 0.3,
        "logits_chunk": rng.choice([None, 1, 3, 7]), "loss_agg": rng.choice(["token_mean", "token_mean",
                                                                             "seq_mean_token_mean"]),
        "max_tokens": rng.randint(4, 20), "logprobs": rng.random() < 0.3, "longest_correct": draw % 4 == 0,
        "long_branch": rng.choice([None, "correct", "wrong"]),
        "step_seed": rng.randrange(1000), "old_logprob": rng.choice(["auto", "always"]),
    }


def make_trainer(base, out, s: dict, world: int = 1) -> Trainer:
    cfg = load_config(None, [
        f"model.path={base}", f"run.out_dir={out}", "data.benchmark=tiny_mcq", f"method.name={s['method']}",
        f"rollout.prompts_per_step={s['P'] * world}", f"rollout.rollouts_per_prompt={s['G']}",
        f"rollout.max_response_tokens={s['max_tokens']}", f"optim.mini_batch_prompts={s['M'] * world}",
        f"optim.micro_batch_size={s['micro_batch']}", f"optim.shared_prefix={str(s['shared_prefix']).lower()}",
        f"model.gradient_checkpointing={str(s['checkpointing']).lower()}",
        f"method.logits_chunk={'null' if s['logits_chunk'] is None else s['logits_chunk']}",
        f"method.loss_agg={s['loss_agg']}", f"optim.old_logprob={s['old_logprob']}", "optim.lr=1e-3",
                             "optim.warmup_steps=2", "optim.grad_clip=1e9",
        f"run.seed={s['step_seed']}", "run.progress=false", "run.threads=1", "eval.limit=4",
        "method.weight_normalizer=update",  # the spec loss below normalises each update (several per step here)
    ])
    return Trainer(cfg)


def run_step(trainer: Trainer, s: dict, rewards: str = "mixed") -> dict:
    """One real training step with scripted rollouts; returns what the reference needs."""
    engine = ScriptedRollouts(trainer, random.Random(s["step_seed"] * 7 + trainer.cfg.rollout.prompts_per_step),
                              s["max_tokens"], rewards, s["longest_correct"], s["logprobs"], s["long_branch"])
    trainer.engine = engine
    state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    grads = []
    step = trainer.optimizer.step

    def capture(*a, **k):
        grads.append({n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
        return step(*a, **k)

    trainer.optimizer.step = capture
    prompts, global_index = trainer.prompts_for_step(0)
    rec = trainer.train_step()
    assert rec["lr"] == 0.0  # the premise of comparing every update at one point
    G = trainer.cfg.rollout.rollouts_per_prompt
    rows = [{"key": g * G + j, "group": g, "prompt": ids, "messages": ex.messages, "response": smp.response_ids,
             "text": smp.text, "reward": ex.score(smp.text), "logprobs": smp.logprobs}
            for (ex, ids), g, group in zip(prompts, global_index, engine.outputs) for j, smp in enumerate(group)]
    return {"rows": rows, "grads": grads, "state": state, "rec": rec}


# ----------------------------------------------------------------------------- the reference


def _response_logp(model, prompt: list[int], response: list[int], temperature: float) -> torch.Tensor:
    """Full-vocabulary log-probs ``[R, V]`` of the positions that predict ``response``: one plain
    forward of ``prompt + response`` alone."""
    ids = torch.tensor([prompt + response])
    logits = model(input_ids=ids, use_cache=False).logits[0]
    return F.log_softmax(logits[len(prompt) - 1 : len(prompt) - 1 + len(response)] / temperature, dim=-1)


def _topk_tail(logp: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    rest = logp.scatter(-1, ids, -math.inf)
    tail = torch.logsumexp(rest, -1, keepdim=True).clamp(min=math.log(losses.TAIL_FLOOR))
    return torch.cat([logp.gather(-1, ids), tail], -1)


def _jsd(s: torch.Tensor, t: torch.Tensor, alpha: float) -> torch.Tensor:
    m = torch.log((1 - alpha) * s.exp() + alpha * t.exp())
    def kl(a, b):
        return (a.exp() * (a - b)).sum(-1)
    return (1 - alpha) * kl(s, m) + alpha * kl(t, m)


def reference_gradients(base, tokenizer, cfg, rows: list[dict], state: dict) -> list[dict]:
    """Per optimizer update, the gradient of the SPEC loss (sections 3-6) in float64."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float64, attn_implementation="eager")
    model.load_state_dict({k: v.double() for k, v in state.items()})
    teacher = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float64, attn_implementation="eager")
    teacher.load_state_dict({k: v.double() for k, v in state.items()})  # the EMA teacher at step 0 is the student
    model.eval(), teacher.eval()  # no dropout in either; the trainer's forwards are deterministic too
    m, temp = cfg.method, cfg.rollout.temperature
    rows = sorted(rows, key=lambda r: r["key"])
    rewards = torch.tensor([r["reward"] for r in rows], dtype=torch.float64)
    groups = torch.tensor([r["group"] for r in rows])
    routing = losses.route_samples(rewards, groups, m.name, m.success_threshold,
                                   generator=torch.Generator().manual_seed(step_seed(cfg.run.seed, 0, salt=DEMO_SALT)))
    beta = cfg.beta
    out = []
    M = cfg.optim.mini_batch_prompts
    for u in range(cfg.rollout.prompts_per_step // M):
        members = [i for i, r in enumerate(rows) if u * M <= r["group"] < (u + 1) * M]
        model.zero_grad(set_to_none=True)
        N = sum(len(rows[i]["response"]) for i in members)
        S = len(members)
        per_row, sdpo_parts = [], []
        for i in members:
            r = rows[i]
            R = len(r["response"])
            if R == 0:
                continue
            same = [rewards[k] for k in range(len(rows)) if rows[k]["group"] == r["group"]]
            adv = rewards[i] - sum(same) / len(same)
            logp_full = _response_logp(model, r["prompt"], r["response"], temp)
            logp = logp_full.gather(-1, torch.tensor(r["response"])[:, None])[:, 0]
            old = logp.detach()
            ratio = torch.exp(logp - old)
            l_grpo = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - m.eps_low, 1 + m.eps_high))
            if adv < 0:
                l_grpo = torch.minimum(l_grpo, -m.dual_clip * adv * torch.ones_like(l_grpo))
            tis = torch.ones(R, dtype=torch.float64)
            if r["logprobs"] is not None:
                tis = torch.exp(old - torch.tensor(r["logprobs"], dtype=torch.float64)).clamp(max=m.is_clip)
            scale = 1.0 / R if m.loss_agg == "seq_mean_token_mean" else 1.0
            per_row.append(scale * (float(routing.grpo_coef[i]) * l_grpo * tis).sum())
            if routing.sdpo_coef[i] > 0:
                demo = rows[int(routing.demo_index[i])]["text"]
                t_ids, t_plen = teacher_input_ids(tokenizer, r["messages"], demo, r["response"], m.max_demo_tokens)
                with torch.no_grad():
                    t_full = _response_logp(teacher, t_ids[:t_plen], r["response"], temp)
                ids = logp_full.detach().topk(min(m.topk, logp_full.shape[-1]), -1).indices
                l_sdpo = _jsd(_topk_tail(logp_full, ids), _topk_tail(t_full, ids), m.alpha)
                entropy = -(t_full.exp() * t_full).sum(-1)
                rho = torch.exp(logp - old).detach().clamp(max=m.is_clip) * tis
                sdpo_parts.append((scale, float(routing.sdpo_coef[i]), torch.exp(-beta * entropy), rho, l_sdpo))
        # SPEC section 5: the weights' mean over every distilled token of the update
        raw = [p[2] for p in sdpo_parts]
        mean_w = (sum(w.sum() for w in raw) / sum(len(w) for w in raw)) if raw else 1.0
        total = sum(per_row) + sum(sc * c * ((w / mean_w) * rho * loss).sum() for sc, c, w, rho, loss in sdpo_parts)
        total = total / (S if m.loss_agg == "seq_mean_token_mean" else max(N, 1))
        if torch.is_tensor(total) and total.requires_grad:
            total.backward()
        out.append({n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()})
    return out


def assert_gradients_match(got: list[dict], want: list[dict], label: str) -> None:
    assert len(got) == len(want), f"{label}: {len(got)} updates, reference {len(want)}"
    for u, (g, w) in enumerate(zip(got, want)):
        names = sorted(w)
        gv = torch.cat([g.get(n, torch.zeros_like(w[n])).double().flatten() for n in names])
        wv = torch.cat([w[n].flatten() for n in names])
        err = (gv - wv).norm() / wv.norm().clamp(min=1e-30)
        print(f"{label.split(' {')[0]}, update {u}: relative gradient error {err:.2e}")
        assert wv.norm() > 0 or gv.norm() == 0, (f"{label}, update {u}: the reference gradient is 0, "
                                                 "the trainer's is not")
        assert err <= REL_TOL, f"{label}, update {u}: relative gradient error {err:.2e} (|ref| {wv.norm():.3e})"


@pytest.mark.parametrize("draw", range(N_DRAWS))
def test_trainer_gradient_equals_spec_loss_gradient(tiny_base, tmp_path, draw):
    s = draw_setup(draw)
    trainer = make_trainer(tiny_base, tmp_path / "run", s)
    got = run_step(trainer, s)
    want = reference_gradients(tiny_base, trainer.tokenizer, trainer.cfg, got["rows"], got["state"])
    assert_gradients_match(got["grads"], want, f"draw {draw} {s}")
    if draw == 0:  # the layout that crashed: one pass, a correct (GRPO-routed) row the longest
        assert got["rec"]["frac_sdpo"] > 0 and got["rec"]["frac_grpo"] > 0


# ----------------------------------------------------------------------------- two ranks


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_step(rank, world, port, base, out, s, result_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        trainer = make_trainer(base, out, s, world)
        # rank 1's groups all fail: it has nothing to distil while rank 0 distils
        mine = s if rank == 0 else {**s, "longest_correct": False}
        got = run_step(trainer, mine, rewards="mixed" if rank == 0 else "all_wrong")
        torch.save(got, os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("method,micro_batch", [("srpo", 64), ("srpo", 3), ("sdpo", 64), ("grpo", 2)])
def test_two_ranks_one_distilling_nothing_equal_spec_loss_gradient(tiny_base, tmp_path, method, micro_batch):
    s = {**draw_setup(3), "method": method, "micro_batch": micro_batch, "P": 2, "M": 2 if method != "grpo" else 1,
         "G": 4, "longest_correct": True, "checkpointing": False}
    mp.spawn(_rank_step, args=(2, _free_port(), str(tiny_base), str(tmp_path / "run"), s, str(tmp_path)), nprocs=2,
             join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{k}.pt", weights_only=False) for k in (0, 1))
    assert r1["rec"]["teacher_forward_samples"] == 0
    assert r0["rec"]["teacher_forward_samples"] > 0 or method == "grpo"
    cfg = load_config(None, [f"model.path={tiny_base}", f"method.name={method}",
                             f"rollout.prompts_per_step={2 * s['P']}",
                             f"rollout.rollouts_per_prompt={s['G']}", f"optim.mini_batch_prompts={2 * s['M']}",
                             f"method.loss_agg={s['loss_agg']}", f"run.seed={s['step_seed']}",
                             "method.weight_normalizer=update"])
    from transformers import AutoTokenizer

    want = reference_gradients(tiny_base, AutoTokenizer.from_pretrained(tiny_base), cfg, r0["rows"] + r1["rows"],
                               r0["state"])
    assert_gradients_match(r0["grads"], want, f"2 ranks {s}")
    assert_gradients_match(r1["grads"], want, f"2 ranks (rank 1) {s}")
