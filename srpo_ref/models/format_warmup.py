"""A short format warm-up (a documented deviation from the paper): ``python -m srpo_ref.models.format_warmup
--model IN --out OUT --benchmark chemistry``.

SmolLM2-135M-Instruct never writes SciKnowEval's answer format (``<answer>\\nX\\n</answer>``): on
32 chemistry training questions, 0 of 256 samples had an ``<answer>`` tag and its accuracy was 0,
so every reward is 0 and GRPO, SDPO and SRPO have nothing to learn from. This fine-tunes the
model for a few steps on the *format alone*: prompts from the training split, each answered by

    <reasoning>\\nI compare the options.\\n</reasoning>\\n<answer>\\nX\\n</answer>

with ``X`` a letter drawn uniformly at random (never the gold answer, so no answer knowledge is
taught; the warmed-up model picks letters by its own preferences). Whole-number tasks (the
reasoning-gym tasks, reward kind ``integer``) get the same template with a number drawn uniformly
from 0-99, redrawn when it equals the gold: the model learns where the answer goes, never what it
is. Loss on the response tokens only.

``--answers own`` (whole-number tasks): random numbers teach that the answer is unrelated to the
question. Measured on ``gym_add1`` (one-digit sums) after the random warm-up, 1 of 512 samples
was right. In this mode the target answer is instead the model's *own*: it answers each training
prompt greedily and unformatted, and its own text becomes the reasoning and the last number in
it the answer (prompts where it writes no number, or runs past the budget, are dropped). The
model learns where its answer goes; its answers, right or wrong, are its own, never the gold. The
paper starts from Qwen3-8B, which follows the format unaided; nothing of this runs in the tiny or
paper profiles.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

import torch

from srpo_ref import tasks
from srpo_ref.teacher import chat_prompt_ids

TEMPLATE = tasks.MCQ_RESPONSE.replace("{reasoning}", "I compare the options.")
INTEGER_TEMPLATE = tasks.MCQ_RESPONSE.replace("{reasoning}", "I work it out.")


def format_only_response(ex: tasks.Example, rng: random.Random) -> str:
    """The answer format around an answer that is never the gold (a random letter or number)."""
    if ex.kind == "mcq":
        return TEMPLATE.format(letter=rng.choice([c for c in "ABCD" if c != ex.gold] or "ABCD"))
    if ex.kind == "integer":
        number = rng.randrange(100)
        while str(number) == str(ex.gold):
            number = rng.randrange(100)
        return INTEGER_TEMPLATE.format(letter=number)
    raise ValueError(f"the format warm-up is for multiple-choice and whole-number tasks; {ex.id} is {ex.kind}")


_LAST_INTEGER = re.compile(r"[+-]?\d+(?!.*\d)", re.DOTALL)


def own_answer_responses(model, tok, examples: list, max_new_tokens: int = 96, batch_size: int = 16) -> list:
    """(example, formatted response) for the examples where the model's own greedy, unformatted
    answer finishes within ``max_new_tokens`` and ends on a number."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    stops = {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")} - {None}
    pairs = []
    for i in range(0, len(examples), batch_size):
        batch = examples[i : i + batch_size]
        prompts = [chat_prompt_ids(tok, [m for m in ex.messages if m["role"] == "user"]) for ex in batch]
        L = max(map(len, prompts))
        ids = torch.tensor([[pad] * (L - len(p)) + p for p in prompts])
        attn = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in prompts])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=attn, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=pad)
        for ex, row in zip(batch, out[:, L:].tolist()):
            if not stops & set(row):
                continue  # ran past the budget: its last number may be a step, not its answer
            text = tok.decode(row, skip_special_tokens=True).strip()
            number = _LAST_INTEGER.search(text)
            if number:
                pairs.append((ex, tasks.MCQ_RESPONSE.format(reasoning=text, letter=int(number.group()))))
    return pairs


def warmup(model_path: str, out: Path, benchmark: str, examples: int = 64, epochs: int = 2, batch_size: int = 4,
           lr: float = 1e-4, seed: int = 0, data_dir: str | None = None, answers: str = "random") -> dict:
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.time()
    rng = random.Random(seed)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    train = tasks.load_task(benchmark, "train", data_dir)
    chosen = rng.sample(train, min(examples, len(train)))
    eos = tok.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tok.get_vocab() else tok.eos_token_id
    if answers == "own":
        if chosen[0].kind != "integer":
            raise ValueError(f"--answers own is for whole-number tasks; {benchmark} is {chosen[0].kind}")
        targets = own_answer_responses(model, tok, chosen)
    elif answers == "random":
        targets = [(ex, format_only_response(ex, rng)) for ex in chosen]
    else:
        raise ValueError(f"answers must be 'random' or 'own', got {answers!r}")
    if not targets:
        raise ValueError(f"the model answered none of the {len(chosen)} warm-up prompts with a number")
    pairs = [(chat_prompt_ids(tok, ex.messages), tok.encode(resp, add_special_tokens=False) + [eos]) for ex,
             resp in targets]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    steps = epochs * ((len(pairs) + batch_size - 1) // batch_size)
    bar = tqdm(total=steps, desc="format warm-up", unit="step", mininterval=10)
    for _ in range(epochs):
        rng.shuffle(pairs)
        for i in range(0, len(pairs), batch_size):
            batch = pairs[i : i + batch_size]
            L = max(len(p) + len(r) for p, r in batch)
            ids = torch.full((len(batch), L), tok.pad_token_id or eos, dtype=torch.long)
            labels = torch.full_like(ids, -100)
            attn = torch.zeros_like(ids)
            for j, (p, r) in enumerate(batch):
                ids[j, : len(p) + len(r)] = torch.tensor(p + r)
                labels[j, len(p) : len(p) + len(r)] = torch.tensor(r)
                attn[j, : len(p) + len(r)] = 1
            loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    info = {"from": str(model_path), "benchmark": benchmark, "answers": answers, "prompts": len(chosen),
            "examples": len(pairs),
            "own_answers_right": sum(ex.score(r) for ex, r in targets) if answers == "own" else None, "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr, "seed": seed,
            "template": (tasks.MCQ_RESPONSE if answers == "own"
                         else TEMPLATE if chosen[0].kind == "mcq" else INTEGER_TEMPLATE),
            "loss_first": losses[0], "loss_last": losses[-1], "seconds": round(time.time() - t0, 1)}
    (out / "format_warmup.json").write_text(json.dumps(info, indent=2))
    return info


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--benchmark", default="chemistry")
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--answers", default="random", choices=["random", "own"],
                    help="the answer inside the format: random (never the gold) or the model's own "
                         "(whole-number tasks)")
    a = ap.parse_args(argv)
    print(json.dumps(warmup(a.model, a.out, a.benchmark, a.examples, a.epochs, lr=a.lr, seed=a.seed,
                            data_dir=a.data_dir, answers=a.answers), indent=2))


if __name__ == "__main__":
    main()
