"""The program that runs *inside* the code sandbox (see ``srpo_ref.sandbox``); never imported by
the project. ``python -I sandbox_harness.py JOB_DIR`` reads ``JOB_DIR/job.pkl``:

- ``mode="tests"``: execute the candidate program, then the unit tests (rewritten so that every
  compared value must be a plain builtin value of exact type: an object that is "equal to
  everything" fails);
- ``mode="evalplus"``: grade the candidate with evalplus's own ``untrusted_check`` on the base and
  plus inputs, as ``evalplus.evaluate.check_correctness`` does (its expected outputs,
  tolerances, special oracles and per-input time limits), the entry point wrapped so that it
  must return plain builtin values.

A pass is a *positive signal*: the parent writes a random token on stdin; the harness reads it
before any untrusted code runs and writes it back on stdout only after every test passed. Exit
status means nothing, so ``sys.exit(0)``, ``os._exit(0)``, ``atexit`` tricks, killing the parent
or a thread that ends the process all count as failures.

Before untrusted code runs, an audit hook (PEP 578: it cannot be removed) blocks what would let
the program read the token or tamper with the grading: frame, code and traceback introspection,
``gc`` object walks, ``ctypes``, tracing/profiling hooks, ``/proc/*/mem``, new programs
(``exec``/``system``/``Popen``), signals to other processes and, outside bubblewrap, writes
outside the working directory and sockets.
"""

import sys
import os


def _read_token() -> bytes:
    token = b""
    while not token.endswith(b"\n"):
        chunk = os.read(0, 128)
        if not chunk:
            break
        token += chunk
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return token.strip()


# Modules loaded before the audit hook, so untrusted code imports them from the cache.
_PRELOAD = ("typing", "collections", "collections.abc", "dataclasses", "math", "cmath", "re", "itertools",
            "functools", "heapq", "bisect", "string", "random", "json", "copy", "operator", "decimal",
            "fractions", "statistics", "datetime", "hashlib", "threading", "ast", "numbers", "enum",
            "array", "queue", "textwrap", "unicodedata", "time", "traceback", "warnings", "contextlib")
# Modules whose attributes must not change while the candidate runs (what tests compare with).
_WATCHED = ("builtins", "math", "cmath", "copy", "operator", "functools", "itertools", "collections",
            "re", "numpy", "numpy.core.numeric", "evalplus.eval", "evalplus.eval._special_oracle")
_PLAIN_SCALARS = (int, float, complex, bool, str, bytes, type(None), range)
_PLAIN_CONTAINERS = (list, tuple, set, frozenset, dict)
_PLAIN_TYPES = frozenset(_PLAIN_SCALARS + _PLAIN_CONTAINERS + (type, bytearray))
# Standard-library value types whose comparisons are trusted when the type is exact and its
# class dict is untouched (checked with the watched modules); filled in ``_trust_stdlib``.
_STDLIB_SCALARS: tuple = ()
_STDLIB_MAPPINGS: tuple = ()
_STDLIB_SEQUENCES: tuple = ()


def _trust_stdlib() -> list:
    global _STDLIB_SCALARS, _STDLIB_MAPPINGS, _STDLIB_SEQUENCES, _PLAIN_TYPES
    import collections
    import datetime
    import decimal
    import fractions

    _STDLIB_SCALARS = (decimal.Decimal, fractions.Fraction, datetime.date, datetime.datetime, datetime.time,
                       datetime.timedelta)
    _STDLIB_MAPPINGS = (collections.Counter, collections.OrderedDict, collections.defaultdict)
    _STDLIB_SEQUENCES = (collections.deque,)
    _PLAIN_TYPES = _PLAIN_TYPES | frozenset(_STDLIB_SCALARS + _STDLIB_MAPPINGS + _STDLIB_SEQUENCES)
    return list(_STDLIB_SCALARS + _STDLIB_MAPPINGS + _STDLIB_SEQUENCES)


class TamperError(Exception):
    pass


def plain(value, _depth=0):
    """``value`` when it is built only from builtin values of exact type (no subclasses, so no
    custom ``__eq__``, ``__bool__`` or arithmetic); raises otherwise."""
    t = type(value)
    if t in _PLAIN_SCALARS or t in _STDLIB_SCALARS:
        return value
    if _depth > 200:
        raise TamperError("value nested too deeply")
    if t is list or t is tuple or t is set or t is frozenset or t in _STDLIB_SEQUENCES:
        for v in value:
            plain(v, _depth + 1)
        return value
    if t is dict or t in _STDLIB_MAPPINGS:
        for k, v in dict.items(value):
            plain(k, _depth + 1), plain(v, _depth + 1)
        return value
    if t is type and value in _PLAIN_TYPES:
        return value
    raise TamperError(f"a test compared a value of type {t.__qualname__}, not a plain builtin value")


# Set by evalplus's own ``reliability_guard`` before the candidate runs; not used in grading.
_VOLATILE = {"builtins": {"exit", "quit", "help", "open"}}


def _hide_harness() -> None:
    """The harness's module is not importable by the program (``import __main__``)."""
    module = sys.modules.pop("__main__", None)
    if module is not None:
        _HIDDEN.append(module)


_HIDDEN: list = []


def _snapshot(names, classes=()):
    snap = {n: (sys.modules[n], {k: v for k, v in vars(sys.modules[n]).items() if k not in _VOLATILE.get(n, ())})
            for n in names if n in sys.modules}
    snap.update({f"class {c.__module__}.{c.__qualname__}": (c, dict(vars(c))) for c in classes})
    return snap


def _check_unchanged(snapshot):
    """Raise if any attribute captured by ``_snapshot`` was rebound or removed since."""
    for name, (obj, attrs) in snapshot.items():
        live = vars(obj)
        for key, value in attrs.items():
            if live.get(key, _MISSING) is not value:
                raise TamperError(f"{name}.{key} was changed by the program under test")


_MISSING = object()


def _guarded(fn, snapshot, check=None):
    check = check or _check_unchanged  # bound now: later changes to module globals do not reach it

    def call(*args, **kwargs):
        out = fn(*args, **kwargs)
        check(snapshot)
        return out
    return call


def _rewrite_tests(source: str):
    """Every operand of a comparison, every assert condition and every operand of ``not`` /
    ``and`` / ``or`` in the tests goes through ``plain`` first."""
    import ast

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

    tree = Rewriter().visit(ast.parse(source))
    return compile(ast.fix_missing_locations(tree), "tests.py", "exec")


def _install_audit_hook(root: str, contained: bool, trusted_pid: int | None, job_dir: str = ""):
    """Block the events listed in the module docstring. ``contained``: running under bubblewrap
    (the file system and network are already isolated by the kernel). ``trusted_pid``: a process
    that runs only the grader's own code (evalplus's parent process), exempt from the hook."""
    import errno

    blocked = {
        "sys.settrace", "sys.setprofile", "sys._current_frames", "sys._current_exceptions",
        "gc.get_objects", "gc.get_referrers", "gc.get_referents", "gc.freeze",
        "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.forkpty", "subprocess.Popen", "pty.spawn",
        "ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.string_at", "ctypes.wstring_at",
        "ctypes.addressof", "ctypes.cdata", "ctypes.cdata/buffer", "ctypes.call_function", "ctypes.PyObj_FromPtr",
        "code.__new__", "sys.set_asyncgen_hooks", "cpython._PySys_ClearAuditHooks",
        "os.kill", "os.killpg", "signal.pthread_kill", "os.fork", "os.chroot",
    }
    blocked_imports = {"ctypes", "_ctypes", "_testcapi", "_testinternalcapi", "_xxsubinterpreters",
                       "_posixsubprocess", "pty", "cffi", "_cffi_backend"}
    fs_events = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.chmod",
                 "os.chown", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile",
                 "shutil.copytree", "os.chflags", "os.lchflags", "os.mkfifo", "os.mknod"}
    net_events = {"socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
                  "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "urllib.Request"}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    root = os.path.realpath(root)
    # The job (tests, expected outputs) must not be readable by the program: reading the
    # expected outputs and returning them is a pass without a solution.
    hidden = os.path.realpath(job_dir) if job_dir else None

    def inside(path) -> bool:
        if isinstance(path, int):
            return True
        try:
            p = os.path.realpath(os.fsdecode(path))
        except Exception:
            return False
        return p == root or p.startswith(root + os.sep) or p == os.devnull

    def deny(event, kind=PermissionError):
        raise kind(errno.EPERM, f"blocked by the srpo sandbox: {event}") if kind is PermissionError else kind(
            f"blocked by the srpo sandbox: {event}")

    getpid = os.getpid

    def hook(event, args):
        if trusted_pid is not None and getpid() == trusted_pid:
            return
        if event == "sys._getframe" or event == "sys._getframemodulename":
            deny(event, ValueError)  # stdlib callers (namedtuple, TypeVar) tolerate ValueError
        if event == "object.__getattr__" and args and len(args) > 1 and str(args[1]).endswith("_frame"):
            deny(event, AttributeError)  # tb_frame, gi_frame, cr_frame, ag_frame: the way to a frame
        if event in blocked:
            deny(event)
        if event == "import" and args and str(args[0]).split(".")[0] in blocked_imports:
            deny(event, ImportError)
        if hidden and event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
            try:
                target = os.path.realpath(os.fsdecode(args[0]))
            except Exception:
                deny(event)
            # its own job, and any other sandbox's (the guard backend shares the host's file system)
            if target == hidden or target.startswith(hidden + os.sep) or "/srpo_job_" in target:
                deny(event)
        if event == "open" and args:
            path = args[0]
            if not isinstance(path, int):
                p = os.fsdecode(path)
                parts = p.rstrip("/").split("/")
                if parts[-1] in ("mem", "pagemap", "kcore", "kmem", "environ") or p.startswith(("/dev/mem", "/dev/kmem", "/dev/port")):
                    deny(event)
                mode, flags = args[1] if len(args) > 1 else None, args[2] if len(args) > 2 else 0
                writing = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & write_flags)
                if writing and (p.startswith(("/proc", "/sys")) or (not contained and not inside(path))):
                    deny(event)
        if not contained and (event in fs_events or event in net_events):
            if event in net_events or not all(inside(a) for a in args if isinstance(a, (str, bytes, os.PathLike))):
                deny(event)

    sys.addaudithook(hook)


def main() -> None:
    token = _read_token()
    out = os.dup(1)
    write, exit_now = os.write, os._exit
    job_dir = sys.argv[1]
    import pickle

    with open(os.path.join(job_dir, "job.pkl"), "rb") as f:
        job = pickle.load(f)
    if not job["contained"]:  # guard backend: the job file is on the shared file system
        os.remove(os.path.join(job_dir, "job.pkl"))
    for name in _PRELOAD:
        __import__(name)
    import builtins
    import types

    contained = job["contained"]
    verdict, reason = False, ""
    try:
        if job["mode"] == "tests":
            builtins_copy = dict(vars(builtins))
            tests_code = _rewrite_tests(job["tests"])
            candidate_code = compile(job["candidate"], "candidate.py", "exec")
            snapshot = _snapshot(_WATCHED + ("__main__",), _trust_stdlib())
            _hide_harness()
            _install_audit_hook(os.getcwd(), contained, trusted_pid=None, job_dir=job_dir)
            cand_ns = {"__name__": "__candidate__", "__builtins__": builtins}
            exec(candidate_code, cand_ns)
            test_ns = {k: (_guarded(v, snapshot) if isinstance(v, types.FunctionType) and v.__module__ == "__candidate__" else v)
                       for k, v in cand_ns.items()}
            test_ns.update({"__name__": "__tests__", "__builtins__": builtins_copy, "__srpo_plain__": plain})
            exec(tests_code, test_ns)
            _check_unchanged(snapshot)
            verdict = True
        elif job["mode"] == "evalplus":
            os.environ["EVALPLUS_MAX_MEMORY_BYTES"] = str(job["memory_bytes"])
            import numpy  # noqa: F401  (evalplus compares floats with numpy)
            from evalplus.eval import untrusted_check  # what evalplus.evaluate.check_correctness calls

            snapshot = _snapshot(_WATCHED + ("__main__",), _trust_stdlib())
            _hide_harness()
            _install_audit_hook(os.getcwd(), contained, trusted_pid=os.getpid(), job_dir=job_dir)
            problem, expected = job["problem"], job["expected"]
            entry = problem["entry_point"]
            # The candidate's entry point is wrapped so that whatever it returns must be a plain
            # builtin value and the modules evalplus compares with must be untouched.
            wrapped = (
                job["candidate"]
                + f"\n\nfrom srpo_ref_sandbox_guard import guard as __srpo_guard__\n"
                + f"{entry} = __srpo_guard__({entry}, globals(), {entry!r})\n"
            )
            sys.modules["srpo_ref_sandbox_guard"] = type(sys)("srpo_ref_sandbox_guard")
            sys.modules["srpo_ref_sandbox_guard"].guard = lambda fn, ns, name: _plain_result(fn, ns, name, snapshot)
            statuses = []
            for split in ("base",) if job.get("base_only") else ("base", "plus"):
                status, _ = untrusted_check(job["dataset"], wrapped, problem[f"{split}_input"], entry,
                                            expected=expected[split], atol=problem["atol"], ref_time=expected[f"{split}_time"],
                                            fast_check=True, min_time_limit=job["min_time_limit"],
                                            gt_time_limit_factor=job["gt_time_limit_factor"])
                statuses.append(status)
                if status != "pass":
                    break
            verdict = all(s == "pass" for s in statuses)
            reason = f"evalplus statuses {statuses}"
        else:
            raise ValueError(f"unknown sandbox mode {job['mode']!r}")
    except BaseException as e:  # noqa: BLE001  any way out of the tests is a failure
        verdict, reason = False, type(e).__name__  # never str(e): it could run the program's code
    if verdict:
        write(out, b"\n" + token + b"\n")
    else:
        write(out, f"\nsrpo-sandbox: failed ({reason})\n".encode())
    exit_now(0)


def _plain_result(fn, namespace, name, snapshot, check=None, to_plain=None):
    """The entry point as evalplus calls it; the original stays bound while it runs, so the
    candidate's own recursive calls cost no extra frames."""
    check, to_plain = check or _check_unchanged, to_plain or plain

    def call(*args, **kwargs):
        namespace[name] = fn
        try:
            value = fn(*args, **kwargs)
        finally:
            namespace[name] = call
        check(snapshot)
        return to_plain(value)
    return call


if __name__ == "__main__":
    main()
