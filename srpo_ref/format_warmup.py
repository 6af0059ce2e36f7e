"""A short format warm-up (a documented deviation from the paper): ``python -m srpo_ref.format_warmup
--model IN --out OUT --benchmark chemistry``.

SmolLM2-135M-Instruct never writes SciKnowEval's answer format (``<answer>\\nX\\n</answer>``): on
32 chemistry training questions, 0 of 256 samples had an ``<answer>`` tag and its accuracy was 0,
so every reward is 0 and GRPO, SDPO and SRPO have nothing to learn from. This fine-tunes the
model for a few steps on the *format alone*: prompts from the training split, each answered by

    <reasoning>\\nI compare the options.\\n</reasoning>\\n<answer>\\nX\\n</answer>

with ``X`` a letter drawn uniformly at random (never the gold answer, so no answer knowledge is
taught; the warmed-up model picks letters by its own preferences). Loss on the response tokens
only. The paper starts from Qwen3-8B, which follows the format unaided; nothing of this runs in
the tiny or paper profiles.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from srpo_ref import tasks
from srpo_ref.teacher import chat_prompt_ids

TEMPLATE = tasks.MCQ_RESPONSE.replace("{reasoning}", "I compare the options.")


def warmup(model_path: str, out: Path, benchmark: str, examples: int = 64, epochs: int = 2, batch_size: int = 4,
           lr: float = 1e-4, seed: int = 0, data_dir: str | None = None) -> dict:
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.time()
    rng = random.Random(seed)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    train = tasks.load_task(benchmark, "train", data_dir)
    chosen = rng.sample(train, min(examples, len(train)))
    if chosen[0].kind != "mcq":
        raise ValueError(f"the format warm-up is for multiple-choice benchmarks; {benchmark} is {chosen[0].kind}")
    eos = tok.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tok.get_vocab() else tok.eos_token_id
    pairs = []
    for ex in chosen:
        prompt = chat_prompt_ids(tok, ex.messages)
        resp = tok.encode(TEMPLATE.format(letter=rng.choice("ABCD")), add_special_tokens=False) + [eos]
        pairs.append((prompt, resp))
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
    info = {"from": str(model_path), "benchmark": benchmark, "examples": len(pairs), "epochs": epochs, "batch_size": batch_size,
            "lr": lr, "seed": seed, "template": TEMPLATE, "letters": "uniform random, never the gold answer",
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
    a = ap.parse_args(argv)
    print(json.dumps(warmup(a.model, a.out, a.benchmark, a.examples, a.epochs, lr=a.lr, seed=a.seed, data_dir=a.data_dir), indent=2))


if __name__ == "__main__":
    main()
