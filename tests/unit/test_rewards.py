"""Reward functions (shared by training and evaluation), including the code sandbox."""

import json
import os
import time

import pytest

from srpo_ref import rewards
from srpo_ref.rewards import code_reward, math_reward, mcq_reward, score, tooluse_reward
from srpo_ref.rewards import graders

GOLD_TOOLS = json.dumps([
    {"Action": "getA", "Action_Input": json.dumps({"x": 1})},
    {"Action": "getB", "Action_Input": json.dumps({"y": "two"})},
])


def test_mcq_uses_last_answer_block_and_strips():
    assert mcq_reward("<answer>A</answer> then <answer>\n B \n</answer>", "B") == 1.0
    assert mcq_reward("<answer>A</answer> then <answer>B</answer>", "A") == 0.0
    assert mcq_reward("B", "B") == 0.0  # no tags
    assert mcq_reward("<answer>B", "B") == 0.0  # unclosed
    assert mcq_reward("<answer>B is right</answer>", "B") == 0.0


def test_tooluse_multiset_and_merged_inputs():
    ok = 'Thought: t\nAction: getB\nAction Input: {"y": "two"}\nThought: u\nAction: getA\nAction Input: {"x": 1}'
    assert tooluse_reward(ok, GOLD_TOOLS) == 1.0
    wrong_arg = ok.replace('"two"', '"three"')
    assert tooluse_reward(wrong_arg, GOLD_TOOLS) == 0.0
    missing = 'Action: getA\nAction Input: {"x": 1}'
    assert tooluse_reward(missing, GOLD_TOOLS) == 0.0
    extra = ok + '\nAction: getA\nAction Input: {"x": 1}'
    assert tooluse_reward(extra, GOLD_TOOLS) == 0.0
    assert tooluse_reward("Action: getA\nAction Input: not json", GOLD_TOOLS) == 0.0
    assert tooluse_reward("", GOLD_TOOLS) == 0.0


def test_math_verify_gold_first_and_equivalent_forms():
    assert math_reward("so the answer is \\boxed{\\frac{1}{2}}", "0.5") == 1.0
    assert math_reward("\\boxed{(3, \\frac{\\pi}{2})}", "\\left( 3, \\frac{\\pi}{2} \\right)") == 1.0
    assert math_reward("\\boxed{3}", "4") == 0.0
    assert math_reward("no answer at all", "4") == 0.0


def test_math_reward_off_main_thread():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(lambda r: math_reward(r, "7"), ["\\boxed{7}", "\\boxed{8}"])) == [1.0, 0.0]


def test_code_reward_pass_and_fail():
    assert code_reward("```python\ndef f(x):\n    return x + 1\n```", "assert f(1) == 2") == 1.0
    assert code_reward("```python\ndef f(x):\n    return x\n```", "assert f(1) == 2") == 0.0
    assert code_reward("this is not code", "assert f(1) == 2") == 0.0


def test_code_reward_accepts_what_real_solutions_return(monkeypatch):
    # Counters, tuples of floats, sets, None, recursion, sys.setrecursionlimit, namedtuple and
    # dataclasses in the program (they use sys._getframe internally) must all still pass.
    program = (
        "import sys, collections, dataclasses\nsys.setrecursionlimit(5000)\n"
        "P = collections.namedtuple('P', 'x y')\n@dataclasses.dataclass\nclass Box:\n    v: int\n"
        "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
        "def count(xs):\n    return collections.Counter(xs)\n"
        "def pair(a):\n    return (a / 2, None, {a})\n"
    )
    tests = ("assert fib(15) == 610\nassert count('abca') == {'a': 2, 'b': 1, 'c': 1}\n"
             "assert pair(3) == (1.5, None, {3})\n")
    assert rewards.code_job(program, tests)["judge"] == "proxy"
    assert code_reward(f"```python\n{program}```", tests) == 1.0
    # the tests use the program's own classes: only the in-process fallback can judge them, and
    # it is off unless allowed (it can be forged by a program the tests hand an object)
    classes = tests + "assert P(1, 2).x == 1 and Box(3).v == 3\n"
    assert rewards.code_job(program, classes)["judge"] == "refused"
    assert code_reward(f"```python\n{program}```", classes) == 0.0
    monkeypatch.setenv("SRPO_ALLOW_IN_PROCESS", "1")
    assert rewards.code_job(program, classes)["judge"] == "in_process"
    assert code_reward(f"```python\n{program}```", classes) == 1.0
    # tracebacks, logging and postponed annotations work in the candidate process
    ordinary = ("import traceback, logging, dataclasses\n"
                "def f(x):\n    try:\n        1 / 0\n    except ZeroDivisionError:\n"
                "        traceback.format_exc(); traceback.print_exc(); logging.exception('oops')\n    return x + 1\n")
    assert code_reward(f"```python\n{ordinary}```", "assert f(3) == 4\n") == 1.0
    postponed = ("from __future__ import annotations\nimport dataclasses, numpy\n"
                 "@dataclasses.dataclass\nclass B:\n    v: int\n"
                 "def f(x):\n    return int(numpy.int64(B(x).v)) + 1\n")  # the interpreter's packages are there
    assert code_reward(f"```python\n{postponed}```", "assert f(3) == 4\n") == 1.0


def test_score_dispatch_never_raises_on_bad_gold():
    assert score("tooluse", "Action: a", "not json") == 0.0
    assert score("mcq", None, "A") == 0.0
    with pytest.raises(ValueError, match="unknown reward kind"):
        score("essay", "x", "y")
    with pytest.raises(ValueError, match="unknown grader"):
        score("mcq", "x", "A", grader="lenient")


# ----------------------------------------------------------------------------- math: hostile answers

HOSTILE_MATH = [
    "\\boxed{9^{9^{9^{9}}}}",  # sympy evaluates a tower: holds the GIL for minutes
    "\\boxed{10^{10^{10^{10}}}-1}",
    "\\boxed{" + "{" * 400 + "1" + "}" * 400 + "}",  # brace bomb
    "\\boxed{" + "\\frac{1}{" * 150 + "2" + "}" * 150 + "}",
    "\\boxed{" + "x^" * 300 + "2}",
    "\\boxed{(" * 200 + "1" + ")}" * 200,
    "2+2 = 4. Next, we need",  # never boxed: the last number in the text is not an answer
    "The answer is 4",
    "\\boxed{4",  # never closed
    "\\boxed{}",
    "\\boxed{" + "9" * 5000 + "}",
]


@pytest.mark.parametrize("response", HOSTILE_MATH)
def test_hostile_math_scores_zero_fast_and_leaves_no_cpu_burning(response):
    t0 = time.time()
    assert math_reward(response, "4") == 0.0
    assert time.time() - t0 < 5.0
    # Nothing keeps computing: within a few seconds every math worker is idle (sleeping on
    # stdin). A replacement worker may still be importing math-verify for a moment.
    deadline = time.time() + 8
    while True:
        busy = _running_math_workers()
        if not busy or time.time() > deadline:
            break
        time.sleep(0.2)
    assert not busy, f"math workers still running after the call: {busy}"


def _running_math_workers() -> list[str]:
    busy = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read()
                state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if b"srpo_ref.rewards.math_worker" in cmd and state == "R":
                busy.append(pid)
    return busy


def test_math_boxed_extraction_and_units():
    assert math_reward("so \\boxed{50\\%}", "50") == 1.0
    assert math_reward("\\boxed{50\\%}", "50\\%") == 1.0
    assert math_reward("\\boxed{1} and later \\boxed{4}", "4") == 1.0  # the last box counts
    assert math_reward("\\boxed{4} and later \\boxed{1}", "4") == 0.0
    assert math_reward("\\boxed{\\frac{1}{2}}", "\\frac12") == 1.0  # nested braces
    assert math_reward("\\boxed{4}", "\\boxed{4}") == 1.0  # a boxed gold


def test_math_worker_recovers_after_a_timeout():
    assert math_reward("\\boxed{9^{9^{9^{9}}}}", "3") == 0.0
    assert math_reward("\\boxed{7}", "7") == 1.0


# ----------------------------------------------------------------------------- scorer stalls


def _old_last_boxed(text):
    """The scan-from-every-match reference (quadratic on many unclosed boxes)."""
    import re

    best = None
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            if text[i] == "\\":
                i += 2
                continue
            depth += text[i] == "{"
            depth -= text[i] == "}"
            i += 1
        if depth == 0:
            best = text[m.end() : i - 1]
    return best


def _random_text(rng, alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def test_linear_scorers_agree_with_the_plain_regexes_on_random_text():
    import random
    import re

    from srpo_ref import rewards

    rng = random.Random(0)
    boxed_parts = ["\\boxed{", "\\fbox {", "{", "}", "\\", "\\\\", "x", " ", "\n", "\\{", "\\}"]
    action_parts = ["Action", "Action:", " ", "\n", "\t", ":", "Search", "Action Input:", "{", "}", '"a"', "x", "\n\n"]
    for _ in range(3000):
        text = "".join(rng.choice(boxed_parts) for _ in range(rng.randint(0, 30)))
        assert rewards.last_boxed(text) == _old_last_boxed(text), text
        text = "".join(rng.choice(action_parts) for _ in range(rng.randint(0, 30)))
        old_names = [m.group(1).strip() for m in re.finditer(r"^\s*Action\s*:\s*(.+?)\s*$", text, re.MULTILINE)]
        assert rewards.extract_tool_calls(text)[0] == old_names, repr(text)
        assert graders._upstream_input_blocks(text) == re.findall(r"Action Input:\s*({.*?})", text,
                                                                  re.DOTALL), repr(text)


def test_hostile_responses_do_not_stall_the_scorers():
    """Inputs that took 10-33 s with the quadratic scans (1,600 unclosed boxes and 65k spaces;
    60k blank lines before Tool Use parsing). A generous alarm, not a speed measurement: the
    linear scans take milliseconds, a quadratic regression minutes."""
    import signal

    from srpo_ref import rewards

    def stalled(*_):
        raise TimeoutError("scorer stalled")

    old = signal.signal(signal.SIGALRM, stalled)
    signal.alarm(20)
    try:
        boxes = "\\boxed{" * 1600 + " " * 65_000
        assert rewards.last_boxed(boxes) is None
        assert rewards.score("math", boxes, "1") == 0.0
        blank = "\n" * 60_000 + "Action: x"
        assert rewards.extract_tool_calls(blank)[0] == ["x"]
        gold = json.dumps([{"Action": "x", "Action_Input": "{}"}])
        for grader in ("strict", "upstream"):
            assert rewards.score("tooluse", "Action Input: {" * 20_000, gold, grader) == 0.0
        spaced = "Action: x" + " " * 30_000 + "y\nAction Input: {}"
        assert rewards.score("tooluse", spaced, gold, "strict") == 0.0  # the name is "x ... y"
        assert rewards.score("tooluse", spaced, gold, "upstream") == 1.0  # upstream reads the word after "Action:"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_strict_tool_use_compares_json_types():
    from srpo_ref import rewards

    gold = json.dumps([{"Action": "set", "Action_Input": json.dumps({"on": True, "n": 1})}])
    assert rewards.score("tooluse", 'Action: set\nAction Input: {"on": true, "n": 1}', gold, "strict") == 1.0
    assert rewards.score("tooluse", 'Action: set\nAction Input: {"on": 1, "n": 1}', gold, "strict") == 0.0
    assert rewards.score("tooluse", 'Action: set\nAction Input: {"on": true, "n": true}', gold, "strict") == 0.0
    assert rewards.score("tooluse", 'Action: set\nAction Input: {"on": true, "n": 1.0}', gold,
                         "strict") == 1.0  # one number type
    assert rewards.json_equal([1, {"a": None}], [1, {"a": None}]) and not rewards.json_equal([1], [True])


ADVERSARIAL_CHARS = 8192 * 4  # 8,192 tokens' worth of text (about 4 characters a token)


@pytest.mark.parametrize("shape", ["unclosed_boxes", "boxes_and_spaces", "blank_lines_then_action", "unclosed_inputs",
                                   "action_then_spaces", "answer_tags", "code_fences", "backslashes"])
def test_each_adversarial_shape_scores_in_under_a_second(shape):
    """The issue's bound, per scorer call: what the linear scans do in milliseconds took seconds
    to minutes with the quadratic ones (and a response over MAX_RESPONSE_CHARS is not parsed)."""
    from srpo_ref import rewards

    n = ADVERSARIAL_CHARS
    text = {
        "unclosed_boxes": "\\boxed{" * (n // 7),
        "boxes_and_spaces": "\\boxed{" * (n // 14) + " " * (n // 2),
        "blank_lines_then_action": "\n" * (n - 9) + "Action: x",
        "unclosed_inputs": "Action Input: {" * (n // 15),
        "action_then_spaces": "Action:" + " " * n + "x",
        "answer_tags": "<answer>" * (n // 8),
        "code_fences": "```python\n" * (n // 10),
        "backslashes": "\\" * n + "\\boxed{1}",
    }[shape]
    gold_tool = json.dumps([{"Action": "x", "Action_Input": "{}"}])
    assert rewards.score("math", "\\boxed{1}", "1") == 1.0  # the math worker started (its start-up is not the scorer's)
    for kind, gold in [("math", "1"), ("mcq", "A"), ("tooluse", gold_tool)]:
        for grader in rewards.GRADERS:
            t0 = time.perf_counter()
            rewards.score(kind, text, gold, grader)
            assert time.perf_counter() - t0 < 1.0, (shape, kind, grader)
    t0 = time.perf_counter()
    rewards.extract_code(text)  # the code scorer's only parsing (the rest is the sandbox's time limit)
    assert time.perf_counter() - t0 < 1.0, (shape, "code")
    assert rewards.score("math", "x" * (rewards.MAX_RESPONSE_CHARS + 1) + "\\boxed{1}", "1") == 0.0


def test_integer_reward_wants_one_whole_number_in_a_closed_tag():
    ok = "<reasoning>\n3 + 4 = 7\n</reasoning>\n<answer>\n7\n</answer>"
    assert score("integer", ok, "7") == 1.0
    assert score("integer", "<answer> +7 </answer>", "7") == 1.0
    assert score("integer", "<answer>-12</answer>", "-12") == 1.0
    assert score("integer", "<answer>007</answer>", "7") == 1.0  # the same integer
    hostile = [
        "7",  # no tag
        "<answer>7",  # unclosed
        "<answer>7.0</answer>", "<answer>7 8</answer>", "<answer>7, 7</answer>", "<answer>x=7</answer>",
        "<answer>7</answer><answer>8</answer>",  # the last answer counts
        "<answer>" + "7" * 100 + "</answer>",  # no giant ints
        "<answer>٧</answer>",  # a non-ASCII digit: \d matches it, the rule does not
        "<answer>1e1</answer>", "<answer>0x7</answer>", "<answer>--7</answer>", "<answer>7\n</answer>extra <answer>",
        "<answer></answer>", "",
    ]
    for r in hostile:
        assert score("integer", r, "7") == 0.0, r
    assert score("integer", "<answer>8</answer>" * 10_000, "8") == 1.0  # long (190k characters) but linear
    assert score("integer", "<answer>7</answer>", "not a number") == 0.0  # bad gold: 0, never a crash
