"""Reward functions (shared by training and evaluation), including the code sandbox."""

import json
import os
import tempfile
import time

import pytest

from srpo_ref.rewards import code_reward, math_reward, mcq_reward, run_sandboxed, score, tooluse_reward

GOLD_TOOLS = json.dumps([
    {"Action": "getA", "Action_Input": json.dumps({"x": 1})},
    {"Action": "getB", "Action_Input": json.dumps({"y": "two"})},
])


def test_mcq_uses_last_answer_block_and_strips():
    assert mcq_reward("<answer>A</answer> then <answer>\n B \n</answer>", "B") == 1.0
    assert mcq_reward("<answer>A</answer> then <answer>B</answer>", "A") == 0.0
    assert mcq_reward("B", "B") == 0.0  # no tags
    assert mcq_reward("<answer>B", "B") == 0.0  # unclosed
    assert mcq_reward("<answer>B is right</answer>", "B") == 0.0


def test_tooluse_multiset_and_merged_inputs():
    ok = 'Thought: t\nAction: getB\nAction Input: {"y": "two"}\nThought: u\nAction: getA\nAction Input: {"x": 1}'
    assert tooluse_reward(ok, GOLD_TOOLS) == 1.0
    wrong_arg = ok.replace('"two"', '"three"')
    assert tooluse_reward(wrong_arg, GOLD_TOOLS) == 0.0
    missing = 'Action: getA\nAction Input: {"x": 1}'
    assert tooluse_reward(missing, GOLD_TOOLS) == 0.0
    extra = ok + '\nAction: getA\nAction Input: {"x": 1}'
    assert tooluse_reward(extra, GOLD_TOOLS) == 0.0
    assert tooluse_reward("Action: getA\nAction Input: not json", GOLD_TOOLS) == 0.0
    assert tooluse_reward("", GOLD_TOOLS) == 0.0


def test_math_verify_gold_first_and_equivalent_forms():
    assert math_reward("so the answer is \\boxed{\\frac{1}{2}}", "0.5") == 1.0
    assert math_reward("\\boxed{(3, \\frac{\\pi}{2})}", "\\left( 3, \\frac{\\pi}{2} \\right)") == 1.0
    assert math_reward("\\boxed{3}", "4") == 0.0
    assert math_reward("no answer at all", "4") == 0.0


def test_math_reward_off_main_thread():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(lambda r: math_reward(r, "7"), ["\\boxed{7}", "\\boxed{8}"])) == [1.0, 0.0]


def test_code_reward_pass_and_fail():
    assert code_reward("```python\ndef f(x):\n    return x + 1\n```", "assert f(1) == 2") == 1.0
    assert code_reward("```python\ndef f(x):\n    return x\n```", "assert f(1) == 2") == 0.0
    assert code_reward("this is not code", "assert f(1) == 2") == 0.0




@pytest.mark.parametrize(
    "program",
    [
        "while True:\n    pass",  # loops forever
        "x = bytearray(8 * 1024 ** 3)",  # exhausts memory
        "import os\nos.system('sleep 100 &')",  # spawns a process
        "import subprocess\nsubprocess.Popen(['sleep', '100'])",
        "import os\nif os.fork() == 0:\n    import time; time.sleep(100)",
        "import socket\nsocket.create_connection(('127.0.0.1', 9))",  # opens a socket
        "open('/tmp/srpo_escape_test', 'w').write('x')",  # writes outside its directory
        "import os\nos.remove('/tmp/srpo_do_not_delete')",
    ],
)
def test_sandbox_escapes_score_zero_and_leave_nothing(program, tmp_path, monkeypatch):
    sentinel = "/tmp/srpo_do_not_delete"
    open(sentinel, "w").write("keep")
    sandbox_root = tmp_path / "sandboxes"  # this test's sandboxes only (others may run in parallel)
    sandbox_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(sandbox_root))
    t0 = time.time()
    assert code_reward(f"```python\n{program}\n```", "", timeout_s=3) == 0.0
    assert time.time() - t0 < 10
    assert not os.path.exists("/tmp/srpo_escape_test")
    assert os.path.exists(sentinel)
    assert not list(sandbox_root.iterdir())  # the throwaway directory is gone
    assert os.system("pgrep -f 'slee[p] 100' > /dev/null") != 0


def test_sandbox_allows_harmless_imports_of_network_modules():
    # ssl subclasses socket.socket: blocking sockets must not break importing it
    assert code_reward("```python\nimport urllib.request, ssl, http.client\ndef f():\n    return 1\n```", "assert f() == 1") == 1.0
    assert code_reward("```python\nimport urllib.request\nurllib.request.urlopen('http://127.0.0.1:9', timeout=2)\n```", "") == 0.0


def test_timeout_kills_whole_process_group():
    res = run_sandboxed("import time\ntime.sleep(60)", timeout_s=1)
    assert res.status == "timeout" and not res.passed


def test_score_dispatch_never_raises_on_bad_gold():
    assert score("tooluse", "Action: a", "not json") == 0.0
    with pytest.raises(ValueError, match="unknown reward kind"):
        score("essay", "x", "y")
