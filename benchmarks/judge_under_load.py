"""The code judge's gold check (every canonical HumanEval and MBPP solution must score 1, every
wrong one 0: ``srpo_ref.tasks.grader_self_check``) run again and again beside a CPU hog: a
sandboxed program that starts 16 busy processes, submitted through the same judge, without
pause, by ``--hogs`` threads. With per-job cgroups (docs/judge.md: The code sandbox) a correct
program's wall-clock verdict must not depend on it.

    OMP_NUM_THREADS=1 python benchmarks/judge_under_load.py --runs 3 --out results/judge/gold_under_load.json

Prints one line per run and benchmark (gold scored 1 of rows, seconds) and writes every run's
failures and the machine's provenance to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from srpo_ref.record import provenance
from srpo_ref.rewards.code import cgroups, judge, sandbox
from srpo_ref.tasks import grader_self_check

# 16 busy processes, each in a session of its own (so autogroup scheduling gives each a share)
HOG = ("import os\n"
       "for _ in range(15):\n"
       "    if os.fork() == 0:\n"
       "        os.setsid()\n"
       "        break\n"
       "while True:\n"
       "    pass\n")


def hog_forever(stop: threading.Event, counter: list) -> None:
    plan = judge.plan("assert f() == 1\n", reference="def f(): pass")
    job = {"judge": "proxy", "candidate": HOG, "spec": plan}
    while not stop.is_set():
        sandbox.run_job(job, sandbox.Limits(timeout_s=10))
        counter[0] += 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hogs", type=int, default=1, help="threads submitting hog jobs (each job: 16 busy processes)")
    ap.add_argument("--threads", type=int, default=2, help="gold-check jobs at a time")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    stop, counter = threading.Event(), [0]
    hogs = [threading.Thread(target=hog_forever, args=(stop, counter), daemon=True) for _ in range(args.hogs)]
    for h in hogs:
        h.start()
    time.sleep(3 if args.hogs else 0)  # the first hog job is running
    runs = []
    try:
        for run in range(args.runs):
            for name in ("humaneval", "mbpp"):
                t0 = time.perf_counter()
                out = grader_self_check(name, args.data_dir, args.threads)
                seconds = time.perf_counter() - t0
                g = out["by_grader"]["strict"]
                runs.append({"run": run, "benchmark": name, "rows": out["rows"], "gold_scored_1": g["gold_scored_1"],
                             "wrong_scored_0": g["wrong_scored_0"], "failures": g["failures"], "seconds": seconds})
                print(f"run {run} {name:9s} gold {g['gold_scored_1']}/{out['rows']}  wrong->0 "
                      f"{g['wrong_scored_0']}/{out['rows']}  {seconds:6.1f} s  (hog jobs so far: {counter[0]})",
                      flush=True)
    finally:
        stop.set()
    ok = all(r["gold_scored_1"] == r["rows"] and r["wrong_scored_0"] == r["rows"] for r in runs)
    record = {"runs": runs, "hog_jobs": counter[0], "hog_threads": args.hogs, "threads": args.threads,
              "sandbox": sandbox.backend(), "cgroup": cgroups.describe(), "all_gold_scored_1": ok,
              "provenance": provenance()}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"every gold scored 1 and every wrong answer 0 in every run: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
