"""One cgroup per sandboxed job: its CPU, memory and processes counted as one, whatever it starts.

Without it a program that starts 16 busy processes takes 16 shares of the CPU, and a correct
program judged beside it misses its wall-clock limit. In its own group, a job gets at most one
core (``cpu.cfs_quota_us`` / ``cpu.max``) and the same weight as any other job however many
processes it runs; its memory is capped as a whole (the rlimit caps each process only); its
processes are capped by the kernel too. The groups live under one parent, ``srpo_judge``, whose
CPU weight is ten times the default, so judge jobs are not starved by other work on the machine
(the test suite, a trainer) either: each is capped at one core, so they cannot starve it.

Both cgroup versions: v2 (one hierarchy; needs controllers the evaluator's cgroup can delegate,
true at the root or under ``systemd-run --scope -p Delegate=yes``) and v1 (a hierarchy per
controller, as on this project's CI machine). Where neither can be written (no root, a read-only
``/sys/fs/cgroup``), jobs run without (``available()`` is None, warned once; results record
``cgroup: none``). ``SRPO_CGROUP=off`` turns it off.

The candidate joins its group before bubblewrap starts (``join_command``): every process it
starts inherits it. ``JobGroup.remove`` kills what is left and removes the group.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)
CONTROLLERS = ("cpu", "memory", "pids")
PARENT = "srpo_judge"
PERIOD_US = 100_000
PARENT_WEIGHT_V1, PARENT_WEIGHT_V2 = 4_096, 400  # four times the default shares / weight
# joins every group named before "--" (writing 0 moves the writer), then runs the command
_JOIN = 'while [ "$1" != -- ]; do echo 0 > "$1/cgroup.procs" || exit 125; shift; done; shift; exec "$@"'


@dataclass(frozen=True)
class Hierarchy:
    version: int  # 1 or 2
    parents: tuple  # v1: the srpo_judge directory of each controller; v2: one directory

    def describe(self) -> str:
        return f"v{self.version}"


def _mounts() -> list[tuple[str, str, str, str]]:
    """(root, mount point, file system type, super options) of every cgroup mount."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
                out.append((fields[3], fields[4], tail[0], tail[2]))
    return out


def _own_paths() -> dict:
    """The cgroup this process is in: {controller: path} (v1) and {"": path} (v2)."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(",") if names else [""]:
                out[name] = path
    return out


def _inside(mount_root: str, mount_point: str, path: str) -> str:
    rel = path[len(mount_root):] if mount_root != "/" and path.startswith(mount_root) else path
    return os.path.join(mount_point, rel.lstrip("/"))


def _write(path: str, value) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def _probe_v1(mounts, own) -> Hierarchy | None:
    parents = []
    for controller in CONTROLLERS:
        found = [m for m in mounts if m[2] == "cgroup" and controller in m[3].split(",")]
        if not found or controller not in own:
            return None
        root, point, _, _ = found[0]
        parent = os.path.join(_inside(root, point, own[controller]), PARENT)
        os.makedirs(parent, exist_ok=True)
        if controller == "cpu":
            _write(os.path.join(parent, "cpu.shares"), PARENT_WEIGHT_V1)
        parents.append(parent)
    return Hierarchy(1, tuple(parents))


def _probe_v2(mounts, own) -> Hierarchy | None:
    found = [m for m in mounts if m[2] == "cgroup2"]
    if not found or "" not in own:
        return None
    root, point, _, _ = found[0]
    base = _inside(root, point, own[""])
    with open(os.path.join(base, "cgroup.controllers")) as f:
        if not set(CONTROLLERS) <= set(f.read().split()):
            return None
    parent = os.path.join(base, PARENT)
    os.makedirs(parent, exist_ok=True)
    enable = " ".join(f"+{c}" for c in CONTROLLERS)
    _write(os.path.join(base, "cgroup.subtree_control"), enable)  # fails where base holds processes
    _write(os.path.join(parent, "cgroup.subtree_control"), enable)
    _write(os.path.join(parent, "cpu.weight"), PARENT_WEIGHT_V2)
    return Hierarchy(2, (parent,))


_PROBED = False
_HIERARCHY: Hierarchy | None = None


def available() -> Hierarchy | None:
    """Where job groups can be made here (probed once per process), or None."""
    global _PROBED, _HIERARCHY
    if not _PROBED:
        _PROBED = True
        why = "SRPO_CGROUP=off" if os.environ.get("SRPO_CGROUP") == "off" else ""
        if not why:
            try:
                mounts, own = _mounts(), _own_paths()
                _HIERARCHY = _probe_v2(mounts, own) or _probe_v1(mounts, own)
                why = "" if _HIERARCHY else "no cgroup hierarchy with the cpu, memory and pids controllers"
            except OSError as e:
                why = f"cgroups cannot be written here ({e.strerror or e})"
        if why:
            log.warning("sandboxed code jobs share the CPU and memory without per-job limits: %s "
                        "(docs/judge.md: The code sandbox)", why)
    return _HIERARCHY


def describe() -> str:
    """``v1``, ``v2`` or ``none``: for provenance records."""
    h = available()
    return h.describe() if h else "none"


class JobGroup:
    """The cgroup of one job, made with its limits (``cpus`` cores, ``memory_bytes``, ``pids``)."""

    def __init__(self, hierarchy: Hierarchy, cpus: float, memory_bytes: int, pids: int):
        self.hierarchy = hierarchy
        name = f"job-{os.getpid()}-{secrets.token_hex(4)}"
        self.paths = [os.path.join(parent, name) for parent in hierarchy.parents]
        _remove_stale(hierarchy)
        quota = max(1000, int(cpus * PERIOD_US))
        try:
            for path in self.paths:
                os.mkdir(path)
            if hierarchy.version == 2:
                (path,) = self.paths
                _write(os.path.join(path, "cpu.max"), f"{quota} {PERIOD_US}")
                _write(os.path.join(path, "memory.max"), memory_bytes)
                if os.path.exists(os.path.join(path, "memory.swap.max")):
                    _write(os.path.join(path, "memory.swap.max"), 0)
                _write(os.path.join(path, "pids.max"), pids)
            else:
                cpu, memory, pid = self.paths
                _write(os.path.join(cpu, "cpu.cfs_period_us"), PERIOD_US)
                _write(os.path.join(cpu, "cpu.cfs_quota_us"), quota)
                _write(os.path.join(memory, "memory.limit_in_bytes"), memory_bytes)
                if os.path.exists(os.path.join(memory, "memory.memsw.limit_in_bytes")):
                    _write(os.path.join(memory, "memory.memsw.limit_in_bytes"), memory_bytes)
                _write(os.path.join(pid, "pids.max"), pids)
        except OSError:
            self.remove()
            raise

    def join_command(self) -> list[str]:
        """A prefix that moves the command into this group before it runs."""
        return ["/bin/sh", "-c", _JOIN, "sh", *self.paths, "--"]

    def remove(self, timeout_s: float = 5.0) -> None:
        """Kill what is left in the group and remove it (the kernel refuses while it holds a process)."""
        _remove(self.paths, self.hierarchy.version, timeout_s)


def _pids(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _remove(paths: list, version: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for path in paths:
        if not os.path.isdir(path):
            continue
        while True:
            if version == 2 and os.path.exists(os.path.join(path, "cgroup.kill")):
                try:
                    _write(os.path.join(path, "cgroup.kill"), 1)
                except OSError:
                    pass
            for pid in _pids(path):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    log.warning("could not remove the job cgroup %s (still busy)", path)
                    break
                time.sleep(0.01)


def _remove_stale(hierarchy: Hierarchy) -> None:
    """Groups left by a judge that was killed before it removed them (its pid is gone)."""
    for parent in hierarchy.parents:
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            parts = name.split("-")
            if len(parts) == 3 and parts[0] == "job" and parts[1].isdigit() and not _alive(int(parts[1])):
                _remove([os.path.join(parent, name)], hierarchy.version, 1.0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
