"""Where a benchmark's rows come from: the local mirror or the upstream source, read and checked.

Data comes from a local directory (``data_dir`` argument, else ``$SRPO_DATA_DIR``, else the
``shared/data`` mirror beside the checkout) with the layout of that mirror, or, when a file is
missing and the machine is online (``HF_HUB_OFFLINE`` unset), from its upstream source. Row
counts are checked against the published split sizes. The data directory is masked in every
code sandbox (``srpo_ref.rewards.code.sandbox.hide``): a program must not read its answers.
"""

from __future__ import annotations

import gzip
import json
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from srpo_ref import rewards
from srpo_ref.rewards.code import sandbox

@dataclass
class Example:
    id: str
    messages: list[dict]  # system (optional) + user
    gold: object  # what the reward compares against (letter, tool-call JSON, answer, test code)
    kind: str  # reward kind in srpo_ref.rewards.REWARDS
    meta: dict = field(default_factory=dict)

    def score(self, response: str, grader: str = rewards.DEFAULT_GRADER) -> float:
        return rewards.score(self.kind, response, self.gold, grader)


class DataNotFound(FileNotFoundError):
    """A benchmark file is neither in the data directory nor fetchable."""


class DataError(ValueError):
    """A benchmark file is empty or malformed, or a row lacks a field (the message names the
    file and row)."""


def default_data_dir() -> Path:
    env = os.environ.get("SRPO_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False") or os.environ.get(
        "HF_DATASETS_OFFLINE", "0"
    ) not in ("0", "", "false", "False")


def _read_rows(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    text = text.strip()
    if not text:
        raise DataError(f"{path}: the data file is empty")
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: malformed JSON ({e})") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: malformed JSON line ({e})") from None
    return rows


def _locate(rel: str, data_dir: str | Path | None, upstream: str | Callable | None) -> list[dict]:
    """Rows of ``rel`` under the data directory, else from ``upstream`` when online."""
    base = Path(data_dir) if data_dir else default_data_dir()
    sandbox.hide(base)  # a mirror given here holds answers too: masked in every later sandbox
    path = base / rel
    if path.exists():
        return _read_rows(path)
    if upstream is not None and not offline():
        try:
            if callable(upstream):
                return upstream()
            cache = Path(os.environ.get("SRPO_CACHE", Path.home() / ".cache" / "srpo")) / rel
            if not cache.exists():
                cache.parent.mkdir(parents=True, exist_ok=True)
                partial = cache.with_suffix(cache.suffix + ".part")
                urllib.request.urlretrieve(upstream, partial)
                partial.replace(cache)  # a failed download never leaves a truncated file behind
            return _read_rows(cache)
        except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
            where = upstream if isinstance(upstream, str) else "its upstream source"
            raise DataNotFound(f"benchmark data {rel!r} is not in {path} and could not be fetched from "
                               f"{where}: {e}") from None
    how = (f"or go online so it can be fetched from "
           f"{upstream if isinstance(upstream, str) else 'its upstream source'}"
           if upstream else "(no upstream source)")
    raise DataNotFound(
        f"benchmark data {rel!r} not found: looked in {path}. Point --data-dir or SRPO_DATA_DIR at a "
        f"mirror with that layout {how}."
    )


def _require(rel: str, rows: list, fields: tuple[str, ...]) -> None:
    """Every row is a mapping holding ``fields``; else one error naming the file and row."""
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise DataError(f"{rel}: row {n} is {type(row).__name__}, not a JSON object")
        missing = [f for f in fields if f not in row or row[f] is None]
        if missing:
            raise DataError(f"{rel}: row {n} has no field {', '.join(map(repr, missing))}")


def _check_count(name: str, split: str, rows: list, expected: int | None) -> None:
    if expected is not None and len(rows) != expected:
        raise DataError(f"{name}/{split}: expected {expected} rows, found {len(rows)} (incomplete or wrong data file?)")


def _hub(repo: str, split: str, **kw):
    def fetch():
        import datasets

        return [dict(r) for r in datasets.load_dataset(repo, split=split, **kw)]

    return fetch


sandbox.hide(default_data_dir())
