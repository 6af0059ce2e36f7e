"""Build the tiny base policy that the default (CPU) reproduction trains: ``srpo-tiny --out DIR``.

What it makes, in one directory loadable with ``from_pretrained(DIR)``:

1. A byte-level BPE tokenizer trained here with the ``tokenizers`` library on text of the tiny
   tasks (digits split one per token), saved as a Hugging Face tokenizer with a ChatML chat
   template (``<|im_start|>role ... <|im_end|>``).
2. A small ``Qwen3ForCausalLM`` built from a config (about 1M parameters).
3. A short supervised warm-up on the tiny tasks (``srpo_ref.tasks``: ``tiny_mcq``, ``tiny_tool``)
   that leaves a *partial* skill, so RL has something to sharpen:
   - student-format rows carry the right answer with probability ``label_accuracy`` and a random
     well-formed answer otherwise, so the base policy answers correctly only part of the time;
   - teacher-format rows (SPEC section 4: the question, "Correct solution:", a correct
     response, "Correctly solve the original question.") always carry the right answer, so the
     model shown a demonstration is a clearly better self-teacher.
4. ``warmup.json``: the warm-up config, loss curve, and measured base accuracy (greedy and
   sampled) on each tiny test split, with and without a demonstration.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

from srpo_ref import rewards, tasks
from srpo_ref.rollout import HFEngine, SamplingConfig
from srpo_ref.teacher import build_teacher_messages, chat_prompt_ids

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def correct_response(ex: tasks.Example) -> str:
    if ex.kind == "mcq":
        return tasks.tiny_mcq_response(ex.meta["n"], ex.gold)
    return rewards.format_tool_calls(ex.gold, thought="I will call the tool.")


def random_response(ex: tasks.Example, rng: random.Random) -> str:
    """A well-formed answer that is right only by chance."""
    if ex.kind == "mcq":
        return tasks.tiny_mcq_response(ex.meta["n"], rng.choice("ABCD"))
    return rewards.format_tool_calls(tasks.tiny_tool_call(rng.choice(list(tasks.TINY_TOOLS))),
                                     thought="I will call the tool.")


def render(messages, response=None) -> str:
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"
    return text if response is None else text + response + "<|im_end|>\n"


def train_tokenizer(vocab_size: int = 1024):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = []
    for name in tasks.TINY_BENCHMARKS:
        for ex in tasks.load_task(name, "train"):
            corpus.append(render(ex.messages, correct_response(ex)))
            corpus.append(render(build_teacher_messages(ex.messages, random_response(ex, rng))))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None, unk_token=None
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


def build_model(tokenizer, hidden: int = 128, layers: int = 4, heads: int = 4, seed: int = 0):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), head_dim=hidden // heads,
        max_position_embeddings=1024, tie_word_embeddings=True, rope_theta=10000.0,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return Qwen3ForCausalLM(cfg)


def _encode_pair(tokenizer, prompt_text: str, response_text: str):
    p = tokenizer.encode(prompt_text, add_special_tokens=False)
    r = tokenizer.encode(response_text + "<|im_end|>", add_special_tokens=False)
    return p + r, [-100] * len(p) + r


def warmup_rows(tokenizer, label_accuracy: float, teacher_fraction: float, seed: int):
    """Tokenised (input_ids, labels) rows for the supervised warm-up (loss on the response only)."""
    rng = random.Random(seed)
    rows = []
    for name in tasks.TINY_BENCHMARKS:
        for ex in tasks.load_task(name, "train"):
            good = correct_response(ex)
            student = good if rng.random() < label_accuracy else random_response(ex, rng)
            rows.append(_encode_pair(tokenizer, render(ex.messages), student))
            if rng.random() < teacher_fraction:
                teacher_msgs = build_teacher_messages(ex.messages, good)
                rows.append(_encode_pair(tokenizer, render(teacher_msgs), good))
    return rows


def _batch(rows, pad_id):
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id)
    labels = torch.full((len(rows), width), -100)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        attn[i, : len(x)] = 1
    return ids, labels, attn


def accuracy(model, tokenizer, examples, teacher_demo: bool = False, greedy: bool = True, samples: int = 1,
             seed: int = 0) -> float:
    """Mean reward of ``samples`` generations per question, through the shared HF rollout engine."""
    messages = [build_teacher_messages(ex.messages,
                                       correct_response(ex)) if teacher_demo else ex.messages for ex in examples]
    prompts = [chat_prompt_ids(tokenizer, m) for m in messages]
    sampling = SamplingConfig(0.0 if greedy else 1.0, 1.0, 64, seed)
    groups = HFEngine(model, tokenizer).generate(prompts, samples, sampling)
    scores = [ex.score(s.text) for ex, group in zip(examples, groups) for s in group]
    return sum(scores) / max(len(scores), 1)


def warmup(out: Path, steps: int = 600, batch_size: int = 64, lr: float = 3e-3, label_accuracy: float = 0.4,
           teacher_fraction: float = 0.5, hidden: int = 128, layers: int = 4, seed: int = 0, log_every: int = 50,
           eval_accuracy: bool = True) -> dict:
    from tqdm import tqdm

    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.time()
    tokenizer = train_tokenizer()
    model = build_model(tokenizer, hidden=hidden, layers=layers, seed=seed)
    rows = warmup_rows(tokenizer, label_accuracy, teacher_fraction, seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    rng = random.Random(seed)
    losses = []
    model.train()
    for step in (bar := tqdm(range(steps), desc="warm-up", unit="step", mininterval=2 if sys.stderr.isatty() else 30)):
        ids, labels, attn = _batch(rng.sample(rows, batch_size), tokenizer.pad_token_id)
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    report = {"config": {"steps": steps, "batch_size": batch_size, "lr": lr, "label_accuracy": label_accuracy,
                         "teacher_fraction": teacher_fraction, "hidden": hidden, "layers": layers, "seed": seed},
              "n_params": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer),
              "loss_curve": [sum(losses[i : i + log_every]) / len(losses[i : i + log_every])
                             for i in range(0, steps, log_every)],
              "accuracy": {}}
    for name in tasks.TINY_BENCHMARKS if eval_accuracy else ():
        test = tasks.load_task(name, "test")
        report["accuracy"][name] = {
            "greedy": accuracy(model, tokenizer, test),
            "sampled_t1_avg4": accuracy(model, tokenizer, test, greedy=False, samples=4),
            "teacher_with_demo_sampled_avg4": accuracy(model, tokenizer, test, teacher_demo=True, greedy=False,
                                                       samples=4),
        }
    report["seconds"] = time.time() - t0
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "warmup.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="directory for the base checkpoint")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--label-accuracy", type=float, default=0.4,
                    help="chance a student-format row carries the right answer")
    ap.add_argument("--teacher-fraction", type=float, default=0.5)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    report = warmup(a.out, a.steps, a.batch_size, a.lr, a.label_accuracy, a.teacher_fraction, a.hidden, a.layers,
                    a.seed)
    print(json.dumps({k: v for k, v in report.items() if k != "loss_curve"}, indent=2))


if __name__ == "__main__":
    main()
