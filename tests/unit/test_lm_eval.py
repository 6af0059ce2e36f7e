"""The lm-evaluation-harness task YAMLs, run offline on the tiny model with the hf backend."""

from pathlib import Path

import pytest

TASK_DIR = Path(__file__).resolve().parents[2] / "evals" / "lm_eval_tasks"


def test_every_benchmark_has_a_task_yaml():
    from srpo_ref.tasks import TASKS

    assert {p.stem for p in TASK_DIR.glob("srpo_*.yaml")} == {f"srpo_{n}" for n in TASKS}


@pytest.mark.parametrize("task", ["srpo_tiny_mcq", "srpo_chemistry"])
def test_lm_eval_runs_task_offline(tiny_base, task):
    import lm_eval
    from lm_eval.tasks import TaskManager

    out = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={tiny_base},dtype=float32", tasks=[task], limit=4, batch_size=4,
                                  device="cuda" if __import__("torch").cuda.is_available() else "cpu",
        task_manager=TaskManager(include_path=str(TASK_DIR)), apply_chat_template=True, gen_kwargs="max_gen_toks=32",
        log_samples=True,
    )
    res = out["results"][task]
    assert 0.0 <= res["acc,all_samples"] <= 1.0
    assert out["n-samples"][task]["effective"] == 4
    sample = out["samples"][task][0]
    assert len(sample["filtered_resps"][0]) == 16  # avg@16: every repeat is scored
    prompt = sample["arguments"][0][0]
    system = sample["doc"]["system"]
    assert system and prompt.index(system) < prompt.index(sample["doc"]["user"][:20])  # a system turn before the user's
    assert "system" in prompt.split(system)[0][-30:]  # rendered as the chat template's system role
