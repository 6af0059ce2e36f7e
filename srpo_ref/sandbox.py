"""Run untrusted, model-written programs: the code sandbox behind the code rewards.

Two layers (what each guarantees is in the README, "The code sandbox"):

1. **Isolation by the kernel** (``backend="bwrap"``): bubblewrap gives the program a read-only
   view of the system, one small writable tmpfs (``/tmp``, size-capped), no network, its own PID,
   IPC and UTS namespaces (it cannot see or signal any process outside; when the sandbox ends,
   every process in it ends), a fresh session, and a throwaway user id when we run as root (so
   ``RLIMIT_NPROC`` counts its processes). rlimits cap CPU seconds, address space, file size
   (which also caps the combined stdout+stderr file), and process count. Where bubblewrap is
   missing, ``backend="guard"``: the same rlimits, ``unshare --net`` when it works, a new session
   killed as a whole, and the harness's audit hook also refuses writes outside the working
   directory, sockets and process creation. Results record which backend ran; a warning is
   logged once when it is ``guard``.
2. **Grading inside the process** (``sandbox_harness.py``): a pass is the random token written
   back after every test passed, never an exit status; compared values must be plain builtin
   values; an audit hook blocks introspection that could read the token or tamper with tests.

``run_job`` is the one entry point; ``srpo_ref.rewards`` builds the jobs.
"""

from __future__ import annotations

import logging
import os
import pickle
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
HARNESS = Path(__file__).with_name("sandbox_harness.py")


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0  # wall clock for the whole program, start-up included
    memory_mb: int = 1024  # address space per process
    nproc: int = 32  # processes and threads
    output_mb: int = 4  # stdout+stderr, and any one file written
    scratch_mb: int = 64  # the writable tmpfs (bubblewrap only)


@dataclass
class SandboxResult:
    passed: bool
    status: str  # passed | failed | timeout | error
    backend: str  # bwrap | guard
    output_tail: str = ""


_BACKEND: str | None = None


def backend() -> str:
    """``bwrap`` when bubblewrap can start a sandbox here, else ``guard`` (warned once).
    ``SRPO_SANDBOX=guard`` forces the fallback (tests use it)."""
    global _BACKEND
    forced = os.environ.get("SRPO_SANDBOX")
    if forced in ("bwrap", "guard"):
        return forced
    if _BACKEND is None:
        _BACKEND = "guard"
        if shutil.which("bwrap") and shutil.which("prlimit"):
            try:
                probe = subprocess.run(_bwrap_prefix(tempfile.gettempdir(), 61000) + ["/bin/true"],
                                       capture_output=True, timeout=20)
                if probe.returncode == 0:
                    _BACKEND = "bwrap"
                else:
                    log.warning("bubblewrap is installed but cannot start a sandbox here (%s)", probe.stderr.decode()[-300:])
            except (OSError, subprocess.TimeoutExpired) as e:
                log.warning("bubblewrap probe failed: %s", e)
        if _BACKEND == "guard":
            log.warning("code rewards run WITHOUT bubblewrap (in-process guard only); install the 'bubblewrap' "
                        "package for kernel isolation (README: The code sandbox)")
    return _BACKEND


def _hidden_ancestors(path: str) -> list[str]:
    """Ancestors of ``path`` that other users cannot traverse (e.g. /root holding pyenv)."""
    out, p = [], Path(path).resolve()
    for anc in reversed(p.parents):
        if str(anc) != "/" and not (anc.stat().st_mode & 0o001):
            out.append(str(anc))
    return out


def _jobs_base() -> str:
    """Where job directories are made: one private folder, hidden inside every sandbox."""
    base = os.path.join(tempfile.gettempdir(), "srpo_sandbox")
    os.makedirs(base, mode=0o700, exist_ok=True)
    return base


def _bwrap_prefix(job_dir: str, uid: int) -> list[str]:
    cmd = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    base = os.path.realpath(_jobs_base())
    if not base.startswith("/tmp/"):  # /tmp is replaced by a tmpfs below; elsewhere hide it here
        cmd += ["--tmpfs", base]
    if os.geteuid() == 0:
        # The interpreter must stay readable for the throwaway uid: where an ancestor directory
        # is private (e.g. /root holding pyenv), put an empty tmpfs over it and bind the
        # interpreter's directories back, read-only.
        hidden, binds = set(), set()
        for path in (sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))):
            path = os.path.realpath(path)
            ancestors = _hidden_ancestors(path)
            if ancestors:
                hidden.add(ancestors[0])
                binds.add(path)
        for d in sorted(hidden):
            cmd += ["--tmpfs", d]
        for d in sorted(binds):
            cmd += ["--ro-bind", d, d]
    cmd += ["--perms", "01777", "--size", str(16 << 20), "--tmpfs", "/dev/shm",
            "--perms", "01777", "--size", str(64 << 20), "--tmpfs", "/tmp",
            "--ro-bind", job_dir, "/tmp/.job", "--perms", "0777", "--dir", "/tmp/work", "--chdir", "/tmp/work",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp/work", "--setenv", "TMPDIR", "/tmp/work",
            "--setenv", "PYTHONHASHSEED", "0", "--setenv", "OMP_NUM_THREADS", "1", "--setenv", "OPENBLAS_NUM_THREADS", "1"]
    if os.geteuid() == 0:
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
                "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    else:
        cmd += ["--unshare-user", "--"]
    return cmd


def _prlimit(limits: Limits) -> list[str]:
    cpu = max(1, int(limits.timeout_s) + 1)
    mem = limits.memory_mb << 20
    fsize = limits.output_mb << 20
    return ["prlimit", f"--cpu={cpu}", f"--as={mem}", f"--fsize={fsize}", f"--nproc={limits.nproc}", "--core=0"]


def run_job(job: dict, limits: Limits = Limits()) -> SandboxResult:
    """Run one harness job (see ``sandbox_harness.py``) and report whether it passed."""
    kind = backend()
    token = secrets.token_hex(16).encode()
    with tempfile.TemporaryDirectory(prefix="srpo_job_", dir=_jobs_base()) as job_dir, \
            tempfile.TemporaryDirectory(prefix="srpo_work_") as work_dir, \
            tempfile.TemporaryFile(prefix="srpo_out_") as out:
        job = {**job, "contained": kind == "bwrap", "memory_bytes": limits.memory_mb << 20}
        with open(os.path.join(job_dir, "job.pkl"), "wb") as f:
            pickle.dump(job, f)
        shutil.copy(HARNESS, os.path.join(job_dir, "harness.py"))
        os.chmod(job_dir, 0o755)
        if kind == "bwrap":
            uid = 200_000 + secrets.randbelow(1 << 20)  # one per run: RLIMIT_NPROC is counted per uid
            cmd = _prlimit(limits) + _bwrap_prefix(job_dir, uid) + [sys.executable, "-I", "/tmp/.job/harness.py", "/tmp/.job"]
            cwd, env = "/", {"PATH": "/usr/bin:/bin"}
        else:
            cmd = _prlimit(limits) + _unshare_net() + [sys.executable, "-I", os.path.join(job_dir, "harness.py"), job_dir]
            cwd = work_dir
            env = {"PATH": "/usr/bin:/bin", "HOME": work_dir, "TMPDIR": work_dir, "PYTHONHASHSEED": "0",
                   "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except OSError as e:
            return SandboxResult(False, "error", kind, f"could not start the sandbox: {e}")
        status = "failed"
        try:
            try:
                proc.stdin.write(token + b"\n")
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            proc.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            status = "timeout"
        finally:
            _kill_group(proc)
            if kind == "bwrap" and os.geteuid() == 0:
                _reap_uid(uid)
        out.seek(0, os.SEEK_END)
        size = out.tell()
        out.seek(max(0, size - 4096))
        tail = out.read().decode(errors="replace")
    lines = [line for line in tail.splitlines() if line.strip()]
    if status != "timeout" and lines and lines[-1].strip() == token.decode():
        return SandboxResult(True, "passed", kind, "")
    return SandboxResult(False, status, kind, tail[-2000:])


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _reap_uid(uid: int, timeout_s: float = 5.0) -> None:
    """Kill whatever still runs under the run's throwaway uid and wait until it is gone: the
    kernel tears a PID namespace down asynchronously, so members can outlive bwrap briefly."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        alive = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:
                continue
            if fields.get("State", "").split()[:1] == ["Z"]:
                continue  # a zombie runs nothing; its parent (or init) reaps it
            if str(uid) in fields.get("Uid", "").split():
                alive.append(int(pid))
        if not alive or time.monotonic() > deadline:
            return
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)


_UNSHARE: list[str] | None = None


def _unshare_net() -> list[str]:
    """``unshare --net`` (no network) for the guard backend, when this machine allows it."""
    global _UNSHARE
    if _UNSHARE is None:
        cmd = ["unshare", "--net", "--map-root-user"] if os.geteuid() != 0 else ["unshare", "--net"]
        try:
            ok = subprocess.run(cmd + ["true"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        _UNSHARE = cmd if ok else []
    return _UNSHARE
