"""The code judge (srpo_ref.rewards.code.judge) and its wire format (srpo_ref.rewards.code.jail.wire).

- the wire format round-trips random plain values exactly and turns everything else (subclasses,
  objects, malformed or oversized frames) into a WireError, never a crash or a hang;
- the planner sends each real HumanEval / MBPP row to the right judge;
- hostile programs of every class (tests/integration/hostile_judge.py) score 0 on real rows, concurrently
  beside correct ones that still score 1, leaving no process, zombie or file behind;
- evalplus's comparison rules give evalplus's own verdicts on plain values.
"""

import json
import math
import os
import random
import struct
from collections import Counter, OrderedDict, defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from fractions import Fraction

import pytest

from srpo_ref import rewards, tasks
from srpo_ref.rewards.code import judge, sandbox
from srpo_ref.rewards.code.jail import wire
from tests.integration import hostile_judge as hj
from tests.conftest import DATA_DIR, sandbox_leftovers

LIMITS = sandbox.Limits(timeout_s=3)


# ----------------------------------------------------------------------------- wire

def _random_value(rng: random.Random, depth: int = 0):
    scalars = [
        lambda: None, lambda: rng.random() < 0.5, lambda: rng.randint(-10**30, 10**30), lambda: 1 << rng.randint(0,
                                                                                                                 5000),
        lambda: rng.choice([0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, rng.uniform(-1e9, 1e9)]),
        lambda: complex(rng.uniform(-5, 5), rng.choice([0.0, -0.0, math.inf])),
        lambda: "".join(chr(rng.choice([rng.randint(0, 0x7f), rng.randint(0xd800, 0xdfff), rng.randint(0, 0x10ffff)]))
                        for _ in range(rng.randint(0, 12))),
        lambda: bytes(rng.randrange(256) for _ in range(rng.randint(0, 8))),
        lambda: bytearray(rng.randrange(256) for _ in range(rng.randint(0, 4))),
        lambda: Fraction(rng.randint(-99, 99), rng.randint(1, 99)), lambda: Decimal(str(rng.uniform(-9, 9))),
    ]
    if depth > 3 or rng.random() < 0.4:
        return rng.choice(scalars)()
    items = [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    hashable = [x for x in items if _hashable(x)]
    kind = rng.randrange(9)
    if kind == 0:
        return items
    if kind == 1:
        return tuple(items)
    if kind == 2:
        return set(hashable)
    if kind == 3:
        return frozenset(hashable)
    if kind == 4:
        return deque(items)
    pairs = list(zip(hashable, items))
    return [dict, lambda p: Counter(dict(p)), OrderedDict, lambda p: defaultdict(None, p)][kind - 5](pairs)


def _hashable(x) -> bool:
    try:
        hash(x)
        return "nan" not in repr(x)  # a nan inside a key or set item is not equal to its copy
    except TypeError:
        return False


def _same(a, b) -> bool:
    """Equal, with the exact type at every level and float bits compared (nan, -0.0)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack("<d", a) == struct.pack("<d", b)
    if type(a) is complex:
        return _same(a.real, b.real) and _same(a.imag, b.imag)
    if isinstance(a, (list, tuple, deque)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_wire_round_trips_random_plain_values_exactly():
    rng = random.Random(1234)
    for _ in range(3000):
        value = _random_value(rng)
        frame = wire.pack(wire.encode(value))
        back = wire.decode(wire.parse(frame[4:]))
        assert _same(value, back), (value, back)


def test_wire_refuses_what_is_not_plain_data():
    class I(int):  # noqa: E742 (deliberately terse, like T and M: a hostile int subclass)
        pass

    class M(type):
        def __eq__(cls, other):
            return True
        __hash__ = type.__hash__

    class T(metaclass=M):
        pass

    forged = Fraction(1, 2)
    forged._numerator = I(1)
    for value in (I(1), T, object(), [1, I(2)], {"a": lambda: 0}, (x for x in []), forged,
                  Counter.__new__(type("C", (Counter,), {})),
                  int, print, NotImplemented, ..., range(10**9), map(abs, [1])):
        with pytest.raises(wire.WireError):
            wire.encode(value)
    deep = []
    for _ in range(wire.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(wire.WireError):
        wire.encode(deep)
    loop = []
    loop.append(loop)
    with pytest.raises(wire.WireError):
        wire.encode(loop)


def test_wire_decoder_rejects_malformed_input_without_crashing():
    rng = random.Random(99)
    bad = [["x"], [], "s", ["i", "zz"], ["i", 5], ["b", 2], ["b", True], ["S", [["l", []]]], ["d", [[["l", []],
                                                                                                     ["N"]]]],
           ["d", [["N"]]], ["f", "1" * 100], ["q", "1", "0"], ["m", "not a number"], ["r", "1", "2", "0"],
           ["i", "f" * (wire.MAX_INT_HEX_DIGITS + 10)], ["l", "notalist"], ["N", 1], ["s", 3]]
    nested = ["l", []]
    for _ in range(wire.MAX_DEPTH + 5):
        nested = ["l", [nested]]
    bad.append(nested)
    for obj in bad:
        with pytest.raises(wire.WireError):
            wire.decode(obj)
    # what decodes can be sent back: the same depth limit both ways
    deepest = []
    for _ in range(wire.MAX_DEPTH - 1):
        deepest = [deepest]
    assert wire.decode(wire.encode(deepest)) == deepest
    with pytest.raises(wire.WireError):
        wire.encode([deepest])
    with pytest.raises(wire.WireError):
        wire.decode(["l", [wire.encode(deepest)]])
    # set items or keys that share one hash would make building the set quadratic
    colliding = [["i", format(k * ((1 << 61) - 1), "x")] for k in range(1, 200)]
    for tag in ("S", "F"):
        with pytest.raises(wire.WireError, match="hash"):
            wire.decode([tag, colliding])
    with pytest.raises(wire.WireError, match="hash"):
        wire.decode(["d", [[k, ["N"]] for k in colliding]])
    assert wire.decode(["S", [["i", "-1"], ["i", "-2"]]]) == {-1, -2}  # a few equal hashes are fine
    for blob in (b"[" * 100_000, b'{"a": NaN}', b"\xff\xfe", b'["i", "1"' , b"1" * 5000):
        with pytest.raises(wire.WireError):
            wire.parse(blob)
    with pytest.raises(wire.WireError):
        wire.unpack_header(struct.pack(">I", wire.MAX_FRAME_BYTES + 1))
    # random corruptions of valid frames: a value or a WireError, nothing else
    for _ in range(2000):
        text = bytearray(json.dumps(wire.encode(_random_value(rng))).encode())
        for _ in range(rng.randint(1, 4)):
            if text:
                text[rng.randrange(len(text))] = rng.choice(b'[]",0123456789abcdefNilstSFdbfcyYrqmCODQ x')
        try:
            wire.decode(wire.parse(bytes(text)))
        except wire.WireError:
            pass


# ----------------------------------------------------------------------------- planning

def test_plan_chooses_the_judge_by_what_the_tests_use():
    p = judge.plan("assert f(1) == 2\nassert g(x=3) == [1]\n")
    assert p["judge"] == "proxy" and p["proxy"] == ["f", "g"]
    p = judge.plan("import math\nassert math.isclose(area(2), 12.56, rel_tol=1e-3)\n",
                   reference="import math\ndef area(r):\n    return 3.14*r*r\n")
    assert p["judge"] == "proxy" and p["proxy"] == ["area"]
    p = judge.plan("assert math.isclose(area(2), 12.56, rel_tol=1e-3)\n",
                   reference="import math\ndef area(r):\n    return 3.14*r*r\n")
    assert p["imports"] == ["import math"]  # the test relies on the reference's import
    p = judge.plan("assert max_chain([Pair(1, 2)]) == 1\n",
                   reference="class Pair:\n    pass\ndef max_chain(p):\n    return 1\n")
    assert p["judge"] == "in_process" and "Pair" in p["why"]
    assert judge.plan("assert sum(1, 2) == 3\n", reference="def sum(a, b):\n    return a + b\n")["proxy"] == ["sum"]
    assert judge.plan("assert sum([1, 2]) == 3\n")["judge"] == "in_process"  # the builtin: nothing of the candidate's
    assert judge.plan("assert P(1).x == 1\n")["judge"] == "in_process"
    assert judge.plan("xs = [3, 1]\nsort_in_place(xs)\nassert xs == [1, 3]\n")["changes"] is True
    assert judge.plan("assert f([3, 1]) == [1, 3]\n")["changes"] is False


@pytest.mark.skipif(not DATA_DIR.exists(), reason=f"benchmark mirror not found at {DATA_DIR}")
def test_every_real_row_is_judged_by_proxy():
    """MBPP 367's set-up code builds trees of the reference's own Node class: it runs in the
    candidate's process, and the judge passes references to its trees (``judge.plan``)."""
    modes = {}
    for name in ("humaneval", "mbpp"):
        for ex in tasks.load_task(name, "test", DATA_DIR):
            modes[ex.id] = ex.gold["judge"]
    assert set(modes.values()) == {"proxy"}, sorted(k for k, v in modes.items() if v != "proxy")
    assert len(modes) == 164 + 500


def test_the_judge_serves_mutation_exceptions_and_unservable_tests(monkeypatch):
    sort_tests = "xs = [3, 1, 2]\nsort_in_place(xs)\nassert xs == [1, 2, 3]\n"
    assert rewards.code_reward("def sort_in_place(v):\n    v.sort()\n", sort_tests) == 1.0
    assert rewards.code_reward("def sort_in_place(v):\n    return sorted(v)\n", sort_tests) == 0.0
    raises = "try:\n    root(-1)\n    ok = False\nexcept ValueError:\n    ok = True\nassert ok\nassert root(4) == 2.0\n"
    assert rewards.code_reward("def root(x):\n    if x < 0:\n        raise ValueError\n    return x ** 0.5\n",
                               raises) == 1.0
    # StopIteration from the candidate must not end a map early in the tests
    stop = judge.plan("assert list(map(f, [1, 2])) == []\n", reference="def f(x):\n    return x\n")
    assert stop["judge"] == "proxy"
    assert rewards.code_reward("def f(x):\n    raise StopIteration\n", stop) == 0.0
    # the tests pass a function: only the in-process fallback can judge them. It is off unless
    # allowed, because a program handed a function reaches the tests' namespace through it
    apply_tests = "assert apply(lambda v: v + 1, 1) == 2\nassert apply(lambda v: v * 3, 4) == 12\n"
    correct = "def apply(fn, x):\n    return fn(x)\n"
    forging = "def apply(f, x):\n    f.__globals__['__srpo_plain__'] = lambda v: True\n    return 1\n"
    assert rewards.code_job(correct, apply_tests) == {"judge": "refused",
                                                      "why": "the tests pass a function or an object to 'apply'"}
    assert rewards.code_reward(correct, apply_tests) == 0.0 and rewards.code_reward(forging, apply_tests) == 0.0
    monkeypatch.setenv("SRPO_ALLOW_IN_PROCESS", "1")
    res = sandbox.run_job(rewards.code_job(correct, apply_tests), LIMITS)
    assert res.passed and res.judge == "in_process"
    monkeypatch.delenv("SRPO_ALLOW_IN_PROCESS")
    # a value the proxy cannot send at run time fails the job; it never switches judges
    plan = judge.plan("x = encode('abc')\nassert decode(x) == 'abc'\n")
    deep = ("def encode(s):\n    v = []\n    for _ in range(99):\n        v = [v]\n    return v\n"
            "def decode(v):\n    return 'abc'\n")
    res = sandbox.run_job(rewards.code_job(deep, plan), LIMITS)
    assert res.judge == "proxy" and not res.passed
    # replies may change arguments only where the plan asked for changes
    tests = "data = [[3, 1, 2], [5, 4]]\nfor i in range(2):\n    assert f(data[i]) == sorted(data[i])\n"
    assert judge.plan(tests)["changes"] is False
    forged = ("import os, json, struct\n"
              "def f(v):\n"
              "    d = json.dumps({'ok': ['l', []], 'changed': [[0, ['l', []]]]}).encode()\n"
              "    for fd in range(3, 12):\n"
              "        try:\n            os.write(fd, struct.pack('>I', len(d)) + d)\n        except OSError:\n        "
              "    pass\n"
              "    import time; time.sleep(0.5)\n    return []\n")
    assert rewards.code_reward(forged, tests) == 0.0


# ----------------------------------------------------------------------------- hostile programs

def _examples() -> dict:
    return {e.id: e for name in ("humaneval", "mbpp") for e in tasks.load_task(name, "test", DATA_DIR)}


_leftovers = sandbox_leftovers


@pytest.mark.skipif(not DATA_DIR.exists(), reason=f"benchmark mirror not found at {DATA_DIR}")
@pytest.mark.parametrize("backend", ["bwrap", "guard"])
def test_hostile_programs_score_zero_beside_correct_ones(backend, monkeypatch, tmp_path):
    monkeypatch.setenv("SRPO_SANDBOX", backend)
    examples = _examples()
    programs = dict(hj.HOSTILE)
    if backend == "guard":  # the kernel-free fallback: one program of each class
        programs = {k: v for i, (k, v) in enumerate(programs.items()) if i % 3 == 0}
    programs.update({f"{task} correct": prog for task, prog in hj.CORRECT.items()})
    before = set(_leftovers())

    def run(item):
        key, program = item
        return key, sandbox.run_job(rewards.code_job(program, examples[key.split()[0]].gold), LIMITS)

    with ThreadPoolExecutor(10) as pool:  # 8 hostile and 2 correct at a time
        results = dict(pool.map(run, programs.items()))
    forged = [k for k, r in results.items() if r.passed and not k.endswith("correct")]
    assert not forged, f"wrong programs scored 1 under {backend}: {forged}"
    assert all(results[f"{task} correct"].passed for task in hj.CORRECT), {k: r for k, r in results.items()
                                                                           if k.endswith("correct")}
    assert all(r.judge == "proxy" for r in results.values())
    assert not set(_leftovers()) - before, "processes or zombies outlived their jobs"
    assert not list(tmp_path.iterdir())


def test_scratch_space_is_capped_in_inodes():
    if os.geteuid() != 0:
        pytest.skip("inode caps need root: the tmpfs is mounted in a private mount namespace (docs/judge.md)")
    # as root, with bubblewrap installed by `make install`, the cap must be on
    assert sandbox.backend() == "bwrap" and sandbox._INODE_CAP
    flood = ("import os\ni = 0\nwhile True:\n    try:\n        open(f'/tmp/work/f{i}', 'w').close()\n"
             "    except OSError:\n        break\n    i += 1\n"
             "def count():\n    return i\n")
    limits = sandbox.Limits(timeout_s=20, scratch_inodes=500)
    job = rewards.code_job(flood, "assert count() == -1\n")
    job["spec"]["tests"] = "n = count()\nassert 0 < n < 500, n\n"
    assert sandbox.run_job(job, limits).passed


# ----------------------------------------------------------------------------- evalplus's rules

@pytest.mark.parametrize("dataset,entry,inp,out,exp,atol,verdict", [
    ("humaneval", "f", [1], 1, 1, 0, True),
    ("humaneval", "f", [1], True, 1, 0, True),  # evalplus compares with ==
    ("humaneval", "f", [1], 1.0000001, 1.0, 0, True),  # a float expected: atol 1e-6
    ("humaneval", "f", [1], 1.01, 1.0, 0, False),
    ("humaneval", "f", [1], [1.0, 2.0000001], [1.0, 2.0], 0, True),
    ("humaneval", "f", [1], (1.0, 2.0000001), [1.0, 2.0], 0, False),  # type checked when tolerance applies
    ("humaneval", "f", [1], [1.0], [1.0, 2.0], 0, False),
    ("humaneval", "f", [1], None, None, 0, True),
    ("humaneval", "f", [1], float("inf"), float("inf"), 0, True),
    ("humaneval", "find_zero", [[-6, 11, -6, 1]], 1.0, 0.0, 1e-6, True),  # the root check, not the expected value
    ("humaneval", "find_zero", [[-6, 11, -6, 1]], 1.5, 1.0, 1e-6, False),
    ("mbpp", "are_equivalent", [1, 2], False, True, 0, True),
    ("mbpp", "f", [1], {1, 2}, {2, 1}, 0, True),
    ("mbpp", "f", [1], "x", None, 0, False),
])
def test_evalplus_match_follows_evalplus(dataset, entry, inp, out, exp, atol, verdict):
    assert judge.evalplus_match(dataset, entry, inp, out, exp, atol)[0] is verdict
    if entry != "find_zero":  # evalplus 0.3.1 fails every find_zero (see evalplus_match)
        import pickle

        from evalplus.eval import untrusted_check

        code = f"import pickle\n_OUT = pickle.loads({pickle.dumps(out)!r})\ndef {entry}(*a):\n    return _OUT\n"
        status, _ = untrusted_check(dataset, code, [inp], entry, expected=[exp], atol=atol, ref_time=[0.01],
                                    fast_check=True)
        assert (status == "pass") is verdict
