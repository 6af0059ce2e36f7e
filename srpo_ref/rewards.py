r"""Every reward function, shared by training (srpo_ref) and evaluation (evals).

Each scorer takes the model's response text and the gold answer and returns a float in [0, 1].
A malformed, hostile or hung response scores 0; nothing here raises on model output, and nothing
here can hang: math runs in killable worker processes, code in the sandbox (``srpo_ref.sandbox``).

Two grader modes for the paper's benchmarks (``grader=``):

- ``upstream`` (default): the SDPO authors' scoring (lasgroup/SDPO at 0e6d510,
  ``verl/utils/reward_score/feedback/{mcq,tooluse}.py``), which produced the paper's numbers,
  reproduced exactly, quirks included: MCQ takes ``text.split("<answer>")[-1].split("</answer>")[0]``
  (a bare or unclosed answer counts); Tool Use reads ``Action:\s*(\w+)`` anywhere and merges the
  JSON of every ``Action Input:\s*({.*?})`` that parses, skipping the rest (so nested JSON inputs
  cannot be scored: 2 of the 68 test golds).
- ``strict``: the SPEC's wording. MCQ needs a closed ``<answer>...</answer>``; Tool Use needs
  ``Action:`` at a line start and every ``Action Input`` to be one complete JSON object.

- ``math_reward``: the last ``\boxed{...}`` (balanced braces) against the gold with math-verify,
  gold first; no box scores 0; ``\%`` is a unit.
- ``code_reward``: the last fenced code block, run in the sandbox; the benchmark's unit tests (or
  evalplus's checks) run in a separate judge process and call it through proxies, comparing
  plain values (``srpo_ref.judge``).
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import queue
import re
import select
import signal
import subprocess
import sys
import threading

from srpo_ref import sandbox

GRADERS = ("upstream", "strict")
DEFAULT_GRADER = "upstream"

# ----------------------------------------------------------------------------- MCQ

_ANSWER_OPEN = "<answer>"
_ANSWER_CLOSE = "</answer>"


def extract_mcq_answer(response: str) -> str | None:
    """Text between the last ``<answer>`` and the next ``</answer>``, stripped; None if absent."""
    start = response.rfind(_ANSWER_OPEN)
    if start < 0:
        return None
    end = response.find(_ANSWER_CLOSE, start)
    if end < 0:
        return None
    return response[start + len(_ANSWER_OPEN) : end].strip()


def mcq_reward(response: str, gold: str) -> float:
    """strict: a closed ``<answer>`` tag holding exactly the gold letter."""
    return float(extract_mcq_answer(response) == str(gold).strip())


def extract_mcq_answer_upstream(response: str) -> str:
    return response.split("<answer>")[-1].split("</answer>")[0].strip()


def mcq_reward_upstream(response: str, gold: str) -> float:
    """upstream: the text after the last ``<answer>`` up to the next ``</answer>`` (or the whole
    text when a tag is missing), stripped, equals the gold as given."""
    return float(extract_mcq_answer_upstream(response) == gold)


_INTEGER = re.compile(r"[+-]?[0-9]{1,40}")  # ASCII digits only: int() also reads other scripts


def integer_reward(response: str, gold: str) -> float:
    """A closed ``<answer>`` tag holding one whole number (sign and digits only, surrounding
    space allowed) equal to the gold: the reasoning-gym tasks of the small profile."""
    answer = extract_mcq_answer(response)
    if answer is None or not _INTEGER.fullmatch(answer):
        return 0.0
    return float(int(answer) == int(gold))


# ----------------------------------------------------------------------------- Tool use

# Action at a line start; only horizontal space before it ("^\s*" scans every following blank
# line from each line start: quadratic in a response of blank lines).
_ACTION = re.compile(r"^[^\S\n]*Action\s*:", re.MULTILINE)
_ACTION_INPUT = re.compile(r"Action\s*Input\s*:\s*", re.MULTILINE)


def _first_json_object(text: str):
    """The first JSON object at the start of ``text`` (after whitespace), or None."""
    text = text.lstrip()
    if not text.startswith("{"):
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def extract_tool_calls(response: str) -> tuple[list[str], list[dict | None]]:
    """Action names and parsed Action Input objects (None where not a JSON object)."""
    names = _action_names(response)
    inputs = [_first_json_object(response[m.end() :]) for m in _ACTION_INPUT.finditer(response)]
    return names, inputs


def _action_names(text: str) -> list[str]:
    r"""The names ``re.finditer(r"^\s*Action\s*:\s*(.+?)\s*$", text, re.MULTILINE)`` captures
    (stripped), in linear time: after each ``Action:``, the rest of the first line that is not
    blank, right-stripped (a remainder of whitespace alone gives ``""`` if it has a character
    other than a newline)."""
    names, pos = [], 0
    while (m := _ACTION.search(text, pos)) is not None:
        start = m.end()
        while start < len(text) and text[start].isspace():
            start += 1
        if start == len(text):
            if any(c != "\n" for c in text[m.end() :]):
                names.append("")
            break
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        names.append(text[start:end].rstrip())
        pos = end
    return names


def _merge(dicts) -> dict:
    merged: dict = {}
    for d in dicts:
        merged.update(d)
    return merged


def parse_tool_gold(gold: str | list) -> tuple[list[str], dict]:
    """Gold answer of a Tool Use row: a JSON list of ``{"Action", "Action_Input"}``."""
    calls = json.loads(gold) if isinstance(gold, str) else gold
    names = [c["Action"] for c in calls]
    inputs = [json.loads(c["Action_Input"]) if isinstance(c["Action_Input"], str) else c["Action_Input"] for c in calls]
    return names, _merge(i for i in inputs if isinstance(i, dict))


def tooluse_reward(response: str, gold: str | list) -> float:
    gold_names, gold_input = parse_tool_gold(gold)
    names, inputs = extract_tool_calls(response)
    if not names or any(i is None for i in inputs):
        return 0.0
    if collections.Counter(names) != collections.Counter(gold_names):
        return 0.0
    return float(json_equal(_merge(inputs), gold_input))


def json_equal(a, b) -> bool:
    """Equal as JSON values: Python's ``==`` has ``True == 1`` and ``1 == 1.0``; here a boolean
    is not a number (numbers still compare by value: JSON has one number type)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


_UPSTREAM_ACTION = re.compile(r"Action:\s*(\w+)")
_UPSTREAM_INPUT_START = re.compile(r"Action Input:\s*\{")


def _upstream_input_blocks(response: str) -> list[str]:
    r"""What upstream's ``re.findall(r"Action Input:\s*({.*?})", response, re.DOTALL)`` returns,
    in linear time: the regex rescans to the end from every unclosed start (quadratic)."""
    blocks, pos = [], 0
    while (m := _UPSTREAM_INPUT_START.search(response, pos)) is not None:
        end = response.find("}", m.end())
        if end < 0:
            break  # no "}" after this start, so none after any later one
        blocks.append(response[m.end() - 1 : end + 1])
        pos = end + 1
    return blocks


def tooluse_reward_upstream(response: str, gold: str | list) -> float:
    """upstream: action names after ``Action:`` anywhere, as a multiset; the JSON blocks after
    ``Action Input:`` (lazy match up to the first ``}``) that parse, merged in order."""
    calls = gold if isinstance(gold, list) else json.loads(gold)
    gold_names = [c["Action"] for c in calls]
    gold_input: dict = {}
    for c in calls:
        try:
            parsed = json.loads(c["Action_Input"]) if isinstance(c["Action_Input"], str) else c["Action_Input"]
        except (json.JSONDecodeError, KeyError):
            parsed = {}
        if parsed:
            gold_input.update(parsed)
    names = _UPSTREAM_ACTION.findall(response)
    merged: dict = {}
    for block in _upstream_input_blocks(response):
        try:
            merged.update(json.loads(block))
        except json.JSONDecodeError:
            pass
    return float(collections.Counter(names) == collections.Counter(gold_names) and merged == gold_input)


def format_tool_calls(gold: str | list, thought: str = "I should call the right tool.") -> str:
    """A response in the required format that performs the gold calls (used by tests and the
    tiny task's demonstrations)."""
    calls = json.loads(gold) if isinstance(gold, str) else gold
    parts = []
    for c in calls:
        args = c["Action_Input"] if isinstance(c["Action_Input"], str) else json.dumps(c["Action_Input"])
        parts.append(f"Thought: {thought}\nAction: {c['Action']}\nAction Input: {args}")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- Math

MATH_TIMEOUT_S = 3.0
_MAX_ANSWER_CHARS = 1000  # a boxed answer longer than this is not an answer


def last_boxed(text: str) -> str | None:
    """Content of the last ``\boxed{...}`` (or ``\fbox{...}``) with balanced braces; None if
    there is none or it is never closed. A backslash escapes the character after it. One pass
    pairs every brace (scanning onward from each ``\boxed{`` is quadratic in a response of many
    unclosed ones, and the scorer must not stall on what a policy writes)."""
    closes, stack, i = {}, [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            closes[stack.pop()] = i
        i += 1
    best = None
    for m in _BOXED.finditer(text):
        end = closes.get(m.end() - 1)
        if end is not None:
            best = text[m.end() : end]
    return best


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _strip_percent(answer: str) -> str:
    return re.sub(r"\\?%", "", answer).strip()


class _MathWorker:
    """One ``srpo_ref.math_worker`` process; killed and replaced when a request times out."""

    def __init__(self, memory_bytes: int):
        self.memory_bytes = memory_bytes
        self.proc = self._spawn()
        self.ready = False

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "srpo_ref.math_worker", str(self.memory_bytes)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    def _readline(self, timeout: float) -> str | None:
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], timeout)[0]:
            return None
        return self.proc.stdout.readline().decode()

    def ask(self, gold: str, answer: str, timeout: float) -> bool:
        if not self.ready:  # start-up (imports) is not charged to the answer's time limit
            if self._readline(60.0) != "ready\n":
                self.restart()
                return False
            self.ready = True
        try:
            self.proc.stdin.write((json.dumps({"gold": gold, "answer": answer}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.restart()
            return False
        line = self._readline(timeout)
        if line is None or line == "":
            self.restart()
            return False
        return line.strip() == "1"

    def restart(self) -> None:
        self.close()
        self.proc, self.ready = self._spawn(), False

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()


class _MathPool:
    def __init__(self, size: int, memory_bytes: int = 2 << 30):
        self.size, self.memory_bytes = size, memory_bytes
        self.idle: queue.Queue = queue.Queue()
        self.created = 0
        self.lock = threading.Lock()

    def verify(self, gold: str, answer: str, timeout: float) -> bool:
        try:
            worker = self.idle.get_nowait()
        except queue.Empty:
            with self.lock:
                spawn = self.created < self.size
                self.created += spawn
            worker = _MathWorker(self.memory_bytes) if spawn else self.idle.get()
        try:
            return worker.ask(gold, answer, timeout)
        finally:
            self.idle.put(worker)

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait().close()


_POOL = _MathPool(int(os.environ.get("SRPO_MATH_WORKERS", min(4, os.cpu_count() or 1))))
atexit.register(_POOL.close)


def math_reward(response: str, gold: str, timeout_s: float = MATH_TIMEOUT_S) -> float:
    """math-verify on the last ``\boxed{}`` against the gold, gold first, in a worker process
    killed after ``timeout_s`` seconds (the answer then scores 0)."""
    answer = last_boxed(response)
    if answer is None or not answer.strip() or len(answer) > _MAX_ANSWER_CHARS:
        return 0.0
    gold = str(gold).strip()
    # A bare gold answer gets math delimiters (an escaped "\$", as in dollar amounts, is not one).
    if gold.startswith("$") and not gold.startswith("\\$"):
        gold = gold.strip("$")
    boxed_gold = last_boxed(gold)
    gold = boxed_gold if boxed_gold is not None else gold
    return float(_POOL.verify(f"${_strip_percent(gold)}$", f"$\\boxed{{{_strip_percent(answer)}}}$", timeout_s))


# ----------------------------------------------------------------------------- Code

_CODE_BLOCK = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.DOTALL)
CODE_LIMITS = sandbox.Limits()


def extract_code(response: str) -> str:
    """The last fenced code block (python or bare), else the whole response."""
    blocks = _CODE_BLOCK.findall(response)
    return blocks[-1] if blocks else response


def code_job(program: str, gold) -> dict:
    """The judge's job for ``program`` (``srpo_ref.judge``). ``gold``: a test plan
    (``judge.plan``: HumanEval and MBPP rows carry one), test source (asserts on the functions
    it calls; planned here), or an evalplus job ``{"evalplus": "humaneval"|"mbpp", "problem":
    ..., "expected": ...}`` (see ``evals.run.evalplus_examples``)."""
    from srpo_ref import judge

    if isinstance(gold, dict) and "evalplus" in gold:
        return {"judge": "evalplus", "candidate": program, "dataset": gold["evalplus"], "problem": gold["problem"],
                "expected": gold["expected"], "base_only": gold.get("base_only", False),
                "min_time_limit": gold.get("min_time_limit", 1.0), "gt_time_limit_factor": gold.get("gt_time_limit_factor", 4.0),
                "timeout_s": gold.get("timeout_s", 60.0)}
    spec = gold if isinstance(gold, dict) and "judge" in gold else judge.plan(str(gold))
    if spec["judge"] == "proxy":
        return {"judge": "proxy", "candidate": program, "spec": spec}
    if os.environ.get("SRPO_ALLOW_IN_PROCESS") != "1":
        _warn_in_process(spec.get("why", ""))
        return {"judge": "refused", "why": spec.get("why", "")}
    return {"judge": "in_process", "candidate": program, "tests": spec["tests"], "names": spec["names"]}


_WARNED: set = set()


def _warn_in_process(why: str) -> None:
    """Once per reason: such tests score 0 unless the in-process fallback is allowed."""
    if why not in _WARNED:
        _WARNED.add(why)
        import logging

        logging.getLogger(__name__).warning(
            "code tests the judge cannot serve by proxy (%s) score 0: the in-process fallback can be forged by a program "
            "the tests hand a function or an object. SRPO_ALLOW_IN_PROCESS=1 allows it (README: The code judge)", why)


def code_reward(response: str, gold, limits: sandbox.Limits = CODE_LIMITS) -> float:
    """1.0 when the extracted program passes its tests: the benchmark's tests run in the judge
    process, the program in the sandbox answers their calls (``srpo_ref.judge``)."""
    job = code_job(extract_code(response), gold)
    if job["judge"] == "refused":
        return 0.0
    if job["judge"] == "evalplus":
        limits = sandbox.Limits(**{**limits.__dict__, "timeout_s": max(limits.timeout_s, job["timeout_s"])})
    return float(sandbox.run_job(job, limits).passed)


# ----------------------------------------------------------------------------- registry

REWARDS = {
    "mcq": {"upstream": mcq_reward_upstream, "strict": mcq_reward},
    "tooluse": {"upstream": tooluse_reward_upstream, "strict": tooluse_reward},
    "math": {"upstream": math_reward, "strict": math_reward},
    "code": {"upstream": code_reward, "strict": code_reward},
    "integer": {"upstream": integer_reward, "strict": integer_reward},  # no upstream scorer: one rule
}


# Longer than any response the samplers can produce (16k tokens of ~12 characters): a text this
# long is not an answer, and no scorer's regex should ever see it.
MAX_RESPONSE_CHARS = 200_000


def score(kind: str, response: str, gold, grader: str = DEFAULT_GRADER) -> float:
    """Reward of ``response`` for a row of ``kind``; 0 on any failure of the scorer itself."""
    if kind not in REWARDS:
        raise ValueError(f"unknown reward kind {kind!r}; known: {sorted(REWARDS)}")
    if grader not in GRADERS:
        raise ValueError(f"unknown grader {grader!r}; choose one of {GRADERS}")
    if not isinstance(response, str) or len(response) > MAX_RESPONSE_CHARS:
        return 0.0
    try:
        return REWARDS[kind][grader](response, gold)
    except Exception:
        return 0.0
