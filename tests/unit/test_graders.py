"""Paper-parity graders: ``upstream`` reproduces the SDPO authors' scoring exactly, ``strict`` is
the SPEC's reading. The table (tests/unit/grader_cases.json) holds, for each response, the value that
upstream's own ``compute_score`` (lasgroup/SDPO@0e6d510, verl/utils/reward_score/feedback/
{mcq,tooluse}.py) returned when the table was built, and the strict value."""

import json
from pathlib import Path

import pytest

from srpo_ref import rewards, tasks
from tests.conftest import DATA_DIR

CASES = json.loads((Path(__file__).with_name("grader_cases.json")).read_text())
SCORERS = {"mcq": {"upstream": rewards.mcq_reward_upstream, "strict": rewards.mcq_reward},
           "tooluse": {"upstream": rewards.tooluse_reward_upstream, "strict": rewards.tooluse_reward}}


@pytest.mark.parametrize("kind", ["mcq", "tooluse"])
@pytest.mark.parametrize("grader", ["upstream", "strict"])
def test_grader_table(kind, grader):
    cases = CASES[kind]
    assert len(cases) >= 40
    wrong = [(c["response"], c[grader]) for c in cases if SCORERS[kind][grader](c["response"], c["gold"]) != c[grader]]
    assert not wrong, f"{kind}/{grader} disagrees on {len(wrong)} responses: {wrong[:3]}"
    # the modes really differ on this table (else it tests nothing about the choice)
    assert any(c["upstream"] != c["strict"] for c in cases)


def test_default_grader_is_upstream_everywhere():
    assert rewards.DEFAULT_GRADER == "upstream"
    ex = tasks.load_task("tiny_mcq", "test")[0]
    assert ex.score(ex.gold) == 1.0  # a bare letter counts under upstream
    assert ex.score(ex.gold, "strict") == 0.0


def test_tooluse_system_prompt_options(tmp_path):
    default = tasks.load_task("tooluse", "test", DATA_DIR)[0]
    assert [m["role"] for m in default.messages] == ["user"]  # upstream sends no system message
    para = tasks.load_task("tooluse", "test", DATA_DIR, tooluse_system="paraphrase")[0]
    assert para.messages[0]["role"] == "system"
    listing = tmp_path / "listing3.txt"
    listing.write_text("You are a helpful assistant with tools.\n")
    own = tasks.load_task("tooluse", "test", DATA_DIR, tooluse_system=str(listing))[0]
    assert own.messages[0]["content"] == "You are a helpful assistant with tools."
    with pytest.raises(ValueError, match="tooluse_system"):
        tasks.load_task("tooluse", "test", DATA_DIR, tooluse_system="listing9")


def test_upstream_ceiling_on_tooluse_is_66_of_68():
    check = tasks.grader_self_check("tooluse", DATA_DIR)
    assert check["ok"]
    assert check["by_grader"]["upstream"]["gold_scored_1"] == 66
    assert check["by_grader"]["strict"]["gold_scored_1"] == 68
