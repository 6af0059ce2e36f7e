"""Every reward, by kind and grader mode: ``score(kind, response, gold, grader)``. Shared by training
(``srpo_ref``) and evaluation (``evals``). Each scorer returns a float in [0, 1]; a malformed,
hostile or hung response scores 0, and nothing here raises on model output.
"""

from __future__ import annotations

from srpo_ref.rewards.code.reward import code_reward
from srpo_ref.rewards.graders import (DEFAULT_GRADER, GRADERS, integer_reward, mcq_reward, mcq_reward_upstream,
                                      tooluse_reward, tooluse_reward_upstream)
from srpo_ref.rewards.math_answers import math_reward

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
