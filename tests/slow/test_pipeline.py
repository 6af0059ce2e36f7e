"""The Snakemake pipeline: a reduced tiny profile end to end, dry runs of the larger profiles,
the linter, and reruns that touch only what depends on a deleted output."""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# jobs run `python` from PATH: put this interpreter's environment first
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO),
       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def smk(*args, timeout=1500):
    return subprocess.run([*SNAKEMAKE, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def planned_jobs(out: str) -> dict[str, int]:
    """Job counts from a dry run's 'Job stats' table."""
    stats = out.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats,
                                                             re.MULTILINE) if m.group(1) != "total"}


@pytest.fixture(scope="module")
def ci_run():
    res = smk("--cores", "2", "--configfile", "config/ci.yaml")
    assert res.returncode == 0, res.stderr[-4000:]
    return REPO / "results" / "ci"


def test_reduced_profile_end_to_end(ci_run):
    report = (ci_run / "report.md").read_text()
    assert "## Table 1" in report and "## Compute cost per step" in report and "## Provenance" in report
    assert "Paired wall-clock benchmark" in report and "training steps" in report  # the ci profile's budget unit
    assert "## Pre-checks" in report and "| tiny / tiny_mcq | 8 x 2 |" in report  # base vs chance, self-teacher
    verdicts = re.findall(r"^\| [^|]+ \| (reproduced|contradicted|inconclusive \(\d+ (?:seeds|runs)\)|n/a|not "
                          r"like-for-like \(|"
                          r"mechanism absent in this profile)", report, re.MULTILINE)
    assert len(verdicts) >= 10, report
    # every method runs one execution policy (optim.old_logprob=always): no cost verdict is refused for it
    assert not any(v.startswith("not like-for-like") for v in verdicts), report
    # every training job finished: both benchmarks (tiny_tool's lengths vary) in the one-pass layout
    done = sorted(p.relative_to(REPO / "work" / "ci" / "runs") for p in (REPO / "work" / "ci" / "runs").rglob("DONE"))
    assert len(done) == 2 * 3 * 2 + 1, done
    assert {p.parts[1] for p in done} == {"tiny_mcq", "tiny_tool"}
    t1 = pd.read_csv(ci_run / "tables" / "table1.csv")
    assert {"grpo", "sdpo", "srpo", "base"} <= set(t1["method"])
    assert t1[t1["method"] != "base"]["seeds"].max() == 2
    cost = pd.read_csv(ci_run / "tables" / "cost.csv")
    assert (cost["s_per_step"] > 0).all() and (cost["flops_per_step"] > 0).all()
    assert set(cost["method"]) >= {"grpo", "sdpo", "srpo", "srpo_no_dw"}
    assert (cost[cost["method"] == "grpo"]["tokens_teacher_forward"] == 0).all()
    assert pd.read_csv(ci_run / "tables" / "table2.csv")["variant"].tolist()
    for name in ("accuracy_vs_cost_tiny", "response_length", "seconds_per_step", "routing_and_entropy",
                 "cost_phases_tiny"):
        for ext in ("png", "pdf"):
            assert (ci_run / "figures" / f"{name}.{ext}").stat().st_size > 1000
    graders = (ci_run / "tables" / "graders.md").read_text()
    assert "| chemistry | upstream | 210 | 210 | 210 |" in graders and "| aime24 | strict | 30 | 30 | 30 |" in graders
    assert "| tooluse | upstream | 68 | 66 | 68 | tooluse-test-4072, tooluse-test-4079 | – |" in graders
    # every rule logs and benchmarks
    assert list((REPO / "work" / "ci" / "benchmarks" / "train").rglob("*.tsv"))
    assert list((REPO / "work" / "ci" / "logs" / "evals").rglob("*.log"))


def test_snakemake_report_captions_every_table_and_figure(ci_run, tmp_path):
    """`snakemake --report report.zip` on the finished run: every figure, table and pre-check is in
    the zip, in its category, with its caption."""
    res = smk("--report", str(tmp_path / "report.zip"), "--configfile", "config/ci.yaml", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    with zipfile.ZipFile(tmp_path / "report.zip") as z:
        names = z.namelist()
        html = z.read("report/report.html").decode()
    # the report's data: results (file -> name, caption, data path) and categories
    results, categories = (json.loads(re.search(rf"var {var} = (\{{.*\}});?$", html, re.MULTILINE).group(1))
                           for var in ("results", "categories"))
    expected = {
        **{f"results/ci/figures/{p.name}": None for p in (ci_run / "figures").glob("*.png")},
        **{f"results/ci/tables/{p.name}": None for p in (ci_run / "tables").iterdir()},
        "results/ci/report.md": "Paper claims",
        "results/ci/tables/table1.md": "Table 1", "results/ci/tables/table2.csv": "Table 2",
        "results/ci/tables/graders.md": "Graders", "results/ci/tables/cost.md": "Cost",
        "results/ci/figures/routing_and_entropy.png": "Routing and entropy",
        "results/ci/figures/accuracy_vs_cost_tiny.png": "Paper claims",
        "work/ci/prechecks/tiny/tiny_mcq.json": "Pre-checks",
    }
    assert len(expected) >= 5 + 11 + 2, expected  # five figures, eleven tables, report.md, a pre-check
    assert set(expected) <= set(results), sorted(set(expected) - set(results))
    placed = {f: cat for cat, subs in categories.items() for files in subs.values() for f in files}
    for f, category in expected.items():
        rec = results[f]
        assert len(re.sub("<[^>]+>", "", rec["caption"]).split()) >= 8, (f, rec["caption"])  # a caption, not a stub
        assert f"report/{rec['data_uri']}" in names, (f, rec["data_uri"])
        assert placed[f] == (category or placed[f]), (f, placed[f])
    assert set(categories) == {"Paper claims", "Table 1", "Table 2", "Cost", "Routing and entropy", "Graders",
                               "Pre-checks"}
    assert "routed to self-distillation" in " ".join(
        results["results/ci/figures/routing_and_entropy.png"]["caption"].split())
    assert "tiny_mcq" in results["work/ci/prechecks/tiny/tiny_mcq.json"]["caption"]


def test_deleting_one_evaluation_reruns_only_its_dependents(ci_run):
    target = REPO / "work" / "ci" / "evals" / "tiny" / "base" / "tiny_mcq" / "results.json"
    target.unlink()
    dry = smk("-n", "--cores", "2", "--configfile", "config/ci.yaml")
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = planned_jobs(dry.stdout + dry.stderr)
    assert jobs.get("eval_base") == 1, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert "train" not in jobs and "eval_run" not in jobs and "tiny_base_model" not in jobs, jobs
    assert jobs.get("report") == 1
    res = smk("--cores", "2", "--configfile", "config/ci.yaml")
    assert res.returncode == 0 and target.exists()


@pytest.mark.parametrize("profile, expected", [
    ("small", {"train": 9, "prechecks": 1, "smollm2_from_gguf": 1, "grader_check": 4,
               "step_cost": None}),  # its paired benchmark is off
    ("paper", {"train": 100, "step_cost": 1, "prechecks": None}),
])
def test_dry_run_lists_full_dag(profile, expected):
    # --forceall: the whole DAG, whatever outputs this checkout already has
    res = smk("-n", "--forceall", "--cores", "2", "--configfile", f"config/{profile}.yaml", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = planned_jobs(res.stdout + res.stderr)
    for rule, n in expected.items():
        assert jobs.get(rule) == n, jobs
    assert jobs.get("report") == 1 and jobs.get("eval_run", 0) > 0


def test_lint_is_clean():
    res = smk("--lint", timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "Lints for" not in res.stdout + res.stderr, res.stdout[-3000:]


def test_bad_config_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "config" / "ci.yaml").read_text().replace("methods: [grpo, sdpo, srpo]",
                                                                     "methods: [grpo, ppo]"))
    res = smk("-n", "--cores", "1", "--configfile", str(bad), timeout=300)
    assert res.returncode != 0 and "ppo" in res.stdout + res.stderr
