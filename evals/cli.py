"""``srpo-eval``: evaluate a model on a suite (see evals/run.py for what is written)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evals.run import SUITES, EvalSettings, benchmarks_of, evaluate
from srpo_ref.tasks import DataNotFound


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="srpo-eval",
                                 description="avg@k evaluation on the paper, math/code or tiny suites.")
    ap.add_argument("--model", required=True, help="model directory (save_pretrained format)")
    ap.add_argument("--suite", choices=sorted(SUITES), help="benchmark suite")
    ap.add_argument("--benchmarks", nargs="+", help="explicit benchmark names (overrides --suite)")
    ap.add_argument("--k", type=int, default=16, help="samples per question (avg@k); the paper uses 16")
    ap.add_argument("--backend", choices=["vllm", "hf"], default="vllm")
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--max-new-tokens", type=int, default=8192)
    ap.add_argument("--max-model-len", type=int, default=None,
                    help="vLLM context length (default: the longest prompt plus --max-new-tokens; smaller is an error)")
    ap.add_argument("--grader", choices=["upstream", "strict"], default="upstream",
                    help="MCQ/Tool Use scoring: the SDPO authors' (upstream, default) or the SPEC's strict reading; "
                         "both are recorded")
    ap.add_argument("--tooluse-system", default="none",
                    help="Tool Use system prompt: none (upstream, default), paraphrase, or a text file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="first N questions of each benchmark")
    ap.add_argument("--data-dir", default=None,
                    help="local benchmark mirror (default: $SRPO_DATA_DIR or ../shared/data)")
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args(argv)
    if not a.suite and not a.benchmarks:
        ap.error("give --suite or --benchmarks")
    try:
        names = benchmarks_of(a.suite, a.benchmarks)
        settings = EvalSettings(a.k, a.temperature, a.top_p, a.max_new_tokens, a.seed, a.backend, a.limit, a.data_dir,
                                a.max_model_len, a.grader, a.tooluse_system)
        summary = evaluate(a.model, names, settings, a.out)
    except (ValueError, OSError, DataNotFound) as e:
        print(f"srpo-eval: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: {"avg_at_k": round(v["avg_at_k"], 4), "stderr": round(v["avg_at_k_stderr"], 4)} for k,
                      v in summary["benchmarks"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
