"""The graders' self-check: every test row's gold answer must score 1 and a wrong one 0, under
every grader mode (the pipeline runs it before any training)."""

from __future__ import annotations

import collections
import json
from concurrent.futures import ThreadPoolExecutor

from srpo_ref import rewards
from srpo_ref.rewards.code import judge
from srpo_ref.tasks.data import Example
from srpo_ref.tasks.registry import load_task

# Gold answers that the SDPO authors' Tool Use scorer cannot score (nested JSON in the input: its
# lazy ``{.*?}`` stops at the first "}"). Under ``grader=upstream`` they score 0, as upstream, so
# upstream's ceiling on the 68-question test split is 66/68 = 97.1%.
UPSTREAM_UNSCORABLE_GOLDS = frozenset({"tooluse-test-4072", "tooluse-test-4079"})


def grader_self_check(name: str, data_dir=None, threads: int = 2) -> dict:
    """Grade a gold-carrying and a wrong response for every test row under every grader mode.
    ``ok`` when every wrong answer scores 0 and every gold scores 1, except the golds that
    upstream's scorer cannot score, which must score exactly 0 under ``upstream``."""
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
    fallback, beside the program in the sandbox). See ``srpo_ref.rewards.code.judge``."""
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
        return (MCQ_RESPONSE.format(reasoning="Because.", letter=ex.gold),
                MCQ_RESPONSE.format(reasoning="Because.", letter=wrong))
    if ex.kind == "tooluse":
        calls = json.loads(ex.gold) if isinstance(ex.gold, str) else ex.gold
        bad = [dict(c, Action=c["Action"] + "Wrong") for c in calls]
        return rewards.format_tool_calls(calls), rewards.format_tool_calls(bad)
    if ex.kind == "integer":
        wrong = str(int(ex.gold) + 1)
        return (MCQ_RESPONSE.format(reasoning="Because.", letter=ex.gold),
                MCQ_RESPONSE.format(reasoning="Because.", letter=wrong))
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
