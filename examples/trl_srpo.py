"""Train a model with SRPO (Sample-Routed Policy Optimization) through TRL.

Copy this script for your own model, dataset and reward. It runs ``SRPOTrainer``
(``srpo_ref.integrations.trl``, built on TRL's ``SDPOTrainer``): every prompt is sampled
``--num-generations`` times, each completion is scored by ``reward``, and then

- correct completions (reward >= ``--success-threshold``), and failed ones whose group has no
  correct completion, train on the clipped policy gradient (Dr. GRPO advantages);
- failed completions with a correct sibling are distilled from the self-teacher: the model (an
  EMA copy) shown that sibling as a demonstration, weighted by the teacher's confidence.

Try it on the repository's tiny CPU model (about 20 s for the 3 steps)::

    srpo-tiny --out work/tiny/models/tiny     # once, ~30 min on CPU (`make run` builds it too,
                                              # with 800 warm-up steps instead of 600)
    python examples/trl_srpo.py --model work/tiny/models/tiny --max-steps 3

A quicker base for a smoke run (about a minute to build) answers almost nothing correctly, so
every rollout then takes the policy branch::

    python -c "from pathlib import Path; from srpo_ref.models.tiny import warmup; \\
        warmup(Path('/tmp/tiny'), steps=40, batch_size=32, eval_accuracy=False)"
    python examples/trl_srpo.py --model /tmp/tiny --max-steps 3

On your own model and data (a dataset with a ``prompt`` column, text or chat messages, and an
``answer`` column that ``reward`` compares against), on GPUs with vLLM::

    accelerate launch examples/trl_srpo.py --model Qwen/Qwen3-1.7B --dataset my_org/my_data \\
        --num-generations 8 --batch-size 32 --max-completion-length 2048 --use-vllm --max-steps 100

Without ``--dataset`` a tiny in-memory multiple-choice dataset is used (the format the tiny
model was warmed up on). Needs ``pip install -e .[trl]`` (TRL 1.16.0).
"""

from __future__ import annotations

import argparse
import re

import torch
from datasets import Dataset, load_dataset

from srpo_ref.integrations.trl import SRPOConfig, SRPOTrainer

OPTIONS = {"A": ("even", "below 500"), "B": ("odd", "below 500"), "C": ("even", "500 or more"), "D": ("odd",
                                                                                                      "500 or more")}
SYSTEM = "Pick one option. Respond as <reasoning>...</reasoning> <answer>letter</answer>."


def tiny_dataset(n: int = 32, seed: int = 0) -> Dataset:
    """``n`` chat prompts "Which is true of N?" with four options and the right letter."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for number in torch.randint(1, 1000, (n,), generator=g).tolist():
        options = "\n".join(f"{k}: {p}, {s}" for k, (p, s) in OPTIONS.items())
        answer = {(0, True): "A", (1, True): "B", (0, False): "C", (1, False): "D"}[(number % 2, number < 500)]
        prompt = [{"role": "system", "content": SYSTEM},
                  {"role": "user", "content": f"Which is true of {number}?\n{options}\nPlease reason step by step."}]
        rows.append({"prompt": prompt, "answer": answer})
    return Dataset.from_list(rows)


def extract_answer(text: str) -> str:
    """The content of the last ``<answer>...</answer>``, else the last word."""
    tags = re.findall(r"<answer>(.*?)</answer>", text, flags=re.DOTALL)
    if tags:
        return tags[-1].strip()
    words = text.split()
    return words[-1] if words else ""


def reward(completions, answer, **kwargs) -> list[float]:
    """1.0 when the completion's answer equals the row's ``answer`` (case-insensitive), else 0.0.
    TRL passes every dataset column as a keyword list; ``completions`` are strings, or chat
    messages for chat prompts."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [float(extract_answer(t).lower() == str(a).strip().lower()) for t, a in zip(texts, answer)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a model id or save_pretrained directory")
    ap.add_argument("--dataset",
                    help="a dataset id or local path with 'prompt' and 'answer' columns (default: tiny in-memory)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--output-dir", default="runs/trl_srpo")
    ap.add_argument("--max-steps", type=int, default=3)
    ap.add_argument("--num-generations", type=int, default=4, help="rollouts per prompt (G)")
    ap.add_argument("--batch-size", type=int, default=8, help="rollouts per device per micro-batch (a multiple of G)")
    ap.add_argument("--gradient-accumulation-steps", type=int, default=1)
    ap.add_argument("--max-completion-length", type=int, default=64)
    ap.add_argument("--learning-rate", type=float, default=1e-5)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--success-threshold", type=float, default=0.5)
    ap.add_argument("--teacher", default="ema", choices=["ema", "frozen", "live", "mix"])
    ap.add_argument("--teacher-mix", type=float, default=0.9)
    ap.add_argument("--weight-normalizer", default="step", choices=["step", "update", "micro_batch"])
    ap.add_argument("--entropy-source", default="full", choices=["full", "topk_tail"])
    ap.add_argument("--topk", type=int, default=100, help="K of the top-K distillation")
    ap.add_argument("--use-vllm", action="store_true", help="generate with vLLM (colocated)")
    ap.add_argument("--lora-r", type=int, default=0, help="train a LoRA adapter of this rank (0: full fine-tuning)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    train = load_dataset(a.dataset, split=a.split) if a.dataset else tiny_dataset()
    cuda = torch.cuda.is_available()
    args = SRPOConfig(
        output_dir=a.output_dir, max_steps=a.max_steps, seed=a.seed, learning_rate=a.learning_rate,
        per_device_train_batch_size=a.batch_size, gradient_accumulation_steps=a.gradient_accumulation_steps,
        num_generations=a.num_generations, max_completion_length=a.max_completion_length, temperature=a.temperature,
        success_reward_threshold=a.success_threshold, teacher=a.teacher, teacher_mix=a.teacher_mix,
        weight_normalizer=a.weight_normalizer, entropy_source=a.entropy_source, distillation_topk=a.topk,
        use_vllm=a.use_vllm, vllm_mode="colocate", bf16=cuda and torch.cuda.is_bf16_supported(),
        gradient_checkpointing=cuda, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
    )
    peft_config = None
    if a.lora_r:
        from peft import LoraConfig

        peft_config = LoraConfig(r=a.lora_r, lora_alpha=2 * a.lora_r, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    trainer = SRPOTrainer(model=a.model, reward_funcs=reward, args=args, train_dataset=train, peft_config=peft_config)
    trainer.train()
    if not trainer.accelerator.is_main_process:
        return

    keys = ("srpo/frac_correct", "srpo/frac_to_distill", "srpo/frac_to_policy", "srpo/teacher_entropy_mean",
            "srpo/raw_weight_mean", "srpo/weight_mean", "srpo/weight_min", "srpo/weight_max", "loss")
    print("step  " + "  ".join(k.removeprefix("srpo/") for k in keys))
    for h in trainer.state.log_history:
        if "srpo/frac_to_distill" in h:
            print(f"{h['step']:>4}  " + "  ".join(f"{h[k]:.4g}" if h.get(k) is not None else "-" for k in keys))


if __name__ == "__main__":
    main()
