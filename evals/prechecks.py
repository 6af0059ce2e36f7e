"""Pre-checks before any method comparison: ``python -m evals.prechecks --model M --benchmark B``.

A comparison of GRPO, SDPO and SRPO means nothing when the base model is at chance, never
produces the answer format, or when its self-teacher (the same model shown a correct
demonstration) is no better than the student: SDPO and SRPO learn from the teacher's
re-scoring, so that gap is the signal they need. On ``--n`` training questions this measures

    student     2k samples per question at the rollout settings (temperature, response budget):
                accuracy, format compliance (share of responses with an ``<answer>`` tag, the
                MCQ format), response lengths and truncation at the budget;
    base        avg@k at the evaluation settings, its 95% interval over questions against chance;
    teacher     for every question where one of the first k samples is correct, the teacher
                prompt (``srpo_ref.teacher``, that sample as the demonstration) and k new
                samples; its accuracy against the student's on the same questions, measured on
                the student's *other* k samples (not the ones the demonstration was chosen from),
                paired by question with a 95% interval.

Writes one JSON file with the figures, the settings and provenance.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from evals.report.stats import interval
from evals.run import EvalSettings, context_length, load_tokenizer, make_engine, provenance
from srpo_ref import rewards, tasks
from srpo_ref.rollout import SamplingConfig
from srpo_ref.teacher import chat_prompt_ids, teacher_input_ids


def has_answer_tag(text: str) -> bool:
    """Format compliance: a closed ``<answer>`` tag, as the MCQ reward extracts it."""
    return rewards.extract_mcq_answer(text) is not None

CHANCE = {"mcq": 0.25}  # none for whole-number answers


def _pct(iv) -> dict:
    mu, lo, hi, n = iv
    return {"mean": mu, "low": lo, "high": hi, "n": n}


def run(model: str, benchmark: str, n: int, k: int, rollout: SamplingConfig, evaluation: SamplingConfig,
        backend: str, data_dir: str | None, grader: str, seed: int = 0) -> dict:
    t0 = time.time()
    examples = tasks.load_task(benchmark, "train", data_dir)
    examples = examples[:: max(1, len(examples) // n)][:n]  # spread over the split, deterministic
    tok = load_tokenizer(model)
    prompts = [chat_prompt_ids(tok, ex.messages) for ex in examples]
    # teacher prompts hold a demonstration (one response) and the template's words too
    longest = max(len(p) for p in prompts) + rollout.max_new_tokens + 64
    settings = EvalSettings(backend=backend, seed=seed,
                            max_new_tokens=max(rollout.max_new_tokens, evaluation.max_new_tokens))
    engine = make_engine(model, tok, settings, context_length(model, longest, settings))

    student = engine.generate(prompts, 2 * k, rollout)
    scores = [[ex.score(s.text, grader) for s in g] for ex, g in zip(examples, student)]
    flat = [s for g in student for s in g]
    lengths = sorted(len(s.response_ids) for s in flat)
    student_stats = {
        "accuracy": sum(map(sum, scores)) / len(flat),
        "format_compliance": sum(has_answer_tag(s.text) for s in flat) / len(flat),
        "truncated": sum(s.finish_reason == "length" for s in flat) / len(flat),
        "length_mean": statistics.fmean(lengths),
        "length_p50": lengths[len(lengths) // 2],
        "length_p90": lengths[int(0.9 * (len(lengths) - 1))],
        "length_max": lengths[-1],
    }

    base_groups = engine.generate(prompts, k, evaluation)
    per_q = [statistics.fmean(ex.score(s.text, grader) for s in g) for ex, g in zip(examples, base_groups)]
    chance = CHANCE.get(examples[0].kind)
    base = {"avg_at_k": _pct(interval(per_q)), "chance": chance,
            "above_chance": None if chance is None else interval(per_q)[1] > chance}

    # Teacher: questions with a correct sample among the first k; the demonstration is that sample.
    rows, t_prompts = [], []
    for i, (ex, g, sc) in enumerate(zip(examples, student, scores)):
        j = next((j for j in range(k) if sc[j] > 0), None)
        if j is None:
            continue
        ids, plen = teacher_input_ids(tok, ex.messages, g[j].text, [])
        rows.append(i), t_prompts.append(ids[:plen])
    teacher = {"questions": len(rows)}
    if rows:
        t_groups = engine.generate(t_prompts, k, rollout)
        t_acc = [statistics.fmean(examples[i].score(s.text, grader) for s in g) for i, g in zip(rows, t_groups)]
        s_acc = [statistics.fmean(scores[i][k:]) for i in rows]
        teacher.update({"teacher_accuracy": statistics.fmean(t_acc), "student_accuracy": statistics.fmean(s_acc),
                        "teacher_minus_student": _pct(interval([t - s for t, s in zip(t_acc, s_acc)])),
                        "teacher_format_compliance": sum(has_answer_tag(s.text) for g in t_groups for s in g)
                        / (len(rows) * k)})
        teacher["teacher_better"] = teacher["teacher_minus_student"]["low"] > 0
    return {
        "benchmark": benchmark, "model": model, "questions": len(examples), "k": k, "grader": grader,
        "rollout": vars(rollout), "evaluation": vars(evaluation), "backend": backend,
        "student": student_stats, "base": base, "teacher": teacher,
        "provenance": provenance(model), "wall_seconds": round(time.time() - t0, 1),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--n", type=int, default=64, help="training questions")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--max-response-tokens", type=int, default=512, help="the training response budget")
    p.add_argument("--rollout-temperature", type=float, default=1.0)
    p.add_argument("--eval-temperature", type=float, default=0.6)
    p.add_argument("--eval-top-p", type=float, default=0.95)
    p.add_argument("--backend", default="vllm", choices=["vllm", "hf"])
    p.add_argument("--grader", default="upstream")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    rollout = SamplingConfig(a.rollout_temperature, 1.0, a.max_response_tokens, a.seed)
    evaluation = SamplingConfig(a.eval_temperature, a.eval_top_p, a.max_response_tokens, a.seed + 1)
    res = run(a.model, a.benchmark, a.n, a.k, rollout, evaluation, a.backend, a.data_dir, a.grader, a.seed)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps({k: res[k] for k in ("student", "base", "teacher", "wall_seconds")}, indent=2))


if __name__ == "__main__":
    main()
