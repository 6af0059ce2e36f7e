"""Seconds per training step of GRPO, SDPO and SRPO, measured *paired*: one process, the methods'
steps interleaved round by round (A B C, B C A, C A B, ...), same base model, prompts and seeds.

    python benchmarks/step_cost.py --model work/tiny/models/tiny [--rounds 6] [--benchmark tiny_mcq]
        [--config srpo_ref/configs/tiny.yaml] [--method-override grpo:optim.mini_batch_prompts=4 ...]
        [--out step_cost.json] [section.key=value ...]

Whatever else the machine is doing slows every method in the same round alike, so the per-round
ratios against GRPO are far steadier than seconds read from separate jobs. Prints a table and,
with ``--out``, writes JSON (the pipeline's cost table reads it): per method the median, min and
max seconds per step over rounds (the first, warm-up step excluded), per phase medians, FLOPs
per step, and the median/min/max of the paired per-round ratio to GRPO.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srpo_ref.config import load_config  # noqa: E402
from srpo_ref.record import PHASES, provenance  # noqa: E402
from srpo_ref.trainer import Trainer  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "srpo_ref" / "configs" / "tiny.yaml"


def print_table(a, out: dict) -> None:
    """The measured seconds per step (and per phase), FLOPs and routing, a column per method."""
    print(f"seconds per step, {a.rounds} interleaved rounds after one warm-up step each; {a.benchmark}, engine "
          f"{a.engine}, model {a.model}")
    print(f"{'':<18}" + "".join(f"{m:>12}" for m in a.methods))
    rows = [
        ("median s/step", lambda v: f"{v['median']:.3f}"),
        ("min", lambda v: f"{v['min']:.3f}"),
        ("max", lambda v: f"{v['max']:.3f}"),
        ("GFLOPs/step", lambda v: f"{v['flops_per_step'] / 1e9:.3f}"),
        ("teacher tokens", lambda v: f"{v['teacher_tokens']:.0f}"),
        ("SDPO-routed", lambda v: f"{v['frac_sdpo']:.2f}"),
        ("vs grpo (median)",
         lambda v: f"{(v['ratio_vs_grpo']['median'] - 1) * 100:+.1f}%" if "ratio_vs_grpo" in v else "–"),
    ]
    for label, get in rows:
        print(f"{label:<18}" + "".join(f"{get(out['methods'][m]):>12}" for m in a.methods))
    for p in PHASES:
        print(f"  {p:<16}" + "".join(f"{out['methods'][m]['phases_median'][p]:>12.3f}" for m in a.methods))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--config", default=str(CONFIG))
    ap.add_argument("--benchmark", default="tiny_mcq")
    ap.add_argument("--rounds", type=int, default=6, help="measured rounds (after one warm-up step per method)")
    ap.add_argument("--methods", nargs="+", default=["grpo", "sdpo", "srpo"])
    ap.add_argument("--engine", default="hf", choices=["hf", "vllm"])
    ap.add_argument("--method-override", action="append", default=[], metavar="METHOD:KEY=VALUE",
                    help="an override for one method only (default: grpo gets four updates per step)")
    ap.add_argument("--no-default-method-overrides", action="store_true",
                    help="use only the given --method-override values (the pipeline passes its own)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("overrides", nargs="*", help="extra section.key=value overrides for every method")
    a = ap.parse_args(argv)
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    per_method = {m: [] for m in a.methods}
    for item in a.method_override:
        m, _, kv = item.partition(":")
        if m not in per_method or "=" not in kv:
            ap.error(f"--method-override {item!r}: expected METHOD:section.key=value with METHOD in {a.methods}")
        per_method[m].append(kv)
    if not a.method_override and not a.no_default_method_overrides and "grpo" in per_method:
        per_method["grpo"] = ["optim.mini_batch_prompts=4"]
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for m in a.methods:
            cfg = load_config(a.config, [f"model.path={a.model}", f"method.name={m}", f"data.benchmark={a.benchmark}",
                                         f"rollout.engine={a.engine}", f"run.out_dir={tmp}/{m}", "run.progress=false",
                                         *a.overrides, *per_method[m]])
            trainers[m] = Trainer(cfg)
            trainers[m].train_step()  # warm-up step, not measured
        records = {m: [] for m in a.methods}
        t0 = time.time()
        for r in range(a.rounds):
            order = a.methods[r % len(a.methods):] + a.methods[: r % len(a.methods)]
            for m in order:
                records[m].append(trainers[m].train_step())
        wall = time.time() - t0
    out = {"benchmark": a.benchmark, "rounds": a.rounds, "engine": a.engine, "model": a.model, "config": a.config,
           "overrides": a.overrides, "method_overrides": per_method, "wall_seconds": round(wall, 2), "methods": {},
           "provenance": provenance()}
    for m in a.methods:
        secs = [rec["seconds"]["step"] for rec in records[m]]
        out["methods"][m] = {
            "median": statistics.median(secs), "min": min(secs), "max": max(secs), "per_round": secs,
            "phases_median": {p: statistics.median(rec["seconds"][p] for rec in records[m]) for p in PHASES},
            "flops_per_step": statistics.mean(sum(rec["flops"].values()) for rec in records[m]),
            "teacher_tokens": statistics.mean(rec["tokens"]["teacher_forward"] for rec in records[m]),
            "frac_sdpo": statistics.mean(rec["frac_sdpo"] for rec in records[m]),
        }
    if "grpo" in records:
        for m in a.methods:
            ratios = [s / g for s, g in zip(out["methods"][m]["per_round"], out["methods"]["grpo"]["per_round"])]
            out["methods"][m]["ratio_vs_grpo"] = {"median": statistics.median(ratios), "min": min(ratios),
                                                  "max": max(ratios)}
    print_table(a, out)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
