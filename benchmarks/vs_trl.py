"""Our trainer against TRL on the same job: ``python benchmarks/vs_trl.py --model work/tiny/models/tiny``.

The job (the issue's): ``tiny_mcq`` training prompts, 8 prompts x 8 rollouts per step, 40 new
tokens at temperature 1, one optimizer update per step, fp32, one CPU thread, HF ``generate`` for
rollouts in both. Runners:

    ours_grpo   srpo_ref.trainer, method.name=grpo
    ours_sdpo   srpo_ref.trainer, method.name=sdpo (top-100 distillation with tail, EMA teacher)
    ours_srpo   srpo_ref.trainer, method.name=srpo (at equal updates per step: SRPO's step should
                cost no more than GRPO's)
    trl_grpo    trl.GRPOTrainer
    trl_sdpo    trl.experimental.sdpo.SDPOTrainer (topk_logits, K=100, tail, EMA teacher)

Each (runner, round) is its own process (so peak RSS is the runner's), running ``--steps`` steps;
the first is a warm-up and not counted. Rounds interleave the runners in a rotating order, so a
change of the machine's load hits all of them alike. Prints and writes (``--out``) per runner the
median seconds per step over all rounds, min and max, peak RSS, and the ratios TRL / ours.
TRL is the optional ``bench`` extra (``pip install -e .[bench]``, pinned).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROMPTS, ROLLOUTS, NEW_TOKENS, TOPK = 8, 8, 40, 100
RUNNERS = ("ours_grpo", "ours_sdpo", "ours_srpo", "trl_grpo", "trl_sdpo")


def _ours(model: str, method: str, steps: int, tmp: str) -> list[float]:
    from srpo_ref.config import load_config
    from srpo_ref.trainer import Trainer

    cfg = load_config(None, [
        f"model.path={model}", f"run.out_dir={tmp}", "data.benchmark=tiny_mcq", f"method.name={method}",
        f"rollout.prompts_per_step={PROMPTS}", f"rollout.rollouts_per_prompt={ROLLOUTS}",
                             f"rollout.max_response_tokens={NEW_TOKENS}",
        "rollout.temperature=1.0", f"optim.mini_batch_prompts={PROMPTS}",
                             f"optim.micro_batch_size={PROMPTS * ROLLOUTS}",
        "optim.lr=1e-4", "optim.warmup_steps=0", f"method.topk={TOPK}", "eval.val_every=0", "run.threads=1",
                             "run.progress=false",
    ])
    trainer = Trainer(cfg)
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step()
        out.append(time.perf_counter() - t0)
    return out


def _trl(model_path: str, method: str, steps: int, tmp: str) -> list[float]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from srpo_ref import rewards, tasks

    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    examples = tasks.load_task("tiny_mcq", "train")
    data = Dataset.from_list([{"prompt": ex.messages, "gold": str(ex.gold)} for ex in examples])

    def reward(prompts, completions, gold, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [rewards.score("mcq", t, g) for t, g in zip(texts, gold)]

    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t0)

    common = dict(output_dir=tmp, per_device_train_batch_size=PROMPTS * ROLLOUTS, num_generations=ROLLOUTS,
                  max_completion_length=NEW_TOKENS, temperature=1.0, top_p=1.0, learning_rate=1e-4, max_steps=steps,
                  gradient_accumulation_steps=1, logging_steps=1, report_to="none", save_strategy="no", use_cpu=True,
                  bf16=False, dataloader_num_workers=0, seed=0, beta=0.0, disable_tqdm=True,
                  lr_scheduler_type="constant")
    if method == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=GRPOConfig(**common), train_dataset=data,
                              processing_class=tok, callbacks=[StepTimer()])
    else:
        from trl.experimental.sdpo import SDPOConfig, SDPOTrainer

        cfg = SDPOConfig(**common, distillation_mode="topk_logits", distillation_topk=TOPK, distillation_alpha=0.5,
                         distillation_add_tail=True, teacher_model_kind="ema", teacher_update_rate=0.05)
        trainer = SDPOTrainer(model=model, reward_funcs=reward, args=cfg, train_dataset=data, processing_class=tok,
                              callbacks=[StepTimer()])
    trainer.train()
    return times


def worker(runner: str, model: str, steps: int) -> dict:
    import tempfile

    import torch

    torch.set_num_threads(1)
    side, method = runner.split("_")
    with tempfile.TemporaryDirectory() as tmp:
        times = (_ours if side == "ours" else _trl)(model, method, steps, tmp)
    return {"runner": runner, "step_seconds": times,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "trl", "accelerate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(REPO / "work/tiny/models/tiny"))
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3, help="steps per (runner, round); the first is not counted")
    ap.add_argument("--runners", nargs="+", default=list(RUNNERS), choices=RUNNERS)
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print("RESULT " + json.dumps(worker(a.worker, a.model, a.steps)))
        return
    runs: dict[str, list[dict]] = {r: [] for r in a.runners}
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    import os

    for rnd in range(a.rounds):
        order = a.runners[rnd % len(a.runners):] + a.runners[: rnd % len(a.runners)]
        for r in order:
            res = subprocess.run([sys.executable, __file__, "--worker", r, "--model", a.model, "--steps", str(a.steps)],
                                 capture_output=True, text=True, env={**os.environ, **env}, cwd=REPO)
            line = next((out_line for out_line in res.stdout.splitlines() if out_line.startswith("RESULT ")), None)
            if res.returncode != 0 or line is None:
                raise SystemExit(f"{r} failed:\n{res.stderr[-3000:]}")
            runs[r].append(json.loads(line[len("RESULT "):]))
            print(f"round {rnd + 1}/{a.rounds} {r}: {[round(t, 3) for t in runs[r][-1]['step_seconds'][1:]]}",
                  file=sys.stderr)
    table = {}
    for r, rs in runs.items():
        steps = [t for x in rs for t in x["step_seconds"][1:]]
        table[r] = {"median_s": statistics.median(steps), "min_s": min(steps), "max_s": max(steps),
                    "n_steps": len(steps),
                    "peak_rss_mb": max(x["peak_rss_mb"] for x in rs)}
    ratios = {f"trl/ours {m}": table[f"trl_{m}"]["median_s"] / table[f"ours_{m}"]["median_s"]
              for m in ("grpo", "sdpo") if f"trl_{m}" in table and f"ours_{m}" in table}
    result = {"job": {"benchmark": "tiny_mcq", "prompts": PROMPTS, "rollouts": ROLLOUTS, "new_tokens": NEW_TOKENS,
                      "topk": TOPK,
                      "threads": 1, "rounds": a.rounds, "steps_counted_per_round": a.steps - 1, "model": a.model},
              "versions": versions(), "runners": table, "ratios": ratios}
    print(f"{'runner':<10} {'median s/step':>14} {'min':>7} {'max':>7} {'peak RSS MB':>12}")
    for r, t in table.items():
        print(f"{r:<10} {t['median_s']:14.3f} {t['min_s']:7.3f} {t['max_s']:7.3f} {t['peak_rss_mb']:12.0f}")
    if "ours_srpo" in table and "ours_grpo" in table:
        ratios["ours srpo/grpo"] = table["ours_srpo"]["median_s"] / table["ours_grpo"]["median_s"]
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x")
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
