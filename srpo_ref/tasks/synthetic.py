"""Synthetic tasks generated from a seed: the tiny tasks (``tiny_mcq``, ``tiny_tool``), which use the
same prompt and answer formats and the same reward code as SciKnowEval and Tool Use, and the
reasoning-gym procedural tasks of the small profile."""

from __future__ import annotations

import json
import random

from srpo_ref.tasks.data import DataNotFound, Example

# ----------------------------------------------------------------------------- tiny synthetic tasks

TINY_MCQ_SYSTEM = "Pick one option. Respond as <reasoning>...</reasoning> <answer>letter</answer>."
TINY_TOOL_SYSTEM = "Use one tool. Respond as Thought, Action, Action Input."
TINY_MCQ_OPTIONS = {"A": ("even", "below 500"), "B": ("odd", "below 500"), "C": ("even", "500 or more"),
                    "D": ("odd", "500 or more")}
TINY_CITIES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Delhi", "Quito", "Accra", "Hanoi", "Dakar", "Kyiv",
               "Riga", "Doha", "Baku", "Bern", "Sofia", "Minsk", "Tunis", "Seoul", "Dublin", "Lagos", "Perth", "Nice"]
TINY_TOOLS = {  # the skill is picking the tool from the question; the city is context only
    "getWeather": ["What is the weather there?", "Is it raining there?", "Forecast for there?",
                   "How warm is it there?"],
    "getTime": ["What time is it there?", "Local time there?", "Which hour is it there?", "Is it morning there?"],
    "getNews": ["News from there?", "What happened there?", "Headlines from there?", "Any events there?"],
    "getHotels": ["Find a hotel there.", "Where can I stay there?", "Hotels there?", "Book a room there."],
}
TINY_TOOL_DOC = "Tools: " + ", ".join(TINY_TOOLS) + "; input {}."


def tiny_mcq_response(n: int, letter: str) -> str:
    parity, size = TINY_MCQ_OPTIONS[letter]
    return f"<reasoning>{n} is {parity}, {size}</reasoning> <answer>{letter}</answer>"


def tiny_mcq_gold(n: int) -> str:
    return {(0, True): "A", (1, True): "B", (0, False): "C", (1, False): "D"}[(n % 2, n < 500)]


def _tiny_mcq_example(n: int, split: str) -> Example:
    options = "\n".join(f"{k}: {p}, {s}" for k, (p, s) in TINY_MCQ_OPTIONS.items())
    user = f"Which is true of {n}?\n{options}\nPlease reason step by step."
    return Example(f"tiny_mcq-{split}-{n}", [{"role": "system", "content": TINY_MCQ_SYSTEM}, {"role": "user",
                                                                                              "content": user}],
                   tiny_mcq_gold(n), "mcq", {"n": n})


def tiny_tool_call(tool: str) -> str:
    return json.dumps([{"Action": tool, "Action_Input": "{}"}])


def _tiny_tool_example(tool: str, template: int, city: str, split: str) -> Example:
    question = TINY_TOOLS[tool][template] + f" City: {city}"
    user = f"{TINY_TOOL_DOC}\nQuestion: {question}"
    return Example(f"tiny_tool-{split}-{tool}-{template}-{city}", [{"role": "system", "content": TINY_TOOL_SYSTEM},
                                                                   {"role": "user", "content": user}],
                   tiny_tool_call(tool), "tooluse", {"tool": tool, "city": city})


TINY_SEED = 1234


def _tiny_mcq(split: str, data_dir=None) -> list[Example]:
    numbers = list(range(100, 1000))
    random.Random(TINY_SEED).shuffle(numbers)
    chosen = numbers[:200] if split == "test" else numbers[200:]
    return [_tiny_mcq_example(n, split) for n in chosen]


def _tiny_tool(split: str, data_dir=None) -> list[Example]:
    combos = [(t, k, c) for t in TINY_TOOLS for k in range(4) for c in TINY_CITIES]
    random.Random(TINY_SEED).shuffle(combos)
    chosen = combos[:64] if split == "test" else combos[64:]
    return [_tiny_tool_example(t, k, c, split) for t, k, c in chosen]


# ----------------------------------------------------------------------------- reasoning-gym

# Procedural tasks from reasoning-gym (PyPI ``reasoning-gym``), for models small enough to train
# on a CPU (the small profile). Each name is one dataset and difficulty, listed in the order the
# small profile's pre-checks try them (docs/results.md, "The small profile"). Rows are generated from a
# seed, distinct questions only; the test split is held out of training by question text. The
# answer is a whole number in the MCQ answer format, graded by ``rewards.integer_reward`` (exact
# integer equality; reasoning-gym's own scorer gives 0.5 to any wrong number for some tasks, a
# free reward a policy would find).
GYM_SYSTEM = "Answer with a whole number. Respond as <reasoning>...</reasoning> <answer>number</answer>."
_PLUS_MINUS = dict(operators=("+", "-"), allow_parentheses=False, allow_negation=False)
GYM_TASKS = {
    "gym_add1": ("basic_arithmetic", dict(min_terms=2, max_terms=2, min_digits=1, max_digits=1, **_PLUS_MINUS)),
    "gym_add2": ("basic_arithmetic", dict(min_terms=2, max_terms=2, min_digits=2, max_digits=2, **_PLUS_MINUS)),
    "gym_chain3": ("chain_sum", dict(min_terms=3, max_terms=3, min_digits=1, max_digits=1)),
    "gym_legs": ("leg_counting", dict(min_animals=1, max_animals=2, min_instances=1, max_instances=3)),
}
GYM_GENERATED = 4000  # rows drawn before de-duplication
GYM_TEST = 200  # held-out questions (at most a fifth of the distinct ones)


def _gym(name: str):
    dataset, params = GYM_TASKS[name]

    def load(split: str, data_dir=None) -> list[Example]:
        try:
            import reasoning_gym
        except ImportError:
            raise DataNotFound(f"benchmark {name!r} needs reasoning-gym: pip install 'srpo-repro[gym]'") from None
        rows, seen = [], set()
        for row in reasoning_gym.create_dataset(dataset, size=GYM_GENERATED, seed=TINY_SEED, **params):
            if row["question"] not in seen:
                seen.add(row["question"])
                rows.append(row)
        random.Random(TINY_SEED).shuffle(rows)
        n_test = min(GYM_TEST, len(rows) // 5)
        chosen = rows[:n_test] if split == "test" else rows[n_test:]
        return [Example(f"{name}-{split}-{i}",
                        [{"role": "system", "content": GYM_SYSTEM}, {"role": "user", "content": r["question"].strip()}],
                        str(int(r["answer"])), "integer", {"dataset": dataset}) for i, r in enumerate(chosen)]

    return load
