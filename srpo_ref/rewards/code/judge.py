"""The code judge: the benchmark's own tests run here, the candidate's code never does.

``python -m srpo_ref.rewards.code`` reads one pickled ``{"job": ..., "limits": ...}`` from the evaluator
(``srpo_ref.rewards.code.sandbox.run_job``) on stdin and writes one JSON verdict line on stdout. It starts the
candidate process in the sandbox (``jail/harness.py``, mode ``serve``) and then:

- ``judge="proxy"`` (HumanEval, MBPP): executes the trusted test code (``check``, ``test_list``)
  with its helpers from the prompt or the test set-up, and with every name the tests call on the
  candidate bound to a proxy. A proxy call sends the arguments as plain data (``srpo_ref.rewards.code.jail.wire``),
  waits for the reply within the time left, and returns the decoded plain value (changes the call
  made to list, dict, set or bytearray arguments are copied back into them). Every comparison
  happens here, on exact builtin values.
- ``judge="evalplus"`` (HumanEval+, MBPP+): calls the entry point on evalplus's base and plus
  inputs, each within evalplus's per-input time limit, and compares with the expected outputs by
  evalplus's rules (``evalplus_match``).
- ``judge="record"``: the expected outputs of a trusted canonical solution, for the cache.
- ``judge="in_process"``: the fallback for tests a proxy cannot serve (they pass a function or an
  object of the candidate's own class, say): the old positive-signal harness, tests and
  candidate in the sandboxed process. Results mark these rows.

Anything that goes wrong on the candidate's side (a reply that is late, malformed, not plain
data, a dead process) ends the job as failed, whatever the test code does with the error.
The judge is a child subreaper: the processes bubblewrap leaves are reparented here and reaped.
"""

from __future__ import annotations

import ast
import builtins
import copy
import json
import os
import pickle
import select
import signal
import sys
import time
import warnings

from srpo_ref.rewards.code import sandbox
from srpo_ref.rewards.code.jail import wire


class JudgeAbort(BaseException):
    """The candidate broke the protocol or ran out of time: the job fails. A BaseException, so
    that ``except Exception`` in the tests cannot swallow it (and the job fails even if one did)."""


class Unservable(BaseException):
    """The tests pass something a proxy cannot send (a function, an object). ``plan`` sends such
    tests to the in-process fallback; one it missed fails the job (status ``error``), never
    falls back at run time (a program could otherwise choose its judge)."""


class CandidateRaised(Exception):
    """The candidate raised an exception that is not re-raised by its own name."""


# The candidate's exceptions re-raised by name in the tests (others become CandidateRaised): no
# control-flow exceptions (StopIteration would end a ``map`` early) and no AssertionError.
_RERAISED = {name: getattr(builtins, name) for name in (
    "ValueError", "TypeError", "IndexError", "KeyError", "LookupError", "ZeroDivisionError", "ArithmeticError",
    "OverflowError", "RecursionError", "RuntimeError", "NotImplementedError", "AttributeError", "NameError",
    "UnboundLocalError", "UnicodeError", "UnicodeDecodeError", "UnicodeEncodeError", "OSError", "FileNotFoundError",
    "MemoryError", "Exception")}
JUDGE_MEMORY_BYTES = 2 << 30


# ----------------------------------------------------------------------------- planning

def plan(tests: str, helpers: str = "", reference: str = "", proxy: tuple = (), fallback: str | None = None) -> dict:
    """How the judge runs ``tests``: ``{"judge": "proxy", ...}`` with the names to bind to
    proxies and the imports the tests rely on, or ``{"judge": "in_process", "why": ...}``.

    ``helpers``: trusted code run first in the judge (HumanEval's prompt and canonical solution,
    MBPP's set-up code). ``proxy``: names that are the candidate's whatever else defines them
    (HumanEval's entry point). Every other name the tests use but do not define is proxied when
    the ``reference`` solution defines it as a function (or, without one, when the tests only
    call it), imported in the judge when the reference imports it, and otherwise (a class, a
    constant) sends the row to the in-process fallback. ``fallback``: the tests as the fallback
    runs them in the candidate's namespace (default: ``helpers`` then ``tests``)."""
    fallback = "\n".join([helpers, tests]) if fallback is None else fallback
    spec = {"judge": "in_process", "tests": fallback, "names": []}
    try:
        with warnings.catch_warnings():  # MBPP's code has invalid escapes ("\w"): not ours to warn about
            warnings.simplefilter("ignore")
            test_tree, helper_tree, ref_tree = ast.parse(tests), ast.parse(helpers), ast.parse(reference)
            fallback_tree = ast.parse(fallback)
    except SyntaxError as e:
        return {**spec, "why": f"unparsable tests or reference ({e.msg})"}
    ref = _top_level_bindings(ref_tree)
    shadowed = {n for n, node in ref.items() if isinstance(node, (ast.FunctionDef,
                                                                  ast.AsyncFunctionDef))}  # MBPP's own `sum`
    # the fallback runs the tests beside the program: the names they may take from it
    spec["names"] = sorted({n.id for n in ast.walk(fallback_tree) if isinstance(n, ast.Name)}
                           - _bound_names(fallback_tree) - (set(dir(builtins)) - shadowed))
    defined = _bound_names(test_tree) | _bound_names(helper_tree) | (set(dir(builtins)) - shadowed)
    # names the set-up code uses count too (MBPP's ``root = Node(1)``)
    loads = [n for tree in (test_tree, helper_tree) for n in ast.walk(tree)
             if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
    called = {id(c.func) for tree in (test_tree, helper_tree) for c in ast.walk(tree) if isinstance(c, ast.Call)}
    names, imports, classes = list(dict.fromkeys(proxy)), [], []
    for name in sorted({n.id for n in loads} - defined - set(proxy)):
        node = ref.get(name)
        only_called = all(id(n) in called for n in loads if n.id == name)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or (
                isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda)) or (node is None and only_called):
            names.append(name)
        elif isinstance(node, ast.alias):
            module = getattr(node, "_module", None)
            imports.append(ast.unparse(ast.Import([node]) if module is None else ast.ImportFrom(module, [node], 0)))
        elif isinstance(node, ast.ClassDef):
            classes.append(name)
        else:
            kind = ("used as a value and not defined by the reference" if node is None
                    else f"a {type(node).__name__} of the reference")
            return {**spec, "why": f"the tests use {name!r}, {kind}"}
    if not names:
        return {**spec, "why": "the tests call no function of the candidate"}
    remote = []
    if classes:  # the set-up builds objects of the program's class: it runs there, the tests name its objects
        remote = _remote_setup_names(test_tree, helper_tree, classes, set(names))
        if remote is None:
            return {**spec, "why": f"the tests use {classes[0]!r}, a ClassDef of the reference"}
    local_defs = {n.name for tree in (test_tree, helper_tree) for n in ast.walk(tree)
                  if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
                  and hasattr(n, "name")}
    for call in ast.walk(test_tree):  # the tests hand the candidate a function or an object: not plain data
        if isinstance(call, ast.Call) and isinstance(call.func,
                                                     ast.Name) and call.func.id in set(names) | {"candidate"}:
            for arg in [*call.args, *(k.value for k in call.keywords)]:
                if any(isinstance(n, ast.Lambda) or (isinstance(n, ast.Name) and n.id in local_defs | set(names))
                       for n in ast.walk(arg)) and not (isinstance(arg, ast.Name) and arg.id in remote):
                    return {**spec, "why": f"the tests pass a function or an object to {call.func.id!r}"}
    for node in ast.walk(test_tree):  # ``P(1, 2).x``: an object of the candidate's own class
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Call) and \
                isinstance(node.value.func, ast.Name) and node.value.func.id in names:
            return {**spec, "why": f"the tests use attributes of what {node.value.func.id!r} returns"}
    out = {"judge": "proxy", "tests": tests, "helpers": helpers, "imports": imports, "proxy": names,
           "changes": _reads_arguments_after_calls(test_tree, set(names) | {"candidate"}), "fallback_tests": fallback,
           "names": spec["names"]}
    if remote:
        out.update(helpers="", remote_setup=helpers, refs=remote)
    return out


def _remote_setup_names(test_tree, helper_tree, classes: list, proxied: set) -> list | None:
    """For set-up code that builds objects of the reference's own classes (MBPP 367's trees of
    ``Node``): the names it binds, when the tests use the classes nowhere and those names only
    as whole arguments of proxied calls. The set-up then runs in the candidate's process (on its
    own class), and the judge sends references to those names; else None (in process)."""
    bound = sorted(_top_level_bindings(helper_tree))
    test_names = [n for n in ast.walk(test_tree) if isinstance(n, ast.Name)]
    if any(n.id in classes for n in test_names) or not bound:
        return None
    as_args = {id(a) for c in ast.walk(test_tree) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
               and c.func.id in proxied for a in c.args if isinstance(a, ast.Name)}
    if any(n.id in bound and id(n) not in as_args for n in test_names):
        return None
    return bound


def _reads_arguments_after_calls(tree, callees: set) -> bool:
    """Whether the tests may look for in-place changes: a variable passed to the candidate is
    read again. Only then are changed arguments copied back (a program cannot rewrite the
    tests' other data through its arguments)."""
    reads = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            reads[n.id] = reads.get(n.id, 0) + 1
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in callees:
            for arg in [*call.args, *(k.value for k in call.keywords)]:
                if isinstance(arg, ast.Starred):
                    arg = arg.value
                if isinstance(arg, ast.Name) and reads.get(arg.id, 0) > 1:
                    return True
    return False


def _bound_names(tree) -> set:
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
            out.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, ast.arg):
            out.add(n.arg)
        elif isinstance(n, ast.alias):
            out.add((n.asname or n.name).split(".")[0])
        elif isinstance(n, ast.ExceptHandler) and n.name:
            out.add(n.name)
    return out


def _top_level_bindings(tree) -> dict:
    """Name -> the top-level statement (or import alias) that binds it, the last one winning."""
    out = {}
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[stmt.name] = stmt
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                alias._module = stmt.module if isinstance(stmt, ast.ImportFrom) else None
                out[(alias.asname or alias.name).split(".")[0]] = alias
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                for n in ast.walk(target):
                    if isinstance(n, ast.Name):
                        out[n.id] = stmt
        elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)) and isinstance(stmt.target, ast.Name):
            out[stmt.target.id] = stmt
    return out


# ----------------------------------------------------------------------------- the channel

class Channel:
    """Requests to the candidate process and its replies, as ``srpo_ref.rewards.code.jail.wire`` frames."""

    def __init__(self, proc, deadline: float, trusted: bool = False):
        """``trusted``: the process runs a trusted solution (``judge="record"``), whose large
        answers get the wire's general caps instead of the tighter ones for replies."""
        self.max_bytes = wire.MAX_FRAME_BYTES if trusted else wire.MAX_REPLY_BYTES
        self.max_nodes = wire.MAX_NODES if trusted else wire.MAX_REPLY_NODES
        self.w, self.r = proc.stdin.fileno(), proc.stdout.fileno()
        os.set_blocking(self.w, False)
        self.deadline = deadline
        self.failure: str | None = None
        self.timed_out = False
        self.calls = 0

    def fail(self, why: str, timeout: bool = False):
        if self.failure is None:
            self.failure, self.timed_out = why, timeout
        raise JudgeAbort(why)

    def _until(self, timeout: float | None) -> float:
        end = self.deadline if timeout is None else min(self.deadline, time.monotonic() + timeout)
        return end

    def _send(self, frame: bytes, end: float) -> None:
        view = memoryview(frame)
        while view:
            left = end - time.monotonic()
            if left <= 0 or not select.select([], [self.w], [], left)[1]:
                self.fail("the candidate stopped reading", timeout=True)
            try:
                view = view[os.write(self.w, view):]
            except BlockingIOError:
                continue
            except OSError:
                self.fail("the candidate process ended")

    def _read(self, n: int, end: float) -> bytes:
        out = bytearray()
        while len(out) < n:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.r], [], [], left)[0]:
                self.fail("the candidate did not answer in time", timeout=True)
            chunk = os.read(self.r, min(n - len(out), 1 << 20))
            if not chunk:
                self.fail("the candidate process ended")
            out += chunk
        return bytes(out)

    def receive(self, timeout: float | None = None) -> dict:
        end = self._until(timeout)
        try:
            size = wire.unpack_header(self._read(4, end), self.max_bytes)
            message = wire.parse(self._read(size, end))
        except wire.WireError as e:
            self.fail(f"malformed reply: {e}")
        if type(message) is not dict:
            self.fail("malformed reply")
        return message

    def ready(self) -> None:
        message = self.receive()
        if message != {"ready": 1}:
            self.fail(str(message.get("error", "malformed greeting"))[:300])

    def call(self, name: str, args: tuple, kwargs: dict, timeout: float | None = None, changes: bool = True):
        if self.failure is not None:
            raise JudgeAbort(self.failure)
        try:
            frame = wire.pack({"call": name, "args": wire.encode(list(args)), "kwargs": wire.encode(dict(kwargs)),
                               "changes": changes})
        except wire.WireError as e:
            raise Unservable(f"the tests pass {name!r} something that is not plain data ({e})") from None
        self._send(frame, self._until(None))
        self.calls += 1
        reply = self.receive(timeout)
        if "ok" in reply and set(reply) <= ({"ok", "changed"} if changes else {"ok"}):
            try:
                budget = [self.max_nodes]  # one for the whole reply: its value and its changes
                value = wire.decode(reply["ok"], budget=budget)
                changed = [(i, wire.decode(v, budget=budget)) for i, v in _pairs(reply.get("changed", []))]
            except wire.WireError as e:
                self.fail(f"the candidate returned {e}")
            for i, new in changed:
                if 0 <= i < len(args):
                    _update_in_place(args[i], new)
            return value
        if set(reply) == {"raised"} and type(reply["raised"]) is str:
            raise _RERAISED.get(reply["raised"], CandidateRaised)(f"raised by the candidate: {reply['raised'][:100]}")
        self.fail(str(reply.get("error", "malformed reply"))[:300])

    def proxy(self, name: str, changes: bool = True):
        def candidate(*args, **kwargs):
            return self.call(name, args, kwargs, changes=changes)
        candidate.__name__ = candidate.__qualname__ = name
        return candidate


def _pairs(items):
    if type(items) is not list:
        raise wire.WireError("malformed changes")
    for item in items:
        if type(item) is not list or len(item) != 2 or type(item[0]) is not int:
            raise wire.WireError("malformed changes")
        yield item[0], item[1]


def _update_in_place(target, new) -> None:
    """Copy the candidate's changes to an argument back into the judge's object."""
    t = type(target)
    if t is not type(new):
        return
    if t is list or t is bytearray:
        target[:] = new
    elif t is dict or t is set:
        target.clear()
        target.update(new)


# ----------------------------------------------------------------------------- the judges

def run_proxy(spec: dict, channel: Channel) -> None:
    """The benchmark's tests, with the candidate's functions as proxies; raises on failure."""
    namespace = {"__name__": "__judge__"}
    # optimize=0: the asserts stay whatever the interpreter's flags (``-O`` would drop every check)
    exec(compile(spec["helpers"], "helpers.py", "exec", optimize=0), namespace)
    for name in spec.get("refs", ()):  # objects the set-up built in the candidate's process
        namespace[name] = wire.RemoteRef(name)
    for statement in spec["imports"]:
        exec(compile(statement, "imports.py", "exec", optimize=0), namespace)
    for name in spec["proxy"]:
        namespace[name] = channel.proxy(name, spec.get("changes", True))
    exec(compile(spec["tests"], "tests.py", "exec", optimize=0), namespace)


def evalplus_time_limits(ref_times, min_time_limit: float, factor: float) -> list:
    return [max(min_time_limit, factor * t) for t in ref_times]


def run_evalplus(job: dict, channel: Channel) -> None:
    """evalplus's base (and plus) inputs, each within its time limit; raises on the first wrong
    output (evalplus's ``fast_check``)."""
    problem, expected, entry = job["problem"], job["expected"], job["problem"]["entry_point"]
    for split in ("base",) if job.get("base_only") else ("base", "plus"):
        limits = evalplus_time_limits(expected[f"{split}_time"], job["min_time_limit"], job["gt_time_limit_factor"])
        atol = problem["atol"]
        for i, inp in enumerate(problem[f"{split}_input"]):
            try:
                out = channel.call(entry, copy.deepcopy(inp), {}, timeout=limits[i], changes=False)
            except JudgeAbort:
                raise
            except Unservable:
                raise
            except Exception as e:  # the candidate raised: a wrong answer
                raise AssertionError(f"{split} input {i}: {type(e).__name__}") from None
            ok, atol = evalplus_match(job["dataset"], entry, inp, out, expected[split][i], atol)
            if not ok:
                raise AssertionError(f"{split} input {i}: wrong output")


def evalplus_match(dataset: str, entry: str, inp, out, exp, atol) -> tuple[bool, float]:
    """evalplus 0.3.1's ``unsafe_execute`` comparison, on plain values: ``out == exp``, its
    special oracles, and ``np.allclose`` (with a type and length check) when a tolerance applies.
    Returns the verdict and the tolerance for the next input (evalplus sets ``atol = 1e-6`` the
    first time a float is expected and keeps it). Two deviations: evalplus skips the pass
    counter after HumanEval/32's root check, so every ``find_zero`` fails there; here the root
    check decides, as intended. And ``allclose`` needs equal shapes here: evalplus's broadcasts,
    so a list of copies of the expected list (``[exp] * len(exp)``) passed there."""
    import numpy as np
    from evalplus.eval import is_floats
    from evalplus.eval._special_oracle import (MBPP_OUTPUT_NOT_NONE_TASKS, MBPP_OUTPUT_SET_EQ_TASKS,
                                               _digit_distance_nums, _poly, _surface_Area)

    try:
        exact = out == exp  # plain values on both sides: no custom __eq__ can answer
        if dataset == "mbpp":
            if entry == "are_equivalent":
                exact = True
            elif entry == "sum_div":
                exact = exact or out == 0
            elif entry == "surface_Area":
                exact = exact or abs(out - _surface_Area(*inp)) <= atol
            elif entry == "digit_distance_nums":
                exact = exact or out == _digit_distance_nums(*inp)
            elif entry in MBPP_OUTPUT_SET_EQ_TASKS:
                exact = set(out) == set(exp)
            elif entry in MBPP_OUTPUT_NOT_NONE_TASKS:
                exact = out == exp if isinstance(out, bool) else exp == (out is not None)
        if dataset == "humaneval" and entry == "find_zero":
            return bool(abs(_poly(*inp, out)) <= atol), atol
        if atol == 0 and is_floats(exp):
            atol = 1e-6
        if not exact and atol != 0:
            # exact types on purpose (E721): isinstance would let a subclass (bool for int) pass as the expected type
            if type(out) != type(exp) or (isinstance(exp, (list, tuple)) and len(out) != len(exp)):  # noqa: E721
                return False, atol
            if np.shape(out) != np.shape(exp):  # deviation: allclose would broadcast [exp] * len(exp) against exp
                return False, atol
            return bool(np.allclose(out, exp, rtol=1e-07, atol=atol)), atol
        return bool(exact), atol
    except Exception:
        return False, atol


def run_record(job: dict, channel: Channel) -> dict:
    """Outputs and times of a trusted solution on each split's inputs (evalplus's ground truth,
    as its ``trusted_exec``: deep-copied inputs, ``is not None`` for the not-None tasks)."""
    out = {}
    for split, inputs in job["inputs"].items():
        values, times = [], []
        for inp in inputs:
            t0 = time.perf_counter()
            value = channel.call(job["entry_point"], copy.deepcopy(inp), {}, changes=False)
            times.append(time.perf_counter() - t0)
            values.append(value is not None if job.get("output_not_none") else value)
        out[split], out[f"{split}_time"] = wire.encode(values), times
    return out


def run_in_process(job: dict, limits, deadline: float) -> dict:
    """The fallback: the tests run in the sandboxed process, which prints a random token only
    after all of them passed (``jail/harness.py``, mode ``tests``)."""
    import secrets

    token = secrets.token_hex(16)
    cand = sandbox.Candidate({"mode": "tests", "candidate": job["candidate"],
                              "tests": rewrite_for_in_process(job["tests"]),
                              "names": job.get("names") or plan(job["tests"], fallback=job["tests"])["names"],
                              "token": token}, limits)
    tail, status = b"", "failed"
    try:
        try:
            Channel(cand.proc, deadline)._send(cand.job_frame, deadline)
            cand.proc.stdin.close()
        except (JudgeAbort, OSError):
            pass
        fd = cand.proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                status = "timeout"
                break
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            tail = (tail + chunk)[-4096:]
    finally:
        _disarm()
        cand.stop()
        output = cand.output()
        cand.cleanup()
    lines = [line for line in tail.decode(errors="replace").splitlines() if line.strip()]
    if status != "timeout" and lines and lines[-1].strip() == token:
        return {"passed": True, "status": "passed", "judge": "in_process"}
    return {"passed": False, "status": status, "judge": "in_process",
            "output_tail": (output + tail.decode(errors="replace"))[-2000:]}


def rewrite_for_in_process(source: str) -> str:
    """The fallback's tests with every operand of a comparison, every assert condition and every
    operand of ``not`` / ``and`` / ``or`` passed through ``__srpo_plain__`` (the harness's check
    that a value is plain data of exact type). Done here, so the sandbox holds no rewriter."""

    class Rewriter(ast.NodeTransformer):
        def _wrap(self, node):
            return ast.Call(ast.Name("__srpo_plain__", ast.Load()), [node], [])

        def visit_Compare(self, node):
            self.generic_visit(node)
            node.left = self._wrap(node.left)
            node.comparators = [self._wrap(c) for c in node.comparators]
            return node

        def visit_Assert(self, node):
            self.generic_visit(node)
            node.test = self._wrap(node.test)
            return node

        def visit_UnaryOp(self, node):
            self.generic_visit(node)
            if isinstance(node.op, ast.Not):
                node.operand = self._wrap(node.operand)
            return node

        def visit_BoolOp(self, node):
            self.generic_visit(node)
            node.values = [self._wrap(v) for v in node.values]
            return node

    return ast.unparse(ast.fix_missing_locations(Rewriter().visit(ast.parse(source))))


def judge(job: dict, limits) -> dict:
    """The verdict on one job (module docstring)."""
    deadline = time.monotonic() + job.get("timeout_s", limits.timeout_s)
    if job["judge"] == "in_process":
        return run_in_process(job, limits, deadline)
    spec = job.get("spec", {})
    cand = sandbox.Candidate({"mode": "serve", "candidate": job["candidate"], "setup": spec.get("remote_setup", ""),
                              "refs": spec.get("refs", [])}, limits)
    channel = Channel(cand.proc, deadline, trusted=job["judge"] == "record")
    verdict = {"passed": False, "status": "failed", "judge": "proxy"}
    try:
        channel._send(cand.job_frame, deadline)
        channel.ready()
        if job["judge"] == "proxy":
            run_proxy(job["spec"], channel)
        elif job["judge"] == "evalplus":
            run_evalplus(job, channel)
        elif job["judge"] == "record":
            verdict["outputs"] = run_record(job, channel)
        else:
            raise ValueError(f"unknown judge {job['judge']!r}")
        if channel.failure is None:
            verdict.update(passed=True, status="passed")
    except Unservable as e:  # a test the plan sent here that the proxy cannot serve: never a reason to pass
        verdict.update(status="error", reason=str(e)[:300])
    except JudgeAbort:
        pass
    except _Deadline:
        channel.failure, channel.timed_out = channel.failure or "out of time", True
    except BaseException as e:  # noqa: BLE001  a failed test (AssertionError, the candidate's error re-raised)
        verdict["reason"] = type(e).__name__
    finally:
        _disarm()
        cand.stop()
        if not verdict["passed"]:
            verdict["output_tail"] = cand.output()
        cand.cleanup()
    if channel.failure is not None:
        verdict.update(passed=False, status="timeout" if channel.timed_out else "failed", reason=channel.failure)
    return verdict


class _Deadline(BaseException):
    pass


def _disarm() -> None:
    """No deadline while a candidate is being ended and its files removed."""
    signal.setitimer(signal.ITIMER_REAL, 0)


def _on_alarm(signum, frame):
    raise _Deadline()


def _become_subreaper() -> None:
    """Orphans of the sandbox (bubblewrap's own children) are reparented here, not to PID 1."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def main() -> None:
    _become_subreaper()
    out = sys.stdout
    if sys.argv[1:] == ["--probe"]:
        verdict = sandbox.probe()
    else:
        request = pickle.load(sys.stdin.buffer)  # written by the evaluator (trusted), never by a candidate
        job, limits = request["job"], request["limits"]
        sandbox.hide(*request.get("answer_paths", ()))  # from the evaluator, whose environment names them
        import resource

        # the candidate's replies are decoded here: capped in size, and so is this process
        # the soft limit only: the candidate's own (prlimit, possibly higher) is set from the hard one
        resource.setrlimit(resource.RLIMIT_AS, (JUDGE_MEMORY_BYTES, resource.getrlimit(resource.RLIMIT_AS)[1]))
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, job.get("timeout_s", limits.timeout_s) + 10)  # cleanup included
        try:
            verdict = judge(job, limits)
        except _Deadline:
            verdict = {"passed": False, "status": "timeout", "judge": job["judge"],
                       "reason": "the judge ran out of time"}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    sandbox.reap_children()
    out.write(json.dumps(verdict) + "\n")
    out.flush()

