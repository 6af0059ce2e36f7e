"""Process group, sharding and cross-rank reductions for the trainer (``run.sharding``).

Three layouts, the same numbers (tested: 2 gloo ranks with ``fsdp``, and 4 as a 2x2 ``hsdp``
mesh, reproduce 1 process with ``none`` to 1e-5 over 3 steps):

``none``  every rank holds the whole model, its teacher and AdamW state; each micro-batch's
          gradients stay local and ``average_gradients`` all-reduces them once per update.
``fsdp``  PyTorch's FSDP2 (``fully_shard``): each decoder layer is one shard group and the root
          (embeddings, final norm, output layer) another, so a rank holds ``1/world`` of the
          fp32 master weights, gradients and AdamW state; a layer's full weights exist only
          while it runs. The EMA teacher is sharded the same way and updated shard by shard.
          With ``model.dtype=bfloat16`` the ``MixedPrecisionPolicy`` computes in bf16 and
          reduces gradients in fp32. FSDP averages gradients over ranks; the trainer scales each
          rank's loss by ``world`` so the result is the sum over ranks, as with ``none``.
``hsdp``  the same on a 2-D mesh ``(replicas, shard)``: sharded within a group of
          ``run.hsdp_shard_size`` ranks (default one node, ``$LOCAL_WORLD_SIZE``), replicated across
          groups, so parameter all-gathers stay on the node's fast links and only the gradient
          all-reduce crosses nodes.

Each rank drives the GPU ``$LOCAL_RANK`` (``init`` sets it before anything touches CUDA, and
binds the NCCL group to it). Sharded models are built on the meta device and loaded by
``srpo_ref.loading``: no rank ever holds the full model.

FSDP runs a collective in every forward, so every rank must make the same number of forward
and backward calls: the trainer pads a rank with fewer micro-batches with zero-loss dummies
(``max_over_ranks``) and HF generation runs with ``synced_gpus``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import torch.distributed as dist

SHARDINGS = ("none", "fsdp", "hsdp")


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def init(device_type: str) -> torch.device:
    """This rank's device, and the process group torchrun describes (``WORLD_SIZE`` > 1): NCCL for
    GPU tensors, gloo for CPU ones (the trainer's scalar reductions are CPU tensors, which NCCL
    alone refuses). On GPU, ``set_device`` comes first: FSDP2 and DeviceMesh place shards on the
    *current* device, which is cuda:0 on every rank until it is set."""
    device = torch.device("cuda", local_rank()) if device_type == "cuda" else torch.device(device_type)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group("cpu:gloo,cuda:nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return device


def shutdown() -> None:
    """Leave the process group (after every engine that uses it is gone)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def all_sum(x: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def all_reduce_value(v: float, op: str) -> float:
    """``v`` reduced over ranks with ``op`` (sum, min or max), as a Python float."""
    if not dist.is_initialized():
        return v
    t = torch.tensor(float(v), dtype=torch.float64)
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op])
    return t.item()


def max_over_ranks(n: int) -> int:
    return int(all_reduce_value(n, "max"))


def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenation of equal-shaped tensors from every rank, in rank order."""
    if not dist.is_initialized():
        return x
    parts = [torch.empty_like(x) for _ in range(world())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


# ----------------------------------------------------------------------------- sharding


def decoder_layers(model) -> list[torch.nn.Module]:
    """The transformer blocks of a Hugging Face causal LM (``model.model.layers``)."""
    base = getattr(model, model.base_model_prefix, None)
    layers = getattr(base, "layers", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__}: no decoder layers at model.{model.base_model_prefix}.layers "
                         "to shard")
    return list(layers)


def mesh(device: torch.device, sharding: str, shard_size: int | None = None):
    """The device mesh of ``sharding``: 1-D over every rank (fsdp), or 2-D ``(replicate, shard)``
    with ``shard_size`` ranks per shard group (hsdp; default ``$LOCAL_WORLD_SIZE``: one node).
    Consecutive ranks share a shard group, as torchrun numbers a node's ranks consecutively."""
    from torch.distributed.device_mesh import init_device_mesh

    if sharding == "fsdp":
        return init_device_mesh(device.type, (world(),))
    size = shard_size or int(os.environ.get("LOCAL_WORLD_SIZE", world()))
    if world() % size:
        raise ValueError(f"run.sharding=hsdp: the world size {world()} is not a multiple of the shard group "
                         f"size {size}")
    return init_device_mesh(device.type, (world() // size, size), mesh_dim_names=("replicate", "shard"))


def shard(model, compute_dtype: torch.dtype | None, device_mesh, inference_only: bool = False):
    """Wrap ``model`` with FSDP2 in place over ``device_mesh`` (1-D: FSDP, 2-D: HSDP): one shard
    group per decoder layer, then the root. ``compute_dtype`` (bf16/fp16) turns on mixed
    precision with fp32 master weights and fp32 gradient reduction. ``inference_only`` (the
    teacher: no backward follows its forward) frees the root's gathered weights after each
    forward too; a trained model keeps them for the backward that comes next, FSDP's default.
    ``model`` may live on the meta device (``srpo_ref.loading`` then materialises the shards)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=compute_dtype,
                              reduce_dtype=torch.float32) if compute_dtype else MixedPrecisionPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=device_mesh, mp_policy=mp)
    fully_shard(model, mesh=device_mesh, mp_policy=mp, reshard_after_forward=True if inference_only else None)
    return model


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (a plain tensor is its own shard)."""
    return t.to_local() if hasattr(t, "to_local") else t


def average_gradients(model) -> None:
    """Unsharded data parallel: sum every gradient over ranks and divide by ``world`` (what FSDP's
    reduce-scatter does on its own)."""
    if is_sharded(model) or not dist.is_initialized():
        return
    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(world())


def clip_grad_norm(model, max_norm: float) -> float:
    """Clip the global gradient norm (over all shards) and return it."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


@torch.no_grad()
def ema_(teacher, student, rate: float) -> None:
    """``teacher <- (1 - rate) teacher + rate student``, on local shards, in fused foreach ops."""
    for m in (teacher, student):
        if is_sharded(m):
            m.reshard()  # parameters() must be the shards, not weights gathered for a forward
    t = [local(p) for p in teacher.parameters()]
    s = [local(p.detach()) for p in student.parameters()]
    torch._foreach_mul_(t, 1.0 - rate)
    torch._foreach_add_(t, s, alpha=rate)


def full_tensors(model) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, full tensor)`` of every state-dict entry, one at a time: a sharded entry is
    gathered just before it is yielded, so at most one full tensor beyond the shards is alive.
    A collective: every rank must consume the whole iterator in the same order."""
    for name, value in model.state_dict().items():
        value = value.detach()
        yield name, value.full_tensor() if hasattr(value, "full_tensor") else value
