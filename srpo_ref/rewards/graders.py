r"""The text graders: multiple choice, whole numbers and tool calls. Pure functions of the response
and the gold answer; nothing here runs code or starts a process.

Two grader modes for the paper's benchmarks (``grader=``):

- ``upstream`` (default): the SDPO authors' scoring (lasgroup/SDPO at 0e6d510,
  ``verl/utils/reward_score/feedback/{mcq,tooluse}.py``), which produced the paper's numbers,
  reproduced exactly, quirks included: MCQ takes ``text.split("<answer>")[-1].split("</answer>")[0]``
  (a bare or unclosed answer counts); Tool Use reads ``Action:\s*(\w+)`` anywhere and merges the
  JSON of every ``Action Input:\s*({.*?})`` that parses, skipping the rest (so nested JSON inputs
  cannot be scored: 2 of the 68 test golds).
- ``strict``: the SPEC's wording. MCQ needs a closed ``<answer>...</answer>``; Tool Use needs
  ``Action:`` at a line start and every ``Action Input`` to be one complete JSON object.
"""

from __future__ import annotations

import collections
import json
import re

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
