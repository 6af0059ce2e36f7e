"""The report's task-choice and pre-check sections (evals.report), on hand-made files."""

import json

from evals import report

GATE = {"base_low": 0.15, "base_high": 0.7, "format": 0.9, "teacher_gain": 0.1}


def _candidates(tmp_path, passes: list[bool]):
    rows = [{"candidate": f"task{i}", "label": f"task{i}-own-128", "gate": {"passes": p}} for i, p in enumerate(passes)]
    (tmp_path / "candidates.json").write_text(json.dumps({"gate": GATE, "rows": rows}))
    md = tmp_path / "candidates.md"
    md.write_text("| candidate | gate |\n|---|---|\n" + "".join(f"| task{i} | {'passes' if p else 'fails'} |\n" for i,
                                                                p in enumerate(passes)))
    return md


def test_task_choice_names_the_first_passing_candidate_and_the_gate(tmp_path):
    md = _candidates(tmp_path, [False, True, True])
    text = report.task_choice_markdown([str(md)])
    assert "Trained on: task1." in text
    assert "base avg@k in [15%, 70%]" in text and "at least 90%" in text and "at least 10 points" in text
    assert "| task0 | fails |" in text and "| task2 | passes |" in text  # every candidate, not only the chosen one


def test_task_choice_says_when_nothing_passed_and_is_empty_when_not_configured(tmp_path):
    md = _candidates(tmp_path, [False, False])
    assert "Trained on: none (no candidate passed)." in report.task_choice_markdown([md])
    assert report.task_choice_markdown([]) == ""


def _precheck(path, chance):
    ci = lambda m: {"mean": m, "low": m - 0.1, "high": m + 0.1}  # noqa: E731
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "benchmark": path.stem, "questions": 32, "k": 4,
        "student": {"format_compliance": 0.9375, "truncated": 0.046875, "length_p50": 57, "length_p90": 91},
        "base": {"avg_at_k": ci(0.383), "chance": chance},
        "teacher": {"questions": 18, "teacher_accuracy": 0.833, "student_accuracy": 0.403,
                    "teacher_minus_student": ci(0.431)}}))
    return path


def test_precheck_rows_with_and_without_a_chance_level(tmp_path):
    files = [_precheck(tmp_path / "m" / "gym_add1.json", None), _precheck(tmp_path / "m" / "chemistry.json", 0.25)]
    lines = report.precheck_markdown(files).splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| m / gym_add1 | 32 x 4 | 38.3 [28.3, 48.3] | n/a | 93.8% | 4.7% | 57 / 91 | 83.3 vs "
                               "40.3 (18) |")
    assert "| 25 | 93.8% |" in lines[3]
    assert report.precheck_markdown([]).startswith("_No pre-checks")
