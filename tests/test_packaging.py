"""environment.yml describes the same environment as pyproject.toml."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def names(reqs):
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def test_environment_yml_matches_pyproject():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    expected = names(py["dependencies"]) | names(py["optional-dependencies"]["cpu-vllm"]) | names(py["optional-dependencies"]["dev"])
    listed = names(p for p in pip if not p.startswith("-e"))
    assert listed == expected, (listed ^ expected)
    # the same version bounds, too
    bounds = {r.replace(" ", "") for r in py["dependencies"]}
    assert bounds <= {p.replace(" ", "") for p in pip}
