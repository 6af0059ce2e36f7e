"""The task registry: every benchmark's name and its loader (``load_task``).

One registry serves training (``srpo_ref.trainer``) and evaluation (``evals``). Scoring always
goes through ``srpo_ref.rewards`` so that a benchmark is graded the same way everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from srpo_ref.tasks.benchmarks import (DEFAULT_TOOLUSE_SYSTEM, SCIKNOWEVAL_SIZES, _humaneval, _math, _mbpp,
                                       _sciknoweval, _tooluse)
from srpo_ref.tasks.data import Example, _hub
from srpo_ref.tasks.synthetic import GYM_TASKS, _gym, _tiny_mcq, _tiny_tool


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
