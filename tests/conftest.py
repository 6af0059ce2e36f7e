import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SRPO_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from srpo_ref.models.tiny import train_tokenizer

    return train_tokenizer()


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A tiny base checkpoint with a short warm-up (enough for the code paths, not for skill)."""
    from srpo_ref.models.tiny import warmup

    out = tmp_path_factory.mktemp("tiny_base")
    warmup(out, steps=40, batch_size=32, eval_accuracy=False)
    return out


def sandbox_leftovers() -> list[str]:
    """Processes this test process left behind: live ones descending from it (judges, sandboxed
    programs, anything under their throwaway uids) and zombies it or PID 1 holds. Other
    processes on the machine (a concurrent pipeline run) do not count."""
    import os
    import subprocess

    rows = [line.split(None, 4) for line in
            subprocess.run(["ps", "-eo", "pid,ppid,uid,stat,args"], capture_output=True,
                           text=True).stdout.splitlines()[1:]]
    parent = {r[0]: r[1] for r in rows}
    me = str(os.getpid())

    def mine(pid: str) -> bool:
        seen = set()
        while pid in parent and pid not in seen:
            seen.add(pid)
            pid = parent[pid]
            if pid == me:
                return True
        return False

    out = []
    for pid, ppid, uid, stat, args in [r + [""] * (5 - len(r)) for r in rows]:
        if stat.startswith("Z"):
            if ppid in (me, "1"):
                out.append(f"{pid} {ppid} {uid} {stat} {args}")
        elif mine(pid) and ("harness.py" in args or "srpo_ref.rewards.code.judge" in args or int(uid) >= 200_000):
            out.append(f"{pid} {ppid} {uid} {stat} {args}")
    return out
