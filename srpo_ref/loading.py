"""Loading the policy and its teacher (``Trainer.__init__``), so that no rank ever holds more
than it keeps.

``run.sharding=none`` (every rank keeps the whole model): ``from_pretrained`` in fp32 on the
rank's device; the teacher is a copy.

``fsdp`` / ``hsdp``:

1. The model is built on the meta device: its parameters have shapes but no memory. Buffers
   (rotary frequencies) are computed for real; they are tiny and are not in the checkpoint.
2. FSDP2 wraps it (``distributed.shard``) and ``to_empty`` allocates this rank's shards only.
3. Rank 0 reads the checkpoint's safetensors a chunk of tensors at a time (plain reads, upcast to
   fp32 exactly as ``from_pretrained(dtype=float32)`` does), and
   ``set_model_state_dict(full_state_dict=True, broadcast_from_rank0=True)`` broadcasts each
   tensor; every rank keeps its shard of it. Host memory beyond the shards: one chunk on rank 0,
   one full tensor on the others (what a broadcast receives).
4. The teacher is built the same way, empty, and its shards are copied from the student's.

A checkpoint that is not safetensors, or whose tensor names are not the model's, is loaded whole
on rank 0 instead (``from_pretrained``, then the same broadcast), with a note on stderr.
"""

from __future__ import annotations

import contextlib
import copy
import json
import struct
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from srpo_ref import distributed

CHUNK_BYTES = 2 << 30  # rank 0 reads this much of the checkpoint (in fp32) per broadcast round

_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                       "BOOL": torch.bool}


def load_policy(cfg, device: torch.device, compute_dtype: torch.dtype | None, with_teacher: bool,
                chunk_bytes: int = CHUNK_BYTES):
    """``(model, teacher or None)`` in fp32 master weights, laid out as ``cfg.run.sharding`` says."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = cfg.model.path
    if cfg.run.sharding == "none":
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)
        _checkpointing(model, cfg)
        teacher = copy.deepcopy(model).eval().requires_grad_(False) if with_teacher else None
        return model.train(), teacher

    config = AutoConfig.from_pretrained(path)
    mesh = distributed.mesh(device, cfg.run.sharding, cfg.run.hsdp_shard_size)
    model = _empty_sharded(config, compute_dtype, mesh, device, inference_only=False)
    _checkpointing(model, cfg)
    _broadcast_checkpoint(model, path, chunk_bytes)
    teacher = None
    if with_teacher:
        teacher = _empty_sharded(config, compute_dtype, mesh, device, inference_only=True)
        with torch.no_grad():
            for t, s in zip(teacher.state_dict().values(), model.state_dict().values()):
                distributed.local(t).copy_(distributed.local(s))
        teacher.eval().requires_grad_(False)
    return model.train(), teacher


def _checkpointing(model, cfg) -> None:
    if cfg.model.gradient_checkpointing:
        # non-reentrant: gradients also reach tensors a layer reads from outside its arguments
        # (a shared prefix's cache)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


@contextlib.contextmanager
def parameters_on_meta():
    """Every parameter registered inside goes to the meta device; buffers stay real. Layers
    allocate their weights with ``torch.empty`` (no pages touched) and initialise them after
    registration, on the meta copy, so nothing of the model's size is ever allocated."""
    register = torch.nn.Module.register_parameter

    def on_meta(module, name, param):
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    torch.nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


def _empty_sharded(config, compute_dtype, mesh, device, inference_only: bool):
    """The model of ``config``, sharded over ``mesh``, its shards allocated on ``device`` but not
    filled; its buffers as the model computes them."""
    from transformers import AutoModelForCausalLM

    with parameters_on_meta():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    distributed.shard(model, compute_dtype, mesh, inference_only=inference_only)
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    model.to_empty(device=device)  # allocates the shards, and empties the buffers too: put them back
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    return model


def _broadcast_checkpoint(model, path: str, chunk_bytes: int) -> None:
    """Fill ``model``'s shards (every rank) from the checkpoint at ``path`` (read by rank 0)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    plan = None
    if distributed.rank() == 0:
        plan = _chunk_plan(model, path, chunk_bytes)
    box = [plan]
    if dist.is_initialized():
        dist.broadcast_object_list(box, src=0)
    plan = box[0]
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)
    if plan is None:  # not a checkpoint we read tensor by tensor: the whole model on rank 0
        if distributed.rank() == 0:
            print(f"srpo-train: note: {path} is not a safetensors checkpoint with the model's tensor names; rank 0 "
                  "loads it whole before broadcasting", file=sys.stderr)
        full = {}
        if distributed.rank() == 0:
            from transformers import AutoModelForCausalLM

            full = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).state_dict()
        set_model_state_dict(model, full, options=options)
        return
    for chunk in plan:
        part = {}
        if distributed.rank() == 0:
            part = {name: _upcast(read_safetensor(entry)) for name, entry in chunk}
        set_model_state_dict(model, part, options=options)


def _upcast(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32) if t.is_floating_point() else t


def safetensors_index(path: str) -> dict[str, tuple]:
    """``{tensor name: (file, byte offset, byte length, dtype, shape)}`` of every tensor in the
    ``*.safetensors`` files of the directory ``path`` (their headers only)."""
    out = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, e in header.items():
            if name == "__metadata__":
                continue
            start, end = e["data_offsets"]
            out[name] = (str(f), 8 + n + start, end - start, e["dtype"], tuple(e["shape"]))
    return out


def read_safetensor(entry: tuple) -> torch.Tensor:
    """One tensor of a safetensors file, read into fresh memory (no memory map stays behind)."""
    file, offset, length, dtype, shape = entry
    with open(file, "rb") as fh:
        fh.seek(offset)
        buf = bytearray(fh.read(length))
    if len(buf) != length:
        raise ValueError(f"{file}: truncated tensor data at offset {offset}")
    dt = _SAFETENSORS_DTYPES[dtype]
    return (torch.frombuffer(buf, dtype=dt) if length else torch.empty(0, dtype=dt)).reshape(shape)


def _chunk_plan(model, path: str, chunk_bytes: int) -> list[list[tuple[str, tuple]]] | None:
    """The checkpoint's tensors in broadcast rounds of about ``chunk_bytes`` (fp32), or None when
    its names do not cover the model's state dict (tied copies aside) or name tensors it lacks."""
    index = safetensors_index(path) if Path(path).is_dir() else {}
    wanted = set(model.state_dict())
    if not index or set(index) - wanted:
        return None
    aliases: dict[int, list[str]] = {}  # tied weights: one stored name covers them all
    for name, p in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(p), []).append(name)
    missing = wanted - set(index)
    covered = {n for names in aliases.values() if set(names) & set(index) for n in names}
    if missing - covered:
        return None
    plan, chunk, size = [], [], 0
    for name in sorted(index, key=lambda k: (index[k][0], index[k][1])):
        n_bytes = 4 * max(1, int(torch.Size(index[name][4]).numel()))
        if chunk and size + n_bytes > chunk_bytes:
            plan.append(chunk)
            chunk, size = [], 0
        chunk.append((name, index[name]))
        size += n_bytes
    return plan + ([chunk] if chunk else [])
