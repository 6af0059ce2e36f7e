r"""The math grader: the last ``\boxed{...}`` (balanced braces) against the gold with math-verify,
gold first; no box scores 0; ``\%`` is a unit. math-verify runs in killable worker processes
(``srpo_ref.rewards.math_worker``), so no answer can hang the scorer.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import select
import signal
import subprocess
import sys
import threading

MATH_TIMEOUT_S = 3.0
_MAX_ANSWER_CHARS = 1000  # a boxed answer longer than this is not an answer


def last_boxed(text: str) -> str | None:
    """Content of the last ``\boxed{...}`` (or ``\fbox{...}``) with balanced braces; None if
    there is none or it is never closed. A backslash escapes the character after it. One pass
    pairs every brace (scanning onward from each ``\boxed{`` is quadratic in a response of many
    unclosed ones, and the scorer must not stall on what a policy writes)."""
    closes, stack, i = {}, [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            closes[stack.pop()] = i
        i += 1
    best = None
    for m in _BOXED.finditer(text):
        end = closes.get(m.end() - 1)
        if end is not None:
            best = text[m.end() : end]
    return best


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _strip_percent(answer: str) -> str:
    return re.sub(r"\\?%", "", answer).strip()


class _MathWorker:
    """One ``srpo_ref.rewards.math_worker`` process; killed and replaced when a request times out."""

    def __init__(self, memory_bytes: int):
        self.memory_bytes = memory_bytes
        self.proc = self._spawn()
        self.ready = False

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "srpo_ref.rewards.math_worker", str(self.memory_bytes)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    def _readline(self, timeout: float) -> str | None:
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], timeout)[0]:
            return None
        return self.proc.stdout.readline().decode()

    def ask(self, gold: str, answer: str, timeout: float) -> bool:
        if not self.ready:  # start-up (imports) is not charged to the answer's time limit
            if self._readline(60.0) != "ready\n":
                self.restart()
                return False
            self.ready = True
        try:
            self.proc.stdin.write((json.dumps({"gold": gold, "answer": answer}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.restart()
            return False
        line = self._readline(timeout)
        if line is None or line == "":
            self.restart()
            return False
        return line.strip() == "1"

    def restart(self) -> None:
        self.close()
        self.proc, self.ready = self._spawn(), False

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()


class _MathPool:
    def __init__(self, size: int, memory_bytes: int = 2 << 30):
        self.size, self.memory_bytes = size, memory_bytes
        self.idle: queue.Queue = queue.Queue()
        self.created = 0
        self.lock = threading.Lock()

    def verify(self, gold: str, answer: str, timeout: float) -> bool:
        try:
            worker = self.idle.get_nowait()
        except queue.Empty:
            with self.lock:
                spawn = self.created < self.size
                self.created += spawn
            worker = _MathWorker(self.memory_bytes) if spawn else self.idle.get()
        try:
            return worker.ask(gold, answer, timeout)
        finally:
            self.idle.put(worker)

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait().close()


_POOL = _MathPool(int(os.environ.get("SRPO_MATH_WORKERS", min(4, os.cpu_count() or 1))))
atexit.register(_POOL.close)


def math_reward(response: str, gold: str, timeout_s: float = MATH_TIMEOUT_S) -> float:
    """math-verify on the last ``\boxed{}`` against the gold, gold first, in a worker process
    killed after ``timeout_s`` seconds (the answer then scores 0)."""
    answer = last_boxed(response)
    if answer is None or not answer.strip() or len(answer) > _MAX_ANSWER_CHARS:
        return 0.0
    gold = str(gold).strip()
    # A bare gold answer gets math delimiters (an escaped "\$", as in dollar amounts, is not one).
    if gold.startswith("$") and not gold.startswith("\\$"):
        gold = gold.strip("$")
    boxed_gold = last_boxed(gold)
    gold = boxed_gold if boxed_gold is not None else gold
    return float(_POOL.verify(f"${_strip_percent(gold)}$", f"$\\boxed{{{_strip_percent(answer)}}}$", timeout_s))
