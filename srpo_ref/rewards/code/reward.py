"""The code grader: the last fenced code block of a response, judged in the sandbox. The
benchmark's unit tests (or evalplus's checks) run in a separate judge process and call the
program through proxies, comparing plain values (``srpo_ref.rewards.code.judge``).
"""

from __future__ import annotations

import logging
import os
import re

from srpo_ref.rewards.code import judge, sandbox

_CODE_BLOCK = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.DOTALL)
CODE_LIMITS = sandbox.Limits()


def extract_code(response: str) -> str:
    """The last fenced code block (python or bare), else the whole response."""
    blocks = _CODE_BLOCK.findall(response)
    return blocks[-1] if blocks else response


def code_job(program: str, gold) -> dict:
    """The judge's job for ``program`` (``srpo_ref.rewards.code.judge``). ``gold``: a test plan
    (``judge.plan``: HumanEval and MBPP rows carry one), test source (asserts on the functions
    it calls; planned here), or an evalplus job ``{"evalplus": "humaneval"|"mbpp", "problem":
    ..., "expected": ...}`` (see ``evals.run.evalplus_examples``)."""
    if isinstance(gold, dict) and "evalplus" in gold:
        return {"judge": "evalplus", "candidate": program, "dataset": gold["evalplus"], "problem": gold["problem"],
                "expected": gold["expected"], "base_only": gold.get("base_only", False),
                "min_time_limit": gold.get("min_time_limit", 1.0),
                "gt_time_limit_factor": gold.get("gt_time_limit_factor", 4.0),
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
        logging.getLogger(__name__).warning(
            "code tests the judge cannot serve by proxy (%s) score 0: the in-process fallback can be forged by a "
            "program "
            "the tests hand a function or an object. SRPO_ALLOW_IN_PROCESS=1 allows it (docs/judge.md: The code judge)",
                                            why)


def code_reward(response: str, gold, limits: sandbox.Limits = CODE_LIMITS) -> float:
    """1.0 when the extracted program passes its tests: the benchmark's tests run in the judge
    process, the program in the sandbox answers their calls (``srpo_ref.rewards.code.judge``)."""
    job = code_job(extract_code(response), gold)
    if job["judge"] == "refused":
        return 0.0
    if job["judge"] == "evalplus":
        limits = sandbox.Limits(**{**limits.__dict__, "timeout_s": max(limits.timeout_s, job["timeout_s"])})
    return float(sandbox.run_job(job, limits).passed)
