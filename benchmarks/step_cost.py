"""Seconds per step, per phase, for GRPO, SDPO and SRPO side by side, in one run.

    python benchmarks/step_cost.py --model work/tiny/models/tiny [--steps 8] [--benchmark tiny_mcq]

Each method trains the same base model for ``--steps`` steps (same seed, same prompts) with the
tiny config; the table shows the mean over steps after the first (warm-up) step.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srpo_ref.config import load_config  # noqa: E402
from srpo_ref.trainer import PHASES, Trainer  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "srpo_ref" / "configs" / "tiny.yaml"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--benchmark", default="tiny_mcq")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--methods", nargs="+", default=["grpo", "sdpo", "srpo"])
    ap.add_argument("--engine", default="hf", choices=["hf", "vllm"])
    ap.add_argument("overrides", nargs="*", help="extra section.key=value overrides")
    a = ap.parse_args()
    rows = {}
    for m in a.methods:
        with tempfile.TemporaryDirectory() as tmp:
            extra = ["optim.mini_batch_prompts=4"] if m == "grpo" else []
            cfg = load_config(CONFIG, [f"model.path={a.model}", f"method.name={m}", f"data.benchmark={a.benchmark}",
                                       f"rollout.engine={a.engine}", f"run.out_dir={tmp}", "run.progress=false", *extra, *a.overrides])
            trainer = Trainer(cfg)
            recs = [trainer.train_step() for _ in range(a.steps)][1:]
        rows[m] = {p: statistics.mean(r["seconds"][p] for r in recs) for p in (*PHASES, "step")}
        rows[m]["teacher_tokens"] = statistics.mean(r["tokens"]["teacher_forward"] for r in recs)
        rows[m]["frac_sdpo"] = statistics.mean(r["frac_sdpo"] for r in recs)
        rows[m]["accuracy"] = statistics.mean(r["accuracy"] for r in recs)
    cols = [*PHASES, "step", "teacher_tokens", "frac_sdpo", "accuracy"]
    print(f"seconds per step (mean of steps 2..{a.steps}), {a.benchmark}, engine {a.engine}, model {a.model}")
    print(f"{'phase':<16}" + "".join(f"{m:>12}" for m in rows))
    for c in cols:
        print(f"{c:<16}" + "".join(f"{rows[m][c]:>12.3f}" if c != "teacher_tokens" else f"{rows[m][c]:>12.0f}" for m in rows))


if __name__ == "__main__":
    main()
