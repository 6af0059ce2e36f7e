"""The program that runs *inside* the code sandbox (see ``srpo_ref.rewards.code.sandbox``); never imported by
the project. ``python -I harness.py JOB_DIR`` reads its job as the first frame on stdin
(``wire.py`` framing; no job file exists for the program to find) and imports ``JOB_DIR/wire.py``:

- ``mode="serve"`` (the judge's candidate process, ``srpo_ref.rewards.code.judge``): execute the candidate
  program, say ``ready``, then answer calls: each request names a function and carries its
  arguments as plain data (``wire.py``); the reply is the return value through the strict
  encoder (exact builtin types only), the arguments when the call changed them, or the name of
  the exception it raised. This process never sees a test, an expected output or a secret:
  whatever it does, it can only choose the values it returns.
- ``mode="tests"`` (the fallback, ``judge: in_process``, for tests the judge cannot serve):
  execute the candidate program, then its unit tests in this process, rewritten so that every
  compared value must be a plain builtin value of exact type. A pass is a *positive signal*:
  the parent writes a random token on stdin; the harness reads it before any untrusted code runs
  and writes it back on stdout only after every test passed. Exit status means nothing.

Before untrusted code runs, an audit hook (PEP 578: it cannot be removed) blocks what would let
the program read the token or tamper with the grading: frame, code and traceback introspection,
``gc`` object walks, ``ctypes``, tracing/profiling hooks, new audit hooks, ``/proc/*/mem`` (by
its real path, so a symlink does not help) and symlinks into ``/proc``, new programs
(``exec``/``system``/``Popen``), signals to other processes, signal handlers and, outside
bubblewrap, writes outside the working directory and sockets. In ``serve`` mode there is nothing
in the process to read: frames and tracing are allowed, and under bubblewrap, which confines the
process and everything it starts, the hook refuses only reads of the job, the answer keys and
``/proc`` memory (libraries such as sympy, pandas and asyncio use ``ctypes``, processes and
rewritten code objects).
"""

import sys
import os


# Modules loaded before the audit hook, so untrusted code imports them from the cache.
_PRELOAD = ("typing", "collections", "collections.abc", "dataclasses", "math", "cmath", "re", "itertools",
            "functools", "heapq", "bisect", "string", "random", "json", "copy", "operator", "decimal",
            "fractions", "statistics", "datetime", "hashlib", "threading", "ast", "numbers", "enum",
            "array", "queue", "textwrap", "unicodedata", "time", "traceback", "warnings", "contextlib")
# Modules whose attributes must not change while the candidate runs (what tests compare with).
_WATCHED = ("builtins", "math", "cmath", "copy", "operator", "functools", "itertools", "collections",
            "re")
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
    # identity, never ``in``: tuple membership calls ``==``, which a metaclass can answer
    if _is_one_of(t, _PLAIN_SCALARS) or _is_one_of(t, _STDLIB_SCALARS):
        if _is_one_of(t, _STDLIB_SCALARS):
            _check_stdlib_fields(value)
        return value
    if _depth > 200:
        raise TamperError("value nested too deeply")
    if t is list or t is tuple or t is set or t is frozenset or _is_one_of(t, _STDLIB_SEQUENCES):
        for v in value:
            plain(v, _depth + 1)
        return value
    if t is dict or _is_one_of(t, _STDLIB_MAPPINGS):
        for k, v in dict.items(value):
            plain(k, _depth + 1), plain(v, _depth + 1)
        return value
    if t is type and _is_one_of(value, tuple(_PLAIN_TYPES)):
        return value
    raise TamperError(f"a test compared a value of type {t.__qualname__}, not a plain builtin value")


def _is_one_of(t, types) -> bool:
    for candidate in types:
        if t is candidate:
            return True
    return False


def _check_stdlib_fields(value) -> None:
    """A trusted stdlib value compares through its fields: they must be plain too (a Fraction
    whose ``_numerator`` is an always-equal object is forged)."""
    for slot in ("_numerator", "_denominator", "_int", "_exp", "_sign"):
        try:
            field = object.__getattribute__(value, slot)
        except AttributeError:
            continue
        if not (type(field) is int or type(field) is str or type(field) is bool):
            raise TamperError("a standard-library value holds a forged field")


_VOLATILE: dict = {}


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


def _install_audit_hook(root: str, contained: bool, job_dir: str = "", answer_paths=(), frames: bool = False,
                        kernel_only: bool = False):
    """Block the events listed in the module docstring. ``contained``: running under bubblewrap
    (the file system and network are already isolated by the kernel). ``frames``: allow frame
    introspection and tracing (mode ``serve``: the process holds no secret, and tracebacks,
    logging and ``doctest`` need frames). ``kernel_only``: block nothing but reads of the job
    and the answer keys (mode ``serve`` under bubblewrap: the process holds no secret, and the
    kernel confines what it and the processes it starts can do, so libraries that use
    ``ctypes``, ``subprocess`` or rewrite code objects, as sympy, pandas and asyncio do, work)."""
    import errno

    blocked = {
        "sys.settrace", "sys.setprofile", "sys._current_frames", "sys._current_exceptions",
        "gc.get_objects", "gc.get_referrers", "gc.get_referents", "gc.freeze",
        "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.forkpty", "subprocess.Popen", "pty.spawn",
        "ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.string_at", "ctypes.wstring_at",
        "ctypes.addressof", "ctypes.cdata", "ctypes.cdata/buffer", "ctypes.call_function", "ctypes.PyObj_FromPtr",
        "code.__new__", "sys.set_asyncgen_hooks", "cpython._PySys_ClearAuditHooks", "sys.addaudithook",
        "function.__new__", "sys.monitoring.register_callback", "signal.pthread_kill",
        "os.kill", "os.killpg", "os.fork", "os.chroot",
    }
    blocked_imports = {"ctypes", "_ctypes", "_testcapi", "_testinternalcapi", "_xxsubinterpreters",
                       "_posixsubprocess", "pty", "cffi", "_cffi_backend"}
    if frames:  # tracing sees the same frames (doctest.testmod restores the trace function)
        blocked -= {"sys.settrace", "sys.setprofile"}
    if kernel_only:
        blocked, blocked_imports = set(), set()
    fs_events = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.chmod",
                 "os.chown", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile",
                 "shutil.copytree", "os.chflags", "os.lchflags", "os.mkfifo", "os.mknod"}
    net_events = {"socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
                  "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "urllib.Request"}
    interpreter = tuple(os.path.realpath(p) for p in (sys.prefix, sys.base_prefix,
                                                      os.path.dirname(os.path.realpath(sys.executable))))
    readable = tuple(os.path.realpath(p) for p in (
        "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/dev/null", "/dev/urandom", "/proc/self",
        sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)), root))
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

    private = ("mem", "pagemap", "kcore", "kmem", "environ", "syscall", "stack", "auxv")

    def _special(p: str) -> bool:
        parts = p.rstrip("/").split("/")
        return parts[-1] in private or p.startswith(("/dev/mem", "/dev/kmem", "/dev/port")) or (
            p.startswith("/proc/") and ("fd" in parts or "map_files" in parts or "root" in parts or "cwd" in parts))

    def hook(event, args):
        if not frames and (event == "sys._getframe" or event == "sys._getframemodulename"):
            deny(event, ValueError)  # stdlib callers (namedtuple, TypeVar) tolerate ValueError
        if not frames and event == "object.__getattr__" and args and len(args) > 1 and str(args[1]).endswith("_frame"):
            deny(event, AttributeError)  # tb_frame, gi_frame, cr_frame, ag_frame: the way to a frame
        if event in blocked:
            deny(event)
        if event == "import" and args and str(args[0]).split(".")[0] in blocked_imports:
            deny(event, ImportError)
        if hidden and event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes,
                                                                                                      os.PathLike)):
            try:
                target = os.path.realpath(os.fsdecode(args[0]))
            except Exception:
                deny(event)
            # its own job, any other sandbox's (the guard backend shares the host's file system),
            # and the answer keys (bubblewrap masks them; the guard refuses them here)
            in_interpreter = any(target == r or target.startswith(r + os.sep) for r in interpreter)
            if target == hidden or target.startswith(hidden + os.sep) or "/srpo_job_" in target or (
                    not in_interpreter and any(target == a or target.startswith(a + os.sep) for a in answer_paths)):
                deny(event)
            # the guard reads only what bubblewrap would show: the system, the interpreter, its
            # working directory (an answer key can sit under any bind mount of the host)
            if not contained and not any(target == r or target.startswith(r + os.sep) for r in readable):
                deny(event)
        if event in ("os.symlink", "os.link") and args:
            # a link to /proc/self/mem (or anything in /proc, /sys, /dev) is a way around the
            # path checks below
            try:
                src = os.fsdecode(args[0])
            except Exception:
                deny(event)
            if not isinstance(args[0], int) and _special(os.path.normpath(os.path.join(os.getcwd(), src))):
                deny(event)
        if event == "open" and args:
            path = args[0]
            if not isinstance(path, int):
                p = os.fsdecode(path)
                if _special(p) or _special(os.path.realpath(p)):
                    deny(event)
                mode, flags = args[1] if len(args) > 1 else None, args[2] if len(args) > 2 else 0
                writing = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & write_flags)
                if writing and (p.startswith(("/proc", "/sys")) or (not contained and not inside(path))):
                    deny(event)
        if not contained and (event in fs_events or event in net_events):
            if event in net_events or not all(inside(a) for a in args if isinstance(a, (str, bytes, os.PathLike))):
                deny(event)

    sys.addaudithook(hook)


def _deny_signal_handlers() -> None:
    """``signal.signal`` hands a handler the interrupted frame: refuse it (both spellings)."""
    import signal
    import _signal

    isolated = {}  # its globals hold nothing of the harness's (a program can reach signal.signal)
    exec("def refuse(*args, **kwargs):\n    raise PermissionError('blocked by the srpo sandbox: signal handlers')\n",
         isolated)
    refuse = isolated["refuse"]

    for module in (signal, _signal):
        module.signal = refuse
        if hasattr(module, "set_wakeup_fd"):
            module.set_wakeup_fd = refuse


def _write_all(fd: int, data: bytes, write=os.write) -> None:
    while data:
        data = data[write(fd, data):]


def _read_exact(fd: int, n: int, read=os.read) -> bytes:
    out = b""
    while len(out) < n:
        chunk = read(fd, n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def _load_wire(job_dir: str):
    """``wire.py`` (copied beside this file) as a module object that is not in ``sys.modules``."""
    module = type(sys)("srpo_wire")
    with open(os.path.join(job_dir, "wire.py")) as f:
        exec(compile(f.read(), "wire.py", "exec"), module.__dict__)
    return module


def _candidate_namespace(builtins) -> dict:
    """A module of its own (dataclasses look their module up), not __main__, so an
    ``if __name__ == "__main__":`` block does not run (as in the benchmarks' own harnesses); and
    an empty __main__, so an unguarded ``doctest.testmod()`` or ``unittest.main()`` finds one."""
    module = type(sys)("__candidate__")
    sys.modules["__candidate__"] = module
    sys.modules["__main__"] = type(sys)("__main__")
    module.__dict__["__builtins__"] = builtins
    return module.__dict__


def serve(job: dict, job_dir: str, wire) -> None:
    """The candidate process of the judge (module docstring). Never returns."""
    requests, replies = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)  # the program's prints go to the captured output, not into the replies
    encode, decode, pack, parse, unpack_header = wire.encode, wire.decode, wire.pack, wire.parse, wire.unpack_header
    exit_now, type_name, base_exception, wire_error = os._exit, wire._type_name, BaseException, wire.WireError

    def send(message) -> None:
        try:
            frame = pack(message)
        except base_exception:
            frame = pack({"error": "reply could not be encoded"})
        _write_all(replies, frame)

    for name in _PRELOAD:
        __import__(name)
    import builtins

    code = compile(job["candidate"], "candidate.py", "exec")
    _hide_harness()
    # the process holds no secret (module docstring): frames and signal handlers are its own
    # business, and under bubblewrap so is everything the kernel confines
    _install_audit_hook(os.getcwd(), job["contained"], job_dir=job_dir, answer_paths=tuple(job.get("answer_paths", ())),
                        frames=True, kernel_only=job["contained"])
    if not job["contained"]:
        _deny_signal_handlers()
    namespace = _candidate_namespace(builtins)
    try:
        exec(code, namespace)
    except base_exception as e:  # noqa: BLE001
        send({"error": f"the program raised {type_name(type(e))} before any call"})
        exit_now(0)
    refs = None
    if job.get("setup"):  # the benchmark's set-up code, on the program's own classes (judge.plan)
        try:
            exec(compile(job["setup"], "setup.py", "exec"), namespace)
            refs = {name: namespace[name] for name in job["refs"]}
        except base_exception as e:  # noqa: BLE001
            send({"error": f"the set-up code raised {type_name(type(e))}"})
            exit_now(0)
    send({"ready": 1})
    while True:
        try:
            request = parse(_read_exact(requests, unpack_header(_read_exact(requests, 4))))
            name, args, kwargs = request["call"], decode(request["args"], refs), decode(request["kwargs"], refs)
        except base_exception:
            exit_now(0)  # the judge closed the pipe (or sent nonsense): done
        fn = namespace.get(name)
        if not callable(fn):
            send({"error": f"the program defines no function {name!r}"})
            continue
        want_changes = request.get("changes", False)
        try:
            before = [encode(a) for a in args] if want_changes else None
        except base_exception:
            before = None
        try:
            value = fn(*args, **kwargs)
        except base_exception as e:  # noqa: BLE001  the candidate's own exception is its answer
            send({"raised": type_name(type(e))})
            continue
        try:
            reply = {"ok": encode(value, convert=True)}  # generators, numpy values...: as the tests would see them
            if before is not None:
                after = [encode(a) for a in args]
                reply["changed"] = [[i, a] for i, (b, a) in enumerate(zip(before, after)) if a != b]
        except wire_error as e:
            reply = {"error": f"returned a value that is not plain data ({e})"[:300]}
        except base_exception as e:  # noqa: BLE001  raised while a generator ran: its exception, as in the tests
            reply = {"raised": type_name(type(e))}
        send(reply)


def main() -> None:
    job_dir = sys.argv[1]
    wire = _load_wire(job_dir)
    try:
        job = wire.parse(_read_exact(0, wire.unpack_header(_read_exact(0, 4))))
    except BaseException:  # noqa: BLE001
        os._exit(0)
    if job["mode"] == "serve":
        serve(job, job_dir, wire)
    token = job.pop("token").encode()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    out = os.dup(1)
    write, exit_now = os.write, os._exit
    for name in _PRELOAD:
        __import__(name)
    import builtins
    import types

    run_code = builtins.exec  # bound now: a program that swaps builtins.exec cannot skip the tests
    verdict, reason = False, ""
    try:
        if job["mode"] != "tests":
            raise ValueError(f"unknown sandbox mode {job['mode']!r}")
        builtins_copy = dict(vars(builtins))
        # the judge rewrote the tests (every compared value through __srpo_plain__): no class of
        # the harness's with methods exists here for a program to find through __subclasses__
        tests_code = compile(job["tests"], "tests.py", "exec", optimize=0)  # asserts stay, whatever the flags
        candidate_code = compile(job["candidate"], "candidate.py", "exec")
        snapshot = _snapshot(_WATCHED + ("__main__",), _trust_stdlib())
        _hide_harness()
        _install_audit_hook(os.getcwd(), job["contained"], job_dir=job_dir,
                            answer_paths=tuple(job.get("answer_paths", ())))
        _deny_signal_handlers()
        cand_ns = {"__name__": "__candidate__", "__builtins__": builtins}
        run_code(candidate_code, cand_ns)
        # only the names the tests take from the program (never a builtin it shadows, unless the
        # benchmark's own solution defines that name too)
        test_ns = {k: (_guarded(v, snapshot)
                       if isinstance(v, types.FunctionType) and v.__module__ == "__candidate__" else v)
                   for k, v in cand_ns.items() if k in job["names"]}
        test_ns.update({"__name__": "__tests__", "__builtins__": builtins_copy, "__srpo_plain__": plain})
        run_code(tests_code, test_ns)
        _check_unchanged(snapshot)
        verdict = True
    except BaseException as e:  # noqa: BLE001  any way out of the tests is a failure
        verdict, reason = False, type(e).__name__  # never str(e): it could run the program's code
    if verdict:
        write(out, b"\n" + token + b"\n")
    else:
        write(out, f"\nsrpo-sandbox: failed ({reason})\n".encode())
    exit_now(0)


if __name__ == "__main__":
    main()
