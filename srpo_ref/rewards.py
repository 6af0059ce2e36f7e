"""Every reward function, shared by training (srpo_ref) and evaluation (evals).

Each scorer takes the model's response text and the gold answer and returns a float in [0, 1].
A malformed response scores 0; nothing here raises on model output.

- ``mcq_reward``: SciKnowEval L3 (and the tiny MCQ task). The text between the *last*
  ``<answer>`` and the following ``</answer>``, stripped, must equal the gold letter.
- ``tooluse_reward``: ToolAlpaca. The names after every ``Action:`` must equal the gold names as
  a multiset, and the JSON objects after every ``Action Input:``, merged in order, must equal the
  merged gold inputs.
- ``math_reward``: math-verify, gold first, with a timeout that also works off the main thread.
- ``code_reward``: runs the program and its unit tests in a sandboxed subprocess (see
  ``run_sandboxed``).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from dataclasses import dataclass

# ----------------------------------------------------------------------------- MCQ

_ANSWER_OPEN = "<answer>"
_ANSWER_CLOSE = "</answer>"


def extract_mcq_answer(response: str) -> str | None:
    """Text between the last ``<answer>`` and the next ``</answer>``, stripped; None if absent."""
    start = response.rfind(_ANSWER_OPEN)
    if start < 0:
        return None
    end = response.find(_ANSWER_CLOSE, start)
    if end < 0:
        return None
    return response[start + len(_ANSWER_OPEN) : end].strip()


def mcq_reward(response: str, gold: str) -> float:
    return float(extract_mcq_answer(response) == str(gold).strip())


# ----------------------------------------------------------------------------- Tool use

_ACTION = re.compile(r"^\s*Action\s*:\s*(.+?)\s*$", re.MULTILINE)
_ACTION_INPUT = re.compile(r"Action\s*Input\s*:\s*", re.MULTILINE)


def _first_json_object(text: str):
    """The first JSON object at the start of ``text`` (after whitespace), or None."""
    text = text.lstrip()
    if not text.startswith("{"):
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def extract_tool_calls(response: str) -> tuple[list[str], list[dict | None]]:
    """Action names and parsed Action Input objects (None where not a JSON object)."""
    names = [m.group(1).strip() for m in _ACTION.finditer(response)]
    inputs = [_first_json_object(response[m.end() :]) for m in _ACTION_INPUT.finditer(response)]
    return names, inputs


def _merge(dicts) -> dict:
    merged: dict = {}
    for d in dicts:
        merged.update(d)
    return merged


def parse_tool_gold(gold: str | list) -> tuple[list[str], dict]:
    """Gold answer of a Tool Use row: a JSON list of ``{"Action", "Action_Input"}``."""
    calls = json.loads(gold) if isinstance(gold, str) else gold
    names = [c["Action"] for c in calls]
    inputs = [json.loads(c["Action_Input"]) if isinstance(c["Action_Input"], str) else c["Action_Input"] for c in calls]
    return names, _merge(i for i in inputs if isinstance(i, dict))


def tooluse_reward(response: str, gold: str | list) -> float:
    gold_names, gold_input = parse_tool_gold(gold)
    names, inputs = extract_tool_calls(response)
    if not names or any(i is None for i in inputs):
        return 0.0
    if collections.Counter(names) != collections.Counter(gold_names):
        return 0.0
    return float(_merge(inputs) == gold_input)


def format_tool_calls(gold: str | list, thought: str = "I should call the right tool.") -> str:
    """A response in the required format that performs the gold calls (used by tests and the
    tiny task's demonstrations)."""
    calls = json.loads(gold) if isinstance(gold, str) else gold
    parts = []
    for c in calls:
        args = c["Action_Input"] if isinstance(c["Action_Input"], str) else json.dumps(c["Action_Input"])
        parts.append(f"Thought: {thought}\nAction: {c['Action']}\nAction Input: {args}")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- Math


def _with_timeout(fn, seconds: float, default):
    """Run ``fn()``; give ``default`` if it takes longer than ``seconds``. Works in any thread
    (a late worker thread is abandoned, not killed: math-verify's own signal-based timeouts
    only work on the main thread)."""
    result = [default]

    def target():
        try:
            result[0] = fn()
        except Exception:
            result[0] = default

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    return result[0]


def math_reward(response: str, gold: str, timeout_s: float = 10.0) -> float:
    """math-verify, gold first: ``verify(parse(gold), parse(response))``."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # we time out ourselves (above)
    # Wrap a bare gold answer in math delimiters (an escaped "\$", as in dollar amounts, is not one).
    stripped = gold.strip()
    delimited = (stripped.startswith("$") and not stripped.startswith("\\$")) or "\\boxed" in stripped
    gold_text = gold if delimited else f"${gold}$"

    def check():
        # Always off the main thread here, where math-verify's signal timeouts cannot work.
        g = parse(gold_text, parsing_timeout=None)
        p = parse(response, parsing_timeout=None)
        return bool(g) and bool(p) and verify(g, p, timeout_seconds=None)

    return float(_with_timeout(check, timeout_s, False))


# ----------------------------------------------------------------------------- Code

_CODE_BLOCK = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(response: str) -> str:
    """The last fenced code block (python or bare), else the whole response."""
    blocks = _CODE_BLOCK.findall(response)
    return blocks[-1] if blocks else response


# Runs before the candidate program, inside the sandbox process. It cannot stop a determined
# attacker (use a container for that) but it turns the usual escapes of model-written code into
# exceptions: new processes, sockets, writes outside the working directory, and huge memory.
_GUARD = textwrap.dedent(
    r"""
    import builtins, os, resource, socket, sys
    _mem = {mem}
    resource.setrlimit(resource.RLIMIT_AS, (_mem, _mem))
    resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu}))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 24, 1 << 24))
    _root = os.path.realpath(os.getcwd())
    def _deny(*a, **k):
        raise PermissionError("blocked by the srpo sandbox")
    for _name in ("fork", "forkpty", "system", "popen", "execv", "execve", "execvp", "execvpe", "execl",
                  "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnvp", "spawnl", "kill",
                  "killpg", "posix_spawn", "posix_spawnp", "setuid", "chroot", "putenv"):
        if hasattr(os, _name):
            setattr(os, _name, _deny)
    import subprocess
    subprocess.Popen = _deny
    subprocess.run = subprocess.call = subprocess.check_call = subprocess.check_output = _deny
    class _NoSocket(socket.socket):  # a class, so modules that subclass socket (ssl) still import
        def __init__(self, *a, **k):
            raise PermissionError("sockets are blocked by the srpo sandbox")
    socket.socket = _NoSocket
    socket.create_connection = _deny
    _open = builtins.open
    def _inside(path):
        p = os.path.realpath(os.fspath(path)) if not isinstance(path, int) else _root
        return p == _root or p.startswith(_root + os.sep)
    def _guarded_open(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+") and not _inside(file):
            raise PermissionError("writes outside the sandbox directory are blocked")
        return _open(file, mode, *a, **k)
    builtins.open = _guarded_open
    import io; io.open = _guarded_open
    for _name in ("remove", "unlink", "rmdir", "removedirs", "rename", "replace", "mkdir", "makedirs",
                  "symlink", "link", "chmod", "chown", "truncate"):
        _orig = getattr(os, _name, None)
        if _orig is None:
            continue
        def _wrap(*a, _orig=_orig, **k):
            if not all(_inside(x) for x in a if isinstance(x, (str, bytes, os.PathLike))):
                raise PermissionError("file changes outside the sandbox directory are blocked")
            return _orig(*a, **k)
        setattr(os, _name, _wrap)
    import shutil
    shutil.rmtree = _deny
    del _name, _orig
    """
)


@dataclass
class SandboxResult:
    passed: bool
    status: str  # "passed" | "failed" | "timeout" | "error"
    stderr_tail: str = ""


def run_sandboxed(program: str, timeout_s: float = 10.0, memory_mb: int = 1024) -> SandboxResult:
    """Run ``program`` in a fresh Python (``-I``: no user site, no PYTHON* variables) inside a
    throwaway directory, with the guard above, CPU/memory/file-size limits, no network
    (``unshare -n`` when available) and its own process group, which is killed whole on timeout.
    ``passed`` means exit status 0."""
    guard = _GUARD.format(mem=memory_mb * 1024 * 1024, cpu=max(1, int(timeout_s) + 1))
    with tempfile.TemporaryDirectory(prefix="srpo_sandbox_") as workdir:
        path = os.path.join(workdir, "program.py")
        with open(path, "w") as f:
            f.write(guard + "\n" + program)
        cmd = [sys.executable, "-I", path]
        if _unshare_works():
            cmd = ["unshare", "--net", "--map-root-user", *cmd]
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "PYTHONHASHSEED": "0"}
        proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            _, err = proc.communicate(timeout=timeout_s)
            status = "passed" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            err, status = b"", "timeout"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
    return SandboxResult(status == "passed", status, err.decode(errors="replace")[-2000:])


_UNSHARE: bool | None = None


def _unshare_works() -> bool:
    """Whether ``unshare --net`` can make a network namespace here (cached)."""
    global _UNSHARE
    if _UNSHARE is None:
        try:
            _UNSHARE = subprocess.run(
                ["unshare", "--net", "--map-root-user", "true"], capture_output=True, timeout=10
            ).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _UNSHARE = False
    return _UNSHARE


def code_reward(response: str, tests: str, timeout_s: float = 10.0, memory_mb: int = 1024) -> float:
    """1.0 when the extracted program followed by ``tests`` exits cleanly in the sandbox."""
    program = extract_code(response) + "\n\n" + tests + "\n"
    return float(run_sandboxed(program, timeout_s, memory_mb).passed)


# ----------------------------------------------------------------------------- registry

REWARDS = {"mcq": mcq_reward, "tooluse": tooluse_reward, "math": math_reward, "code": code_reward}


def score(kind: str, response: str, gold) -> float:
    """Reward of ``response`` for a row of ``kind``; 0 on any failure of the scorer itself."""
    try:
        return REWARDS[kind](response, gold)
    except KeyError:
        raise ValueError(f"unknown reward kind {kind!r}; known: {sorted(REWARDS)}") from None
    except Exception:
        return 0.0
