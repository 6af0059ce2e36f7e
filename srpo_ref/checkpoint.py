"""Checkpoints: save, find and load a run's state; export the final model for evaluation.

A checkpoint is a directory ``checkpoints/step_NNNNNN/`` holding

    state/               torch.distributed.checkpoint (DCP): model, EMA teacher and AdamW state,
                         each rank writing its own shards; DCP re-shards on load, so a run resumes
                         with any world size and either ``run.sharding``
    trainer_state.pt     step, consumed budget (seconds, FLOPs, tokens), scheduler state
    COMPLETE             written last

It is written under ``.tmp_step_NNNNNN`` and renamed when complete (after an fsync of every
file), so a crash mid-save never leaves a directory that looks finished. ``export_hf`` gathers the
full weights (a collective) and writes a Hugging Face ``save_pretrained`` directory from rank 0.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from srpo_ref.distributed import barrier, rank


def _states(trainer) -> dict:
    model_sd, optim_sd = get_state_dict(trainer.model, trainer.optimizer)
    state = {"model": model_sd, "optimizer": optim_sd}
    if trainer.teacher is not None:
        state["teacher"] = get_model_state_dict(trainer.teacher)
    return state


def save(trainer, keep: int) -> Path:
    ckdir = trainer.out / "checkpoints"
    final = ckdir / f"step_{trainer.step:06d}"
    tmp = ckdir / f".tmp_step_{trainer.step:06d}"
    if rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    dcp.save(_states(trainer), checkpoint_id=str(tmp / "state"))
    if rank() == 0:
        torch.save({"step": trainer.step, "train_seconds": trainer.train_seconds, "train_flops": trainer.train_flops,
                    "train_tokens": trainer.train_tokens, "scheduler": trainer.scheduler.state_dict()},
                   tmp / "trainer_state.pt")
        (tmp / "COMPLETE").write_text(str(trainer.step))
    barrier()  # every rank's shards are written before the directory is made visible
    if rank() == 0:
        _fsync_tree(tmp)  # the rename must never expose a checkpoint still in the page cache
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(ckdir)
        for old in completed(ckdir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def completed(ckdir: Path) -> list[Path]:
    return sorted(p for p in ckdir.glob("step_*") if (p / "COMPLETE").exists())


def latest(out: Path) -> Path | None:
    """The run's last complete checkpoint, as rank 0 sees it, on every rank: on a network file
    system two nodes can list a directory differently (one may not see the newest rename yet),
    and ranks that load different steps would train on silently."""
    done = completed(out / "checkpoints") if rank() == 0 else []
    choice = [str(done[-1]) if done else None]
    if torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(choice, src=0)
    return Path(choice[0]) if choice[0] is not None else None


def load(trainer, ckpt: Path) -> None:
    state = _states(trainer)
    dcp.load(state, checkpoint_id=str(ckpt / "state"))
    set_state_dict(trainer.model, trainer.optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optimizer"])
    if trainer.teacher is not None:
        set_model_state_dict(trainer.teacher, state["teacher"])
    meta = torch.load(ckpt / "trainer_state.pt", map_location="cpu", weights_only=False)
    trainer.scheduler.load_state_dict(meta["scheduler"])
    trainer.step, trainer.train_seconds = meta["step"], meta["train_seconds"]
    trainer.train_flops, trainer.train_tokens = meta["train_flops"], meta["train_tokens"]


def export_hf(model, tokenizer, path: Path, dtype: torch.dtype = torch.float32) -> None:
    """A consolidated ``save_pretrained`` directory of ``model`` (sharded or not) at ``path``, its
    floating-point weights in ``dtype`` (the run's compute dtype: what evaluation runs in)."""
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank() == 0:
        full = {k: v.to(dtype) if v.is_floating_point() else v for k, v in full.items()}
        model.config.dtype = dtype  # config.json says what the files hold (vLLM's dtype="auto" reads it)
        model.save_pretrained(path, state_dict=full)
        tokenizer.save_pretrained(path)
    barrier()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with open(p, "rb+") as f:
                os.fsync(f.fileno())
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        _fsync_dir(d)
