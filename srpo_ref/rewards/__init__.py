"""The reward trust boundary: every reward a policy can earn, and the processes that keep a policy
from earning one it has not. It imports nothing from the trainer or the tasks; what it must hide
(the benchmark mirror) is handed to it (``code.sandbox.hide``).

- ``registry``: ``score(kind, response, gold, grader)``, every reward by kind and grader mode;
- ``graders``: multiple choice, whole numbers and tool calls (pure text);
- ``math_answers`` and ``math_worker``: math-verify in killable worker processes;
- ``code/``: the code reward (``reward``), the judge process that runs the benchmark's tests
  (``judge``), the sandbox the program runs in (``sandbox``), and what runs inside it
  (``jail/harness.py`` and the wire format ``jail/wire.py``, standard library only).

The names below are the package's public face: ``from srpo_ref import rewards; rewards.score(...)``.
"""

from srpo_ref.rewards.code.reward import CODE_LIMITS, code_job, code_reward, extract_code
from srpo_ref.rewards.graders import (DEFAULT_GRADER, GRADERS, extract_mcq_answer, extract_mcq_answer_upstream,
                                      extract_tool_calls, format_tool_calls, integer_reward, json_equal, mcq_reward,
                                      mcq_reward_upstream, parse_tool_gold, tooluse_reward, tooluse_reward_upstream)
from srpo_ref.rewards.math_answers import MATH_TIMEOUT_S, last_boxed, math_reward
from srpo_ref.rewards.registry import MAX_RESPONSE_CHARS, REWARDS, score

__all__ = [
    "CODE_LIMITS", "code_job", "code_reward", "extract_code", "DEFAULT_GRADER", "GRADERS", "extract_mcq_answer",
    "extract_mcq_answer_upstream", "extract_tool_calls", "format_tool_calls", "integer_reward", "json_equal",
           "mcq_reward",
    "mcq_reward_upstream", "parse_tool_gold", "tooluse_reward", "tooluse_reward_upstream", "MATH_TIMEOUT_S",
           "last_boxed",
    "math_reward", "MAX_RESPONSE_CHARS", "REWARDS", "score",
]
