"""The code judge judges as the benchmark's own harness does (issue 29's holes, each reproduced):

- the tests' asserts run whatever the evaluator's environment or interpreter flags
  (``PYTHONOPTIMIZE``, ``-O``, ``-OO``, other ``PYTHON*`` variables): a program returning ``None``
  scores 0 and the gold scores 1;
- decoding a reply costs little whatever the candidate sends (Fractions are capped in size);
- correct programs in the shapes models write score 1: an unguarded ``doctest.testmod()``,
  imports of libraries that can start processes, generators, ``map``, dict views, ranges,
  namedtuples, numpy scalars and arrays, subclasses of builtins. The values are rebuilt in
  the judge as the types the tests would have seen (an iterator stays an iterator), so a test
  that upstream fails (``gen == [1, 2]``) fails here too;
- a job's CPU is its own: a correct program beside jobs that start 16 busy processes each still
  meets its wall-clock limit (per-job cgroups).
"""

import collections
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from srpo_ref import rewards, tasks
from srpo_ref.rewards.code import cgroups, judge, sandbox
from srpo_ref.rewards.code.jail import wire
from tests.conftest import DATA_DIR, REPO, sandbox_leftovers
from tests.integration import hostile_shapes

needs_data = pytest.mark.skipif(not DATA_DIR.exists(), reason=f"benchmark mirror not found at {DATA_DIR}")
LIMITS = sandbox.Limits(timeout_s=10)


def _rows(*ids):
    by_id = {e.id: e for name in ("humaneval", "mbpp") for e in tasks.load_task(name, "test", DATA_DIR)}
    return [by_id[i] for i in ids]


# ----------------------------------------------------------------------------- 1. asserts always on

_SCORE_IN_SUBPROCESS = textwrap.dedent("""
    import json, sys
    from srpo_ref import rewards, tasks
    rows = {e.id: e for n in ("humaneval", "mbpp") for e in tasks.load_task(n, "test", sys.argv[1])}
    out = {}
    for rid in ("HumanEval/0", "HumanEval/4", "mbpp-11"):
        ex = rows[rid]
        entry = ex.meta.get("entry_point") or ex.meta["canonical_solution"].split("def ")[1].split("(")[0]
        null = f"def {entry}(*args, **kwargs):\\n    return None\\n"
        gold = ex.meta.get("prompt", "") + ex.meta["canonical_solution"]
        out[rid] = [rewards.code_reward(null, ex.gold), rewards.code_reward(gold, ex.gold)]
    print(json.dumps(out))
""")


@needs_data
@pytest.mark.parametrize("flags,env", [
    ([], {"PYTHONOPTIMIZE": "1"}),
    ([], {"PYTHONOPTIMIZE": "2"}),
    (["-O"], {}),
    (["-OO"], {}),
    ([], {"PYTHONWARNINGS": "error", "PYTHONDEVMODE": "1", "PYTHONINTMAXSTRDIGITS": "640",
          "PYTHONHASHSEED": "123", "PYTHONSAFEPATH": "1", "PYTHONUTF8": "0", "PYTHONIOENCODING": "latin-1",
          "PYTHONMALLOC": "malloc", "PYTHONBREAKPOINT": "0", "PYTHONDONTWRITEBYTECODE": "1"}),
])
def test_asserts_run_whatever_the_evaluator_environment(flags, env, tmp_path):
    import json

    result = subprocess.run([sys.executable, *flags, "-c", _SCORE_IN_SUBPROCESS, str(DATA_DIR)], cwd=REPO,
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert scores == {"HumanEval/0": [0.0, 1.0], "HumanEval/4": [0.0, 1.0], "mbpp-11": [0.0, 1.0]}, scores


def test_the_judge_runs_with_an_allowlisted_environment(monkeypatch):
    monkeypatch.setenv("PYTHONOPTIMIZE", "2")
    monkeypatch.setenv("SRPO_TEST_SECRET", "leak")
    env = sandbox.judge_environment()
    assert "PYTHONOPTIMIZE" not in env and "SRPO_TEST_SECRET" not in env
    assert not [k for k in env if k.startswith("PYTHON")]
    # the judge reports its own view: asserts on, no PYTHON* variable
    tests = ("import os, sys\nassert f() == 1\nassert sys.flags.optimize == 0 and __debug__\n"
             "assert not [k for k in os.environ if k.startswith('PYTHON') or k == 'SRPO_TEST_SECRET']\n")
    assert rewards.code_reward("def f():\n    return 1\n", judge.plan(tests, reference="def f(): pass")) == 1.0


# ----------------------------------------------------------------------------- 2. decoding cost

def test_fractions_and_other_numbers_are_capped_far_below_a_stall():
    # the reply that stalled the judge: 80 unnormalised Fractions of 400k bits
    huge = format((1 << 399_990) - 1, "x")
    with pytest.raises(wire.WireError):
        wire.decode(["l", [["q", huge, huge[:-1] + "e"]] * 80])
    big = (1 << 4000) + 1
    with pytest.raises(wire.WireError):
        wire.decode(["q", format(big, "x"), format(big + 2, "x")])
    # the largest Fraction accepted still decodes at once
    limit = wire.MAX_FRACTION_HEX_DIGITS
    assert wire.decode(["q", "f" * limit, "e" * limit]) == wire.decode(["q", "f" * limit, "e" * limit])
    with pytest.raises(wire.WireError):
        wire.decode(["m", "1e999999999999"])  # a Decimal exponent that makes comparisons expensive
    with pytest.raises(wire.WireError):
        wire.decode(["r", "0", "1" + "0" * 40, "1"])  # a range longer than any value the wire carries


def test_the_decode_benchmarks_worst_replies_are_valid_and_at_the_caps():
    """benchmarks/wire_decode.py times these; here: each is accepted and as large as allowed."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import wire_decode

    for name, value in wire_decode.worst_replies().items():
        frame = wire.pack({"ok": value})
        if len(frame) - 4 > wire.MAX_REPLY_BYTES:
            continue  # the benchmark trims these to the byte cap before timing them
        assert wire_decode.read_reply(frame) is not None or name == "list of None", name


def test_colliding_hashes_anywhere_in_a_reply_are_refused():
    p = (1 << 61) - 1  # k * p all hash to 0: a set of them is built in quadratic time
    with pytest.raises(wire.WireError):
        wire.decode(["l", [["i", format(k * p, "x")] for k in range(1, 20)]])
    with pytest.raises(wire.WireError):
        wire.decode(["l", [["t", [["i", format(k * p, "x")]]] for k in range(1, 20)]])
    assert wire.decode(["l", [["i", "0"]] * 1000]) == [0] * 1000  # equal values are one
    assert wire.decode(["t", [["i", "3"], ["l", [["i", "1"]]]]]) == (3, [1])  # a tuple no set can hold


def test_evalplus_tolerance_needs_the_expected_shape():
    exp = [0.0, 0.25, 0.5, 1.0]
    assert judge.evalplus_match("humaneval", "rescale_to_unit", [[1.0, 2.0, 3.0, 5.0]], [exp] * 4, exp, 0)[0] is False
    assert judge.evalplus_match("humaneval", "rescale_to_unit", [[1.0, 2.0, 3.0, 5.0]], [0.0, 0.25, 0.5, 1.0 + 1e-9],
                                exp, 0)[0] is True


# ----------------------------------------------------------------------------- 3. correct programs score 1

@needs_data
def test_an_unguarded_doctest_testmod_is_harmless():
    (ex,) = _rows("HumanEval/4")
    program = ex.meta["prompt"] + ex.meta["canonical_solution"] + "\n\nimport doctest\ndoctest.testmod()\n"
    assert rewards.code_reward(program, ex.gold) == 1.0
    guarded = program.replace("import doctest\ndoctest.testmod()", "if __name__ == '__main__':\n"
                              "    import doctest\n    doctest.testmod(verbose=True)\n    print(__name__)")
    assert rewards.code_reward(guarded, ex.gold) == 1.0


@needs_data
@pytest.mark.parametrize("module", ["asyncio", "subprocess", "multiprocessing", "concurrent.futures", "sympy",
                                    "scipy.special", "pandas"])
def test_importing_libraries_that_can_start_processes_is_allowed(module):
    if sandbox.backend() != "bwrap":
        pytest.skip("the guard backend (no PID namespace) refuses process creation at import: docs/judge.md")
    (ex,) = _rows("HumanEval/4")
    program = f"import {module}\n" + ex.meta["prompt"] + ex.meta["canonical_solution"]
    assert rewards.code_reward(program, ex.gold, sandbox.Limits(timeout_s=30)) == 1.0


def test_a_program_may_start_a_process_in_the_sandbox_within_its_cap():
    if sandbox.backend() != "bwrap":
        pytest.skip("the guard backend refuses process creation: docs/judge.md")
    program = ("import subprocess, sys\n"
               "def f(x):\n"
               "    return int(subprocess.run([sys.executable, '-c', f'print({x} + 1)'], capture_output=True,"
               " text=True).stdout)\n")
    assert rewards.code_reward(program, judge.plan("assert f(1) == 2\n", reference="def f(x): pass")) == 1.0


# values whose types the benchmark's tests accept upstream, and what the judge sees
_SHAPES = {
    "generator": ("def f(n):\n    return (i * i for i in range(n))\n", "assert list(f(4)) == [0, 1, 4, 9]\n"),
    "generator_next": ("def f(n):\n    yield n\n    yield n + 1\n", "g = f(3)\nassert next(g) == 3 and next(g) == 4\n"),
    "map": ("def f(xs):\n    return map(str, xs)\n", "assert list(f([1, 2])) == ['1', '2']\n"),
    "filter_sorted": ("def f(xs):\n    return filter(None, xs)\n", "assert sorted(f([0, 3, 1])) == [1, 3]\n"),
    "zip_tuple": ("def f(a, b):\n    return zip(a, b)\n", "assert tuple(f([1], [2])) == ((1, 2),)\n"),
    "reversed": ("def f(xs):\n    return reversed(xs)\n", "assert list(f([1, 2])) == [2, 1]\n"),
    "dict_keys": ("def f(d):\n    return d.keys()\n", "assert f({1: 2}) == {1}\nassert list(f({3: 4})) == [3]\n"),
    "dict_values": ("def f(d):\n    return d.values()\n", "assert sorted(f({1: 5, 2: 4})) == [4, 5]\n"),
    "dict_items": ("def f(d):\n    return d.items()\n", "assert dict(f({1: 2})) == {1: 2}\n"),
    "range": ("def f(n):\n    return range(1, n)\n", "assert list(f(3)) == [1, 2]\nassert f(3) == range(1, 3)\n"),
    "namedtuple": ("from collections import namedtuple\nP = namedtuple('P', 'x y')\n"
                   "def f(a, b):\n    return P(a, b)\n", "assert f(1, 2) == (1, 2)\n"),
    "numpy_int": ("import numpy as np\ndef f(xs):\n    return np.sum(np.array(xs))\n", "assert f([1, 2]) == 3\n"),
    "numpy_float": ("import numpy as np\ndef f(xs):\n    return np.mean(xs)\n",
                    "assert abs(f([1, 2]) - 1.5) < 1e-9\nassert f([2, 2]) == 2.0\n"),
    "numpy_bool": ("import numpy as np\ndef f(x):\n    return np.bool_(x > 1)\n", "assert f(2)\nassert not f(0)\n"
                   "assert f(2) == True\n"),
    "numpy_array_tolist": ("import numpy as np\ndef f(xs):\n    return np.array(xs) * 2\n",
                           "assert list(f([1, 2])) == [2, 4]\nassert (f([1]) == [2]).all()\n"),
    "int_subclass": ("class I(int):\n    pass\ndef f(x):\n    return I(x + 1)\n", "assert f(1) == 2\n"),
    "str_subclass": ("class S(str):\n    pass\ndef f(x):\n    return S(x.upper())\n", "assert f('a') == 'A'\n"),
    "list_subclass": ("class L(list):\n    pass\ndef f(x):\n    return L([x])\n", "assert f(1) == [1]\n"),
    "sympy_integer": ("import sympy\ndef f(n):\n    return sympy.factorial(n)\n", "assert f(5) == 120\n"),
    "sympy_float": ("import sympy\ndef f(x):\n    return sympy.Float(x) / 2\n", "assert f(1.0) == 0.5\n"),
    "dict_subclass": ("class D(dict):\n    pass\ndef f(x):\n    return D(a=x)\n", "assert f(1) == {'a': 1}\n"),
}


@pytest.mark.parametrize("shape", sorted(_SHAPES))
def test_values_the_tests_accept_upstream_are_accepted(shape):
    program, tests = _SHAPES[shape]
    upstream = {}
    exec(program + tests, upstream)  # the benchmark's own harness: program and tests in one namespace
    assert rewards.code_reward(program, judge.plan(tests)) == 1.0


# and what upstream rejects stays rejected: the judge sees an iterator, not a list
_UPSTREAM_FAILS = {
    "generator_eq_list": ("def f(n):\n    return (i for i in range(n))\n", "assert f(2) == [0, 1]\n"),
    "map_len": ("def f(xs):\n    return map(str, xs)\n", "assert len(f([1])) == 1\n"),
    "numpy_array_eq": ("import numpy as np\ndef f(xs):\n    return np.array(xs)\n", "assert f([1, 2]) == [1, 2]\n"),
    "dict_values_eq_list": ("def f(d):\n    return d.values()\n", "assert f({1: 2}) == [2]\n"),
    "range_eq_list": ("def f(n):\n    return range(n)\n", "assert f(2) == [0, 1]\n"),
    "custom_eq_subclass": ("class I(int):\n    def __eq__(s, o):\n        return True\n    __hash__ = int.__hash__\n"
                           "def f(x):\n    return I(0)\n", "assert f(1) == 5\n"),
}


@pytest.mark.parametrize("shape", sorted(_UPSTREAM_FAILS))
def test_values_upstream_rejects_stay_rejected(shape):
    program, tests = _UPSTREAM_FAILS[shape]
    if shape != "custom_eq_subclass":  # that one is the reward hack upstream's harness lets through
        with pytest.raises((AssertionError, TypeError, ValueError)):
            exec(program + tests, {})
    assert rewards.code_reward(program, judge.plan(tests)) == 0.0


def _random_convertible(rng, depth=0):
    """A value a candidate might return, and what the one-process tests would see of it: a
    function of the decoded value that must hold (an independent check, not the decoder)."""
    import numpy as np

    plain = rng.choice([None, True, rng.randint(-10**20, 10**20), rng.uniform(-1e6, 1e6), "x" * rng.randint(0, 3),
                        b"ab", (1, "a")])
    kind = rng.randrange(10 if depth < 2 else 3)
    if kind == 0:
        return plain, lambda out: out == plain and type(out) is type(plain)
    if kind == 1:
        dtype = rng.choice(["int8", "int64", "uint16", "float16", "float32", "float64", "bool", "complex64"])
        value = np.dtype(dtype).type(rng.randint(0, 100) / rng.choice([1, 3]))
        # low-precision floats arrive at float64, holding the same value
        wide = {"float16": np.float64, "float32": np.float64, "complex64": np.complex128}.get(dtype, type(value))
        return value, lambda out: type(out) is wide and out == wide(value)
    if kind == 2:
        n = rng.randint(0, 5)
        items = [rng.randint(-5, 5) for _ in range(n)]
        return (x for x in items), lambda out: iter(out) is out and list(out) == items
    if kind == 3:
        shape = [rng.randint(0, 3) for _ in range(rng.randint(1, 3))]
        dtype = rng.choice(["int32", "float16", "float64", "bool", "U3"])
        size = int(np.prod(shape))
        raw = [rng.randint(0, 9) for _ in range(size)]
        arr = np.array([str(x) for x in raw] if dtype == "U3" else raw, dtype=dtype).reshape(shape)
        wide = np.float64 if dtype == "float16" else arr.dtype
        return arr, lambda out: type(out) is np.ndarray and out.dtype == wide and out.shape == arr.shape and (
            out == arr).all()
    if kind == 4:
        d = {rng.randint(0, 50): rng.randint(0, 9) for _ in range(rng.randint(0, 4))}
        view = rng.choice(["keys", "values", "items"])
        return getattr(d, view)(), lambda out: type(out) is type(getattr(d, view)()) and sorted(out) == sorted(
            getattr(d, view)())
    if kind == 5:
        r = range(rng.randint(-5, 5), rng.randint(-5, 50), rng.choice([1, 2, -1, 7]))
        return r, lambda out: out == r and type(out) is range
    if kind == 6:
        P = collections.namedtuple("P", "a b")
        t = P(rng.randint(0, 9), "z")
        return t, lambda out: type(out) is tuple and out == tuple(t)
    if kind == 7:
        class Weird(int):
            def __eq__(self, other):
                return True
            __hash__ = int.__hash__
        v = Weird(rng.randint(-9, 9))
        return v, lambda out: type(out) is int and out == int.__int__(v) and not (out == int.__int__(v) + 1)
    inner = [_random_convertible(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == 8:
        return [v for v, _ in inner], lambda out: type(out) is list and len(out) == len(inner) and all(
            check(o) for o, (_, check) in zip(out, inner))
    return {i: v for i, (v, _) in enumerate(inner)}, lambda out: type(out) is dict and all(
        check(out[i]) for i, (_, check) in enumerate(inner))


def test_converted_values_arrive_as_the_tests_would_see_them_randomized():
    import random

    rng = random.Random(2029)
    for case in range(400):
        value, check = _random_convertible(rng)
        frame = wire.pack({"ok": wire.encode(value, convert=True)})
        out = wire.decode(wire.parse(frame[4:])["ok"], budget=[wire.MAX_REPLY_NODES])
        assert check(out), (case, value, out)
    # and nothing converts on the judge's own (strict) side
    for value in [(x for x in []), range(3), collections.namedtuple("Q", "a")(1)]:
        with pytest.raises(wire.WireError):
            wire.encode(value)


# ----------------------------------------------------------------------------- 4. CPU isolation

# itself and 15 busy children, each in a session of its own: the kernel's autogroup scheduling
# gives every session one share, so without per-job cgroups (SRPO_CGROUP=off) the busy jobs
# below time out beside two of these; in their cgroups each hog gets one core at most
_HOG = ("import os\n"
        "for _ in range(15):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        break\n"
        "def f():\n    while True:\n        pass\n"
        "while True:\n    pass\n")
_BUSY = ("import time\n"
         "def f():\n    t = time.process_time()\n    while time.process_time() - t < 1.5:\n        pass\n"
         "    return 1\n")


def test_a_job_beside_process_hogs_keeps_its_cpu():
    if cgroups.available() is None:
        pytest.skip("no writable cgroup hierarchy here: jobs are not CPU-isolated (docs/judge.md)")
    if sandbox.backend() != "bwrap":
        pytest.skip("the guard backend refuses process creation, so a hog cannot start")
    plan = judge.plan("assert f() == 1\n", reference="def f(): pass")
    hog_limits, busy_limits = sandbox.Limits(timeout_s=12), sandbox.Limits(timeout_s=6)
    with ThreadPoolExecutor(4) as pool:
        hogs = [pool.submit(sandbox.run_job, rewards.code_job(_HOG, plan), hog_limits) for _ in range(2)]
        import time

        time.sleep(2.0)  # the hogs are running
        busy = [pool.submit(sandbox.run_job, rewards.code_job(_BUSY, plan), busy_limits) for _ in range(2)]
        results = [b.result() for b in busy]
        [h.result() for h in hogs]
    assert all(r.passed for r in results), [(r.status, r.output_tail[-300:]) for r in results]


def test_a_jobs_memory_is_capped_as_a_whole():
    if cgroups.available() is None:
        pytest.skip("no writable cgroup hierarchy here (docs/judge.md)")
    if sandbox.backend() != "bwrap":
        pytest.skip("the guard backend refuses process creation")
    # five children of 600 MB each: each under the per-process cap (1 GiB), together over the
    # job's (2 GiB); the kernel ends some of them, and f() counts how many
    program = ("import os, signal, time\nkids = []\n"
               "for _ in range(5):\n"
               "    pid = os.fork()\n"
               "    if pid == 0:\n"
               "        block = bytearray(600 << 20)\n"
               "        time.sleep(2)\n"
               "        os._exit(0)\n"
               "    kids.append(pid)\n"
               "def f():\n"
               "    killed = 0\n"
               "    for pid in kids:\n"
               "        _, status = os.waitpid(pid, 0)\n"
               "        killed += os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL\n"
               "    return killed\n")
    plan = judge.plan("assert f() >= 1\n", reference="def f(): pass")
    assert sandbox.run_job(rewards.code_job(program, plan), sandbox.Limits(timeout_s=15)).passed


# ----------------------------------------------------------------------------- 5. hostile programs

def _gold(target: str, rows: dict):
    if target.startswith("# reference:"):
        return judge.plan(target, reference=target.splitlines()[0][len("# reference:"):].strip())
    return rows[target].gold


@needs_data
def test_hostile_programs_against_conversions_and_processes_score_zero_and_leave_nothing():
    if sandbox.backend() != "bwrap":
        pytest.skip("written against the bubblewrap backend (processes allowed)")
    import time

    rows = {e.id: e for name in ("humaneval", "mbpp") for e in tasks.load_task(name, "test", DATA_DIR)}
    limits = sandbox.Limits(timeout_s=5)
    programs = {**hostile_shapes.HOSTILE, **hostile_shapes.BEHAVING,
                "correct HumanEval/4": ("HumanEval/4", rows["HumanEval/4"].meta["prompt"]
                                        + rows["HumanEval/4"].meta["canonical_solution"])}
    before = set(sandbox_leftovers())

    def run(item):
        name, (target, program) = item
        t0 = time.monotonic()
        res = sandbox.run_job(rewards.code_job(program, _gold(target, rows)), limits)
        return name, res, time.monotonic() - t0

    with ThreadPoolExecutor(2) as pool:
        results = {name: (res, seconds) for name, res, seconds in pool.map(run, programs.items())}
    forged = [n for n in hostile_shapes.HOSTILE if results[n][0].passed]
    assert not forged, f"wrong programs scored 1: {forged}"
    assert results["correct HumanEval/4"][0].passed
    slow = {n: round(s, 1) for n, (_, s) in results.items() if s > limits.timeout_s + 5}
    assert not slow, f"jobs ran far past their limit: {slow}"
    time.sleep(1.0)
    assert not set(sandbox_leftovers()) - before, "processes outlived their jobs"
