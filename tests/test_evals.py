"""Evaluation: graders on every real test row, metrics, CLI errors, the evalplus path."""

import gzip
import itertools
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from evals import metrics
from srpo_ref import tasks
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.skipif(not DATA_DIR.exists(), reason=f"benchmark mirror not found at {DATA_DIR}")


@pytest.mark.parametrize("name", [*tasks.PAPER_BENCHMARKS, *tasks.MATHCODE_BENCHMARKS])
def test_every_test_row_grades_gold_one_and_wrong_zero(name):
    examples = tasks.load_task(name, "test", DATA_DIR)

    def check(ex):
        good, wrong = tasks.reference_responses(ex)
        return ex.id, ex.score(good), ex.score(wrong)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(check, examples))
    bad_gold = [i for i, g, _ in results if g != 1.0]
    bad_wrong = [i for i, _, w in results if w != 0.0]
    assert not bad_gold, f"{len(bad_gold)} gold answers did not score 1: {bad_gold[:5]}"
    assert not bad_wrong, f"{len(bad_wrong)} wrong answers did not score 0: {bad_wrong[:5]}"


def test_row_counts_and_missing_data_message(tmp_path):
    assert len(tasks.load_task("chemistry", "train", DATA_DIR)) == 1890
    with pytest.raises(tasks.DataNotFound, match=r"looked in .*sciknoweval/physics/test.json"):
        tasks.load_task("physics", "test", tmp_path)
    (tmp_path / "sciknoweval" / "physics").mkdir(parents=True)
    (tmp_path / "sciknoweval" / "physics" / "test.json").write_text('{"idx": 1}\n')
    with pytest.raises(ValueError, match="expected 80 rows, found 1"):
        tasks.load_task("physics", "test", tmp_path)


def test_pass_at_k_matches_brute_force():
    for n, c, k in [(5, 2, 1), (5, 2, 3), (6, 0, 2), (6, 6, 4), (7, 3, 7), (8, 1, 5)]:
        samples = [1] * c + [0] * (n - c)
        subsets = list(itertools.combinations(range(n), k))
        brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
        assert metrics.pass_at_k_single(n, c, k) == pytest.approx(brute)


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

    assert main(["--model", str(tmp_path / "nope"), "--suite", "tiny", "--out", str(tmp_path / "o"), "--backend", "hf"]) == 2
    assert main(["--model", str(tiny_base), "--benchmarks", "gsm9k", "--out", str(tmp_path / "o"), "--backend", "hf"]) == 2
    assert main(["--model", str(tiny_base), "--benchmarks", "physics", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--backend", "hf"]) == 2


def test_hf_eval_writes_samples_and_provenance(tiny_base, tmp_path):
    from evals.cli import main

    assert main(["--model", str(tiny_base), "--suite", "tiny", "--k", "2", "--limit", "6", "--backend", "hf",
                 "--max-new-tokens", "32", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "tiny_mcq" / "results.json").read_text())
    assert res["metrics"]["n_questions"] == 6 and res["metrics"]["k"] == 2
    assert res["provenance"]["weight_sha256"] and res["config"]["backend"] == "hf"
    assert len((tmp_path / "tiny_tool" / "samples.jsonl").read_text().splitlines()) == 12
    assert "average_avg_at_k" in json.loads((tmp_path / "summary.json").read_text())


def test_evalplus_plus_tests_through_override_path(tmp_path):
    """HumanEval+ through evalplus, with an override file built from the local HumanEval and
    hand-written plus inputs for HumanEval/0 (the real HumanEval+ release is not reachable here)."""
    rows = [json.loads(l) for l in gzip.open(DATA_DIR / "code" / "HumanEval.jsonl.gz", "rt")]
    plus_inputs = {"HumanEval/0": [[[1.0, 2.0, 3.0], 0.5], [[1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3], [[0.0, 0.05], 0.1]]}
    path = tmp_path / "HumanEvalPlus.jsonl"
    with path.open("w") as f:
        for r in rows:
            f.write(json.dumps({**r, "contract": "", "base_input": [], "plus_input": plus_inputs.get(r["task_id"], []), "atol": 0}) + "\n")
    script = (
        "import json, sys\n"
        "from evals.run import evalplus_tests\n"
        "from srpo_ref.rewards import code_reward\n"
        "tests = evalplus_tests('humaneval')\n"
        "good = open(sys.argv[1]).read()\n"
        "wrong = good.replace('if distance < threshold', 'if distance <= threshold * 0')\n"
        "print(json.dumps([len(tests), code_reward(good, tests['HumanEval/0']), code_reward(wrong, tests['HumanEval/0'])]))\n"
    )
    sol = tmp_path / "sol.py"
    sol.write_text(rows[0]["prompt"] + rows[0]["canonical_solution"])
    env = {**os.environ, "HUMANEVAL_OVERRIDE_PATH": str(path)}
    out = subprocess.run([sys.executable, "-c", script, str(sol)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    n, good, wrong = json.loads(out.stdout.strip().splitlines()[-1])
    assert n == 164 and good == 1.0 and wrong == 0.0
