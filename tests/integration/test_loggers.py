"""run.loggers: a short tiny run logged to JSONL, TensorBoard, Weights & Biases (offline) and
trackio (local); what each backend holds, read back, equals the JSONL records."""

import json
import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest

from srpo_ref.config import ConfigError, load_config
from srpo_ref.loggers import flatten
from srpo_ref.run import train
from tests.integration.test_trainer import tiny_cfg


def wandb_history(run_file: Path) -> dict[int, dict]:
    """step -> the metrics of an offline run's ``.wandb`` transaction log (a LevelDB-style log of
    protobuf records after a 7-byte header), read without the network."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, buf, block = run_file.read_bytes(), 7, b"", 32768
    assert data[:4] == b":W&B"
    chunks = []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:  # full
            chunks.append(chunk)
        elif kind == 2:  # first
            buf = chunk
        elif kind == 3:  # middle
            buf += chunk
        elif kind == 4:  # last
            chunks.append(buf + chunk)
    history = defaultdict(dict)
    for c in chunks:
        rec = pb.Record()
        rec.ParseFromString(c)
        if rec.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
            history[items.pop("_step")].update({k: v for k, v in items.items() if not k.startswith("_")})
    return dict(history)


def tensorboard_history(log_dir: Path) -> dict[int, dict]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    history = defaultdict(dict)
    for tag in acc.Tags()["scalars"]:
        for ev in acc.Scalars(tag):
            history[ev.step][tag] = ev.value
    return dict(history)


def trackio_history(db: Path) -> dict[int, dict]:
    history = defaultdict(dict)
    with sqlite3.connect(db) as con:
        for step, metrics in con.execute("SELECT step, metrics FROM metrics ORDER BY id"):
            history[step].update(json.loads(metrics))
    return dict(history)


def test_every_logger_holds_the_jsonl_metrics(tiny_base, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # no key: offline by default
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))  # read when trackio is first imported
    out = train(tiny_cfg(tiny_base, tmp_path / "run", "run.max_steps=2",
                         "run.loggers=[jsonl,tensorboard,wandb,trackio]",
                         "run.project=loggers-test"))
    expected = defaultdict(dict)
    for kind, name in (("train", "steps.jsonl"), ("val", "val.jsonl")):
        for line in (out / name).read_text().splitlines():
            rec = json.loads(line)
            expected[rec["step"]].update(flatten(rec, f"{kind}/"))
    expected = dict(expected)
    assert sorted(expected) == [0, 1, 2]
    assert {"train/reward_mean", "train/frac_sdpo", "train/seconds/generate", "train/flops/update",
            "val/avg_at_k"} <= set(expected[2])
    assert len(expected[1]) > 20  # every numeric field of a step record, not a chosen few

    tb = tensorboard_history(out / "tensorboard")
    assert set(tb) == set(expected) and all(set(tb[s]) == set(expected[s]) for s in expected)
    for s in expected:
        assert tb[s] == pytest.approx(expected[s], rel=1e-6, abs=1e-30)  # float32 event values

    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")  # offline: no network needed
    assert wandb_history(run_file) == expected

    (db,) = (tmp_path / "trackio").glob("loggers-test*.db")
    assert trackio_history(db) == expected


def test_loggers_option_is_checked(tiny_base, tmp_path):
    base = [f"model.path={tiny_base}", f"run.out_dir={tmp_path}"]
    assert load_config(None, base).run.loggers == ["jsonl"]
    assert load_config(None, [*base, "run.loggers=jsonl,wandb"]).run.loggers == ["jsonl", "wandb"]
    assert load_config(None, [*base, "run.loggers=tensorboard"]).run.loggers == ["tensorboard"]
    with pytest.raises(ConfigError,
                       match=r"run.loggers: unknown logger\(s\) \['mlflow'\]; choose from \['jsonl', 'tensorboard', "
                             r"'wandb', 'trackio'\]"):
        load_config(None, [*base, "run.loggers=[jsonl,mlflow]"])
    with pytest.raises(ConfigError, match="run.loggers: expected a list"):
        load_config(None, [*base, "run.loggers={a: 1}"])
