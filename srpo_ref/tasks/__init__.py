"""Tasks: what a benchmark is. Its rows and where they come from (``data``), its chat prompt and
reward kind (``benchmarks``, ``synthetic``), its name in the registry (``registry``) and the
graders' self-check on its gold answers (``self_check``). Tasks use the rewards; the rewards know
nothing of tasks.

The names below are the package's public face: ``from srpo_ref import tasks; tasks.load_task(...)``.
"""

from srpo_ref.tasks.benchmarks import (CODE_SYSTEM, DEFAULT_TOOLUSE_SYSTEM, MATH_SYSTEM, MBPP_TEST_IDS,
                                       SCIKNOWEVAL_SIZES,
                                       TOOLUSE_SYSTEM_PROMPTS, tooluse_system_prompt)
from srpo_ref.tasks.data import DataError, DataNotFound, Example, default_data_dir, offline
from srpo_ref.tasks.registry import MATHCODE_BENCHMARKS, PAPER_BENCHMARKS, TASKS, TINY_BENCHMARKS, load_task
from srpo_ref.tasks.self_check import (MCQ_RESPONSE, UPSTREAM_UNSCORABLE_GOLDS, code_judge, grader_self_check,
                                       reference_responses)
from srpo_ref.tasks.synthetic import (GYM_GENERATED, GYM_TASKS, GYM_TEST, TINY_CITIES,
                                      TINY_MCQ_OPTIONS, TINY_SEED, TINY_TOOLS, tiny_mcq_gold, tiny_mcq_response,
                                      tiny_tool_call)

__all__ = [
    "CODE_SYSTEM", "DEFAULT_TOOLUSE_SYSTEM", "MATH_SYSTEM", "MBPP_TEST_IDS", "SCIKNOWEVAL_SIZES",
           "TOOLUSE_SYSTEM_PROMPTS",
    "tooluse_system_prompt", "DataError", "DataNotFound", "Example", "default_data_dir", "offline",
           "MATHCODE_BENCHMARKS",
    "PAPER_BENCHMARKS", "TASKS", "TINY_BENCHMARKS", "load_task", "MCQ_RESPONSE", "UPSTREAM_UNSCORABLE_GOLDS",
           "code_judge",
    "grader_self_check", "reference_responses", "GYM_GENERATED", "GYM_TASKS", "GYM_TEST", "TINY_CITIES",
           "TINY_MCQ_OPTIONS",
    "TINY_SEED", "TINY_TOOLS", "tiny_mcq_gold", "tiny_mcq_response", "tiny_tool_call",
]
