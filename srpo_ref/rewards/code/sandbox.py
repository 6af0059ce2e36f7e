"""Run untrusted, model-written programs: the processes behind the code rewards.

Three processes per job (what each can see is in the docs/judge.md, "The code judge"):

1. **The evaluator** (trainer or ``evals``) calls ``run_job``: it starts the judge, hands it the
   job, and reads one verdict line. It never runs candidate code or benchmark tests.
2. **The judge** (``python -m srpo_ref.rewards.code``, trusted code only) starts the candidate process,
   runs the benchmark's own tests with the candidate's functions bound to proxies, compares
   plain values, ends the candidate and reaps every process it left (it is a child subreaper).
3. **The candidate process** (``jail/harness.py``, mode ``serve``) in the sandbox: it runs
   the program and answers calls with plain values. For tests the judge cannot serve, the
   in-process fallback (mode ``tests``) runs the tests there instead.

The sandbox (``backend="bwrap"``): bubblewrap gives the program a read-only view of the system,
one small writable tmpfs for ``/tmp`` and ``/dev/shm`` (capped in bytes and, where a private
mount namespace can be made, in inodes), no network, its own PID, IPC and UTS namespaces (it
cannot see or signal any process outside; when the sandbox ends, every process in it ends), a
fresh session, and a throwaway user id when we run as root (so ``RLIMIT_NPROC`` counts its
processes). rlimits cap CPU seconds, address space, file size and process count. Where
bubblewrap is missing, ``backend="guard"``: the same rlimits, ``unshare --net`` when it works,
and the harness's audit hook also refuses writes outside the working directory, sockets and
process creation. Results record which backend ran; a warning is logged once when it is
``guard``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from srpo_ref.rewards.code import cgroups
from srpo_ref.rewards.code.jail import wire

log = logging.getLogger(__name__)
HARNESS = Path(__file__).with_name("jail") / "harness.py"
WIRE = Path(__file__).with_name("jail") / "wire.py"
PROJECT_ROOT = Path(__file__).resolve().parents[3]  # the checkout: its work/ holds other samples and their scores
# Paths that hold answers, handed in by whoever knows them (the task registry hides its data
# directory at import): masked in every sandbox.
_HIDDEN: list[Path] = []


def hide(*paths) -> None:
    """Mask ``paths`` (answer keys: a benchmark mirror, say) in every sandbox started from now on."""
    for p in paths:
        if Path(p) not in _HIDDEN:
            _HIDDEN.append(Path(p))


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0  # wall clock for the whole job, start-up included
    memory_mb: int = 1024  # address space per process
    nproc: int = 16  # processes and threads (each with its own address-space cap)
    output_mb: int = 4  # stdout+stderr, and any one file written
    scratch_mb: int = 64  # the writable tmpfs (bubblewrap only)
    scratch_inodes: int = 4096  # files and directories in it (bubblewrap as root only)
    job_cpus: float = 1.0  # cores for the whole job, whatever it starts (its cgroup, where there is one)
    job_memory_mb: int = 2048  # memory for the whole job (its cgroup)


@dataclass
class SandboxResult:
    passed: bool
    status: str  # passed | failed | timeout | error
    backend: str  # bwrap | guard
    output_tail: str = ""
    judge: str = ""  # proxy | in_process: where the tests ran (docs/judge.md: The code judge)
    outputs: dict | None = None  # judge="record": the solution's outputs (wire values) and times


JUDGE_BACKSTOP_S = 15.0
_BACKEND: str | None = None
_INODE_CAP: bool | None = None


def backend() -> str:
    """``bwrap`` when bubblewrap can start a sandbox here, else ``guard`` (warned once).
    ``SRPO_SANDBOX=guard`` forces the fallback (tests use it). The probe runs in a judge
    process, which reaps what bubblewrap leaves."""
    global _BACKEND, _INODE_CAP
    forced = os.environ.get("SRPO_SANDBOX")
    if forced in ("bwrap", "guard") and "SRPO_SANDBOX_INODE_CAP" in os.environ:  # a judge: the evaluator probed
        _INODE_CAP = os.environ["SRPO_SANDBOX_INODE_CAP"] == "1"
        return forced
    if _BACKEND is None:
        try:
            out = subprocess.run([sys.executable, "-E", "-m", "srpo_ref.rewards.code", "--probe"], capture_output=True,
                                 timeout=60, env=judge_environment(), cwd=PROJECT_ROOT)
            probe = json.loads(out.stdout.decode().strip().splitlines()[-1])
        except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as e:
            probe = {"backend": "guard", "inode_cap": False, "why": f"probe failed: {e}"}
        _BACKEND, _INODE_CAP = probe["backend"], probe["inode_cap"]
        if probe.get("why"):
            log.warning("%s", probe["why"])
        if _BACKEND == "guard":
            log.warning("code rewards run WITHOUT bubblewrap (in-process guard only); install the 'bubblewrap' "
                        "package for kernel isolation (docs/judge.md: The code sandbox)")
        cgroups.available()  # probed (and warned about) once here too, not only in the judges
    if forced in ("bwrap", "guard"):
        return forced
    return _BACKEND


def probe() -> dict:
    """Which sandbox works here (run inside the judge process, see ``backend``)."""
    if not (shutil.which("bwrap") and shutil.which("prlimit")):
        return {"backend": "guard", "inode_cap": False, "why": "bubblewrap or prlimit is not installed"}
    why = ""
    for inode_cap in (True, False):
        if inode_cap and os.geteuid() != 0:
            continue
        with tempfile.TemporaryDirectory(prefix="srpo_job_", dir=_jobs_base()) as job_dir:
            os.chmod(job_dir, 0o755)
            cmd = _bwrap_command(job_dir, 61000, Limits(), inode_cap) + ["/bin/true"]
            try:
                done = subprocess.run(cmd, capture_output=True, timeout=20)
            except (OSError, subprocess.TimeoutExpired) as e:
                why = f"bubblewrap probe failed: {e}"
                continue
            if done.returncode == 0:
                note = "" if inode_cap else ("the sandbox's tmpfs is capped in bytes but not in inodes "
                                             "(no private mount namespace here)")
                return {"backend": "bwrap", "inode_cap": inode_cap, "why": note}
            why = f"bubblewrap is installed but cannot start a sandbox here ({done.stderr.decode()[-300:]})"
    return {"backend": "guard", "inode_cap": False, "why": why}


def _jobs_base() -> str:
    """Where job directories are made: one private folder, hidden inside every sandbox."""
    base = os.path.join(tempfile.gettempdir(), "srpo_sandbox")
    os.makedirs(base, mode=0o700, exist_ok=True)
    return base


# Mount a tmpfs capped in bytes and inodes on the job's scratch directory, in a private mount
# namespace (gone with the sandbox), then run bubblewrap, which binds it as /tmp and /dev/shm.
_MOUNT_SCRATCH = 'mount -t tmpfs -o "$1" srpo-scratch "$2" && mkdir -m 1777 "$2/shm" && shift 2 && exec "$@"'


def _bwrap_command(job_dir: str, uid: int, limits: Limits, inode_cap: bool) -> list[str]:
    scratch = os.path.join(job_dir, "scratch")
    cmd = []
    if inode_cap:
        os.makedirs(scratch, exist_ok=True)
        opts = f"size={limits.scratch_mb << 20},nr_inodes={limits.scratch_inodes},mode=1777"
        cmd = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _MOUNT_SCRATCH, "sh", opts,
               scratch]
    # An allowlist, not the host's root: the system's programs and libraries, /etc, and the
    # interpreter's own directories. Nothing else of the host (the benchmark mirror, caches,
    # checkouts with their samples, under whatever bind mount) exists in the sandbox.
    cmd += ["bwrap", "--dev", "/dev", "--proc", "/proc"]
    # the writable scratch first: an interpreter under /tmp is bound over it below
    if inode_cap:
        cmd += ["--bind", scratch, "/tmp", "--bind", os.path.join(scratch, "shm"), "/dev/shm"]
    else:
        cmd += ["--perms", "01777", "--size", str(16 << 20), "--tmpfs", "/dev/shm",
                "--perms", "01777", "--size", str(limits.scratch_mb << 20), "--tmpfs", "/tmp"]
    cmd += ["--ro-bind", "/usr", "/usr", "--ro-bind-try", "/etc", "/etc"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    bound = ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
    interpreter = (sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable)),
                   os.path.dirname(sys.executable))
    binds = [(os.path.realpath(p), os.path.realpath(p)) for p in interpreter]
    binds += [(os.path.realpath(p),
               os.path.abspath(p)) for p in interpreter]  # as named, when reached through a symlink
    made = set()
    for src, dest in sorted(set(binds), key=lambda b: b[1]):
        if any(dest == b or dest.startswith(b + os.sep) for b in bound):
            continue
        # the directories above it, traversable by the throwaway uid (bubblewrap would copy a
        # private parent's mode: /root is 0700)
        parts = dest.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/" + "/".join(parts[:i])
            if parent not in made and not any(parent == b or parent.startswith(b + os.sep) for b in bound):
                cmd += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        cmd += ["--ro-bind", src, dest]
        bound.append(dest)
    for path in answer_paths():  # answer keys inside what is bound (a mirror under /usr/share, say)
        if any(path == b or path.startswith(b + os.sep) for b in bound):
            cmd += ["--tmpfs", path] if os.path.isdir(path) else ["--ro-bind", "/dev/null", path]
    cmd += ["--ro-bind", job_dir, "/tmp/.job", "--perms", "0777", "--dir", "/tmp/work", "--chdir", "/tmp/work",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp/work", "--setenv", "TMPDIR", "/tmp/work",
            "--setenv", "PYTHONHASHSEED", "0", "--setenv", "OMP_NUM_THREADS", "1", "--setenv", "OPENBLAS_NUM_THREADS",
            "1"]
    if os.geteuid() == 0:
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
                "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    else:
        cmd += ["--unshare-user", "--"]
    return cmd


def answer_paths() -> list[str]:
    """Host paths that may hold expected answers, masked in every sandbox (empty there): the
    benchmark mirror, the project checkout (its ``work/`` holds other samples and their scores),
    the Hugging Face, evalplus and XDG caches, evalplus's override files, and any path in
    ``$SRPO_SANDBOX_HIDE`` (``os.pathsep``-separated)."""
    home = Path.home()
    paths = [*_HIDDEN, PROJECT_ROOT, home / ".cache"]
    for var in ("XDG_CACHE_HOME", "HF_HOME", "HF_DATASETS_CACHE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE",
                "TRANSFORMERS_CACHE", "HUMANEVAL_OVERRIDE_PATH", "MBPP_OVERRIDE_PATH"):
        if os.environ.get(var):
            paths.append(Path(os.environ[var]))
    paths += [Path(p) for p in os.environ.get("SRPO_SANDBOX_HIDE", "").split(os.pathsep) if p]
    out = []
    for p in paths:
        real = os.path.realpath(p)
        if real not in out and real != "/" and os.path.exists(real):
            out.append(real)
    return out


def _prlimit(limits: Limits) -> list[str]:
    cpu = max(1, int(limits.timeout_s) + 1)
    mem = limits.memory_mb << 20
    fsize = limits.output_mb << 20
    return ["prlimit", f"--cpu={cpu}", f"--as={mem}", f"--fsize={fsize}", f"--nproc={limits.nproc}", "--core=0"]


class Candidate:
    """The candidate process in the sandbox (started by the judge). Its job (program, mode, and
    for mode ``tests`` the tests and the token) is the first frame on its stdin; then
    ``proc.stdin`` and ``proc.stdout`` are its request and reply pipes (mode ``serve``) or the
    verdict's way out (mode ``tests``); everything it prints goes to ``output()``."""

    def __init__(self, job: dict, limits: Limits):
        self.kind = backend()
        self.limits = limits
        self.uid = None
        parent = os.environ.get("SRPO_JOB_PARENT") or _jobs_base()  # run_job's folder for this job, removed by it
        self._job_dir = tempfile.TemporaryDirectory(prefix="srpo_job_", dir=parent)
        self._work_dir = tempfile.TemporaryDirectory(prefix="srpo_work_", dir=parent)
        self._out = tempfile.TemporaryFile(prefix="srpo_out_")
        job_dir = self._job_dir.name
        job = {**job, "contained": self.kind == "bwrap", "memory_bytes": limits.memory_mb << 20,
               "answer_paths": answer_paths()}
        shutil.copy(HARNESS, os.path.join(job_dir, "harness.py"))
        shutil.copy(WIRE, os.path.join(job_dir, "wire.py"))
        os.chmod(job_dir, 0o755)
        if self.kind == "bwrap":
            self.uid = 200_000 + secrets.randbelow(1 << 20)  # one per run: RLIMIT_NPROC is counted per uid
            cmd = _prlimit(limits) + _bwrap_command(job_dir, self.uid, limits, bool(_INODE_CAP)) + [
                sys.executable, "-I", "/tmp/.job/harness.py", "/tmp/.job"]
            cwd, env = "/", {"PATH": "/usr/bin:/bin"}
        else:
            cmd = _prlimit(limits) + _unshare_net() + [sys.executable, "-I", os.path.join(job_dir, "harness.py"),
                                                       job_dir]
            cwd = self._work_dir.name
            env = {"PATH": "/usr/bin:/bin", "HOME": cwd, "TMPDIR": cwd, "PYTHONHASHSEED": "0",
                   "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        self.group = _job_group(limits)
        if self.group is not None:
            cmd = self.group.join_command() + cmd
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._out, start_new_session=True)
        # the job is the first frame on its stdin (the judge sends it): no job file to read
        self.job_frame = wire.pack(job)

    def output(self, limit: int = 2000) -> str:
        self._out.seek(0, os.SEEK_END)
        size = self._out.tell()
        self._out.seek(max(0, size - limit))
        return self._out.read().decode(errors="replace")

    def stop(self, grace_s: float = 0.5) -> None:
        """End the process: EOF on its requests first (a served program then exits by itself),
        then SIGKILL to what is left, every process under its uid, and the pipes closed."""
        for pipe in (self.proc.stdin,):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        if self.uid is not None and os.geteuid() == 0:
            _reap_uid(self.uid)
        if self.group is not None:
            self.group.remove()
        self.proc.stdout.close()

    def cleanup(self) -> None:
        self._out.close()
        self._job_dir.cleanup()
        self._work_dir.cleanup()


def _job_group(limits: Limits) -> cgroups.JobGroup | None:
    """The job's own cgroup (``cgroups``), or None where there is none."""
    hierarchy = cgroups.available()
    if hierarchy is None:
        return None
    try:
        memory = max(limits.job_memory_mb, limits.memory_mb) << 20  # never below one process's own cap
        return cgroups.JobGroup(hierarchy, limits.job_cpus, memory, limits.nproc + 8)
    except OSError as e:
        log.warning("could not make a cgroup for a code job (%s): it runs without one", e)
        return None


def run_job(job: dict, limits: Limits = Limits()) -> SandboxResult:
    """Judge one job (``srpo_ref.rewards.code.judge``) in a judge process and report whether it passed.
    The judge keeps its own deadline; this wait is only the backstop."""
    kind = backend()
    with tempfile.TemporaryDirectory(prefix="srpo_run_",
                                     dir=_jobs_base()) as parent:  # gone even if the judge is killed
        os.chmod(parent, 0o755)
        return _run_judge(job, limits, kind, parent)


# What the judge inherits from the evaluator's environment: an allowlist. Everything else, the
# ``PYTHON*`` variables above all (``PYTHONOPTIMIZE`` would strip the tests' asserts), stays out;
# ``-E`` makes the interpreter ignore any that slip through.
_JUDGE_ENV = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "SRPO_CGROUP")


def judge_environment(kind: str = "guard", parent: str = "") -> dict:
    """The judge process's whole environment (see ``_JUDGE_ENV``)."""
    env = {k: os.environ[k] for k in _JUDGE_ENV if k in os.environ}
    env.update({"SRPO_SANDBOX": kind, "SRPO_SANDBOX_INODE_CAP": "1" if _INODE_CAP else "0", "SRPO_JOB_PARENT": parent,
                "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return env


def _run_judge(job: dict, limits: Limits, kind: str, parent: str) -> SandboxResult:
    timeout_s = job.get("timeout_s", limits.timeout_s)
    request = {"job": job, "limits": limits, "answer_paths": answer_paths()}  # the evaluator's view of them
    try:
        # -E: no PYTHON* variable reaches it; the checkout's root as the working directory, so
        # the package imports even where only PYTHONPATH made it importable here
        proc = subprocess.Popen([sys.executable, "-E", "-m", "srpo_ref.rewards.code"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                env=judge_environment(kind, parent), cwd=PROJECT_ROOT)
    except OSError as e:
        return SandboxResult(False, "error", kind, f"could not start the judge: {e}")
    try:
        # the judge's own alarm fires at timeout_s + 10 (judge.main); this backstop ends a judge
        # stuck where no alarm reaches (one long C call)
        out, err = proc.communicate(pickle.dumps(request), timeout=timeout_s + JUDGE_BACKSTOP_S)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.communicate()
        return SandboxResult(False, "timeout", kind, "the judge did not finish")
    try:
        verdict = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return SandboxResult(False, "error", kind,
                             "the judge wrote no verdict: " + err.decode(errors="replace")[-1500:])
    return SandboxResult(verdict["passed"], verdict["status"], kind, verdict.get("output_tail", ""),
                         verdict.get("judge", ""),
                         verdict.get("outputs"))


def reap_children(deadline_s: float = 5.0) -> None:
    """Wait for every child of this process (a subreaper: orphans of its descendants too)."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() > end:
                return
            time.sleep(0.01)


def _reap_uid(uid: int, timeout_s: float = 5.0) -> None:
    """Kill whatever still runs under the run's throwaway uid and wait until it is gone: the
    kernel tears a PID namespace down asynchronously, so members can outlive bwrap briefly."""
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
                continue  # a zombie runs nothing; the judge (a subreaper) reaps it
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
