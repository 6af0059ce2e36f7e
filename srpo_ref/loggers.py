"""Experiment loggers (``run.loggers``): where a run's records go besides its JSONL files.

``steps.jsonl`` and ``val.jsonl`` are always written (every table reads them). The other
backends receive the same records as flat scalar metrics, nested keys joined with ``/``
(``train/seconds/generate``, ``val/avg_at_k``), at the record's step:

- ``tensorboard``: event files under ``<out_dir>/tensorboard`` (``torch.utils.tensorboard``);
- ``wandb``: Weights & Biases, offline unless ``WANDB_MODE`` says otherwise or ``WANDB_API_KEY``
  is set; an offline run lies under ``<out_dir>/wandb`` and is uploaded later with ``wandb sync``;
- ``trackio``: local-first (a SQLite database under ``$TRACKIO_DIR``, default
  ``$HF_HOME/trackio``); ``trackio show`` opens its dashboard.

One class per backend, each with ``log(step, metrics)`` and ``close()``. Only rank 0 logs.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from srpo_ref.errors import ConfigError

LOGGERS = ("jsonl", "tensorboard", "wandb", "trackio")
EXTRAS = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}  # pip package of each backend


def flatten(record: dict, prefix: str = "") -> dict[str, float]:
    """The record's numeric scalars (``step`` excepted), nested keys joined with ``/``."""
    out: dict[str, float] = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step" and math.isfinite(v):
            out[key] = float(v)
    return out


class JsonlLogger:
    """``steps.jsonl`` and ``val.jsonl``: the records as they are (nested), one line each."""

    def __init__(self, out: Path):
        self.paths = {"train": Path(out) / "steps.jsonl", "val": Path(out) / "val.jsonl"}

    def record(self, kind: str, rec: dict) -> None:
        with self.paths[kind].open("a") as f:
            f.write(json.dumps(rec) + "\n")

    def close(self) -> None:
        pass


class TensorBoardLogger:
    def __init__(self, out: Path, **_):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(out) / "tensorboard"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    def __init__(self, out: Path, project: str, name: str, config: dict):
        import wandb

        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        self.run = wandb.init(project=project, name=name, dir=str(out), config=config, mode=mode, reinit="create_new")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


class TrackioLogger:
    def __init__(self, out: Path, project: str, name: str, config: dict):
        import trackio

        self.trackio = trackio
        self.run = trackio.init(project=project, name=name, config=config, auto_log_cpu=False, auto_log_gpu=False)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


BACKENDS = {"tensorboard": TensorBoardLogger, "wandb": WandbLogger, "trackio": TrackioLogger}


class RunLoggers:
    """The run's loggers: JSONL always, plus the backends ``names`` lists. ``enabled=False`` (ranks
    other than 0) logs nothing."""

    def __init__(self, names: list[str], out: Path, project: str, name: str, config: dict, enabled: bool = True):
        unknown = [n for n in names if n not in LOGGERS]
        if unknown:
            raise ConfigError(f"run.loggers: unknown logger(s) {unknown}; choose from {list(LOGGERS)}")
        self.jsonl = JsonlLogger(out) if enabled else None
        self.backends = []
        if enabled:
            for n in dict.fromkeys(names):  # in order, once each
                if n == "jsonl":
                    continue
                try:
                    self.backends.append(BACKENDS[n](out, project=project, name=name, config=config))
                except ImportError as e:
                    raise ImportError(f"run.loggers lists {n}, which needs the {EXTRAS[n]!r} package "
                                      f"(pip install 'srpo-repro[{n}]'): {e}") from e

    def record(self, kind: str, rec: dict) -> None:
        """One record of ``kind`` train (a step) or val (a validation) to every logger."""
        if self.jsonl is None:
            return
        self.jsonl.record(kind, rec)
        metrics = flatten(rec, f"{kind}/")
        for b in self.backends:
            b.log(int(rec["step"]), metrics)

    def close(self) -> None:
        for b in self.backends:
            b.close()
        self.backends = []
