"""The small profile's candidate tasks (reasoning-gym), the pre-check gate, the format warm-up's
answer modes."""

import random

import pytest

from evals.task_choice import gate, table
from srpo_ref import rewards, tasks
from srpo_ref.models import format_warmup

reasoning_gym = pytest.importorskip("reasoning_gym",
                                    reason="reasoning-gym is in the dev extra: pip install -e '.[dev]'")


@pytest.mark.parametrize("name", list(tasks.GYM_TASKS))
def test_gym_splits_are_deterministic_disjoint_and_gradable(name):
    train, test = tasks.load_task(name, "train"), tasks.load_task(name, "test")
    assert len(test) >= 40 and len(train) >= 4 * len(test)
    def questions(rows):
        return [ex.messages[-1]["content"] for ex in rows]
    assert not set(questions(train)) & set(questions(test))
    assert len(set(questions(train))) == len(train)  # distinct questions only
    assert questions(tasks.load_task(name, "train")) == questions(train)  # the same rows every time
    dataset, params = tasks.GYM_TASKS[name]
    for ex in train[:50] + test[:50]:
        gold = tasks.MCQ_RESPONSE.format(reasoning="...", letter=ex.gold)
        assert ex.score(gold) == 1.0
        assert ex.score(tasks.MCQ_RESPONSE.format(reasoning="...", letter=int(ex.gold) + 1)) == 0.0
    # our gold is reasoning-gym's own answer for the question
    generated = {r["question"].strip(): r["answer"] for r in reasoning_gym.create_dataset(dataset,
                                                                                          size=tasks.GYM_GENERATED,
                                                                                          seed=tasks.TINY_SEED,
                                                                                          **params)}
    for ex in test[:50]:
        assert int(generated[ex.messages[-1]["content"]]) == int(ex.gold)


def _precheck(base=0.4, low=0.3, fmt=0.95, gain=0.2, gain_low=0.05, questions=20):
    return {"rollout": {"max_new_tokens": 96}, "base": {"avg_at_k": {"mean": base, "low": low, "high": base + 0.1,
                                                                     "n": 48}},
            "student": {"format_compliance": fmt, "accuracy": base, "truncated": 0.0},
            "teacher": {"questions": questions, "teacher_minus_student": {"mean": gain, "low": gain_low,
                                                                          "high": gain + 0.1, "n": questions}}}


def test_gate_needs_every_criterion():
    assert gate(_precheck())["passes"]
    fails = {
        "base_in_range": [_precheck(base=0.14, low=0.05), _precheck(base=0.71, low=0.6)],
        "base_above_zero": [_precheck(base=0.16, low=0.0)],
        "format": [_precheck(fmt=0.89)],
        "teacher_gain": [_precheck(gain=0.09), _precheck(gain=0.3, gain_low=0.0)],
    }
    for criterion, pres in fails.items():
        for pre in pres:
            g = gate(pre)
            assert not g["passes"] and not g[criterion], (criterion, pre)
    no_teacher = _precheck()
    no_teacher["teacher"] = {"questions": 0}
    assert not gate(no_teacher)["passes"]
    row = {"candidate": "gym_x", "warmup": {"answers": "own", "examples": 40, "own_answers_right": 12},
           "precheck": no_teacher, "gate": gate(no_teacher)}
    assert "fails: teacher_gain" in table([row]) and "n/a (0)" in table([row])
    assert "| own: 40 (12 right) | 96 |" in table([row])


def test_format_only_answers_are_never_the_gold():
    rng = random.Random(0)
    for ex in tasks.load_task("gym_add1", "train")[:60]:
        for _ in range(5):
            resp = format_warmup.format_only_response(ex, rng)
            assert ex.score(resp) == 0.0 and rewards.extract_mcq_answer(resp) is not None
    mcq = tasks.load_task("tiny_mcq", "train")[:60]
    assert all(ex.score(format_warmup.format_only_response(ex, rng)) == 0.0 for ex in mcq)


def test_own_answers_keep_the_models_last_number(tiny_tokenizer):
    """The own-answer targets: the model's finished text as the reasoning, its last number as the
    answer, unfinished or number-free answers dropped (a scripted model stands in for generate)."""
    import torch

    tok = tiny_tokenizer
    eos = tok.eos_token_id
    replies = ["so 3 + 4 = 7", "the answer is -12.", "no idea", "it is 5 and"]

    class Scripted:
        def generate(self, input_ids, attention_mask, max_new_tokens, **kw):
            rows = []
            for i in range(input_ids.shape[0]):
                ids = tok.encode(replies[i], add_special_tokens=False) + ([eos] if i < 3 else [])
                rows.append(ids + [eos] * (max_new_tokens - len(ids)) if i < 3
                            else (ids * max_new_tokens)[:max_new_tokens])
            return torch.cat([input_ids, torch.tensor(rows)], dim=1)

    examples = tasks.load_task("gym_add1", "train")[:4]
    pairs = format_warmup.own_answer_responses(Scripted(), tok, examples, max_new_tokens=40)
    answers = [rewards.extract_mcq_answer(r) for _, r in pairs]
    assert answers == ["7", "-12"]  # "no idea" has no number; the fourth never finished
    assert "so 3 + 4 = 7" in pairs[0][1] and [ex.id for ex, _ in pairs] == [examples[0].id, examples[1].id]
