"""Sharded loading (``srpo_ref/loading.py``) on CPU with gloo ranks: meta-device init, FSDP2
shards, rank 0's chunked reads broadcast to every rank. The result must equal a plain
``from_pretrained`` bit for bit, and no rank may hold the full model on top of its shards."""

import os

import pytest
import torch
import torch.multiprocessing as mp

from srpo_ref import loading
from srpo_ref.config import load_config
from srpo_ref.distributed import full_tensors
from tests.integration.test_trainer import _free_port


def _load(rank, world, port, model, sharding, chunk_bytes, result):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    cfg = load_config(None, [f"model.path={model}", f"run.sharding={sharding}", "run.device=cpu",
                             "run.hsdp_shard_size=2"])
    m, t = loading.load_policy(cfg, torch.device("cpu"), torch.bfloat16, with_teacher=True, chunk_bytes=chunk_bytes)
    out = {"model": {k: v.clone() for k, v in full_tensors(m)}, "teacher": {k: v.clone() for k, v in full_tensors(t)},
           "buffers": {k: b.clone() for k, b in m.named_buffers()},
           "local": [(n, tuple(p.to_local().shape)) for n, p in m.named_parameters()]}
    if rank == 0:
        torch.save(out, result)
    torch.distributed.destroy_process_group()


def _plain(model):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    return m.state_dict(), dict(m.named_buffers())


@pytest.mark.parametrize("sharding, world, chunk_bytes", [("fsdp", 2, 1 << 16), ("hsdp", 4, 1 << 30)])
def test_sharded_load_equals_a_plain_load_bit_for_bit(tiny_base, tmp_path, sharding, world, chunk_bytes):
    # 64 KiB chunks: many broadcast rounds, several tensors split over them
    mp.spawn(_load, args=(world, _free_port(), str(tiny_base), sharding, chunk_bytes, str(tmp_path / "r.pt")),
             nprocs=world, join=True)
    got = torch.load(tmp_path / "r.pt", weights_only=False)
    want, buffers = _plain(tiny_base)
    assert set(got["model"]) == set(want)
    for k, v in want.items():
        assert got["model"][k].dtype == torch.float32 and torch.equal(got["model"][k], v), k
        assert torch.equal(got["teacher"][k], v), k
    for k, b in buffers.items():  # rotary frequencies: not in the checkpoint, computed at build time
        assert torch.equal(got["buffers"][k], b), k
    # rank 0 kept a shard, not the whole model (hsdp: sharded over 2 of the 4 ranks)
    shard_of = {"fsdp": world, "hsdp": 2}[sharding]
    for name, shape in got["local"]:
        assert shape[0] == -(-want[name].shape[0] // shard_of), name


def test_a_checkpoint_that_is_not_safetensors_falls_back_to_a_whole_load_on_rank_0(tiny_base, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    legacy = tmp_path / "legacy"  # a pickled state dict, as older checkpoints ship
    m = AutoModelForCausalLM.from_pretrained(tiny_base)
    m.config.save_pretrained(legacy)
    torch.save(m.state_dict(), legacy / "pytorch_model.bin")
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(legacy)
    assert not list(legacy.glob("*.safetensors"))
    mp.spawn(_load, args=(2, _free_port(), str(legacy), "fsdp", 1 << 30, str(tmp_path / "r.pt")), nprocs=2, join=True)
    got = torch.load(tmp_path / "r.pt", weights_only=False)
    for k, v in _plain(tiny_base)[0].items():
        assert torch.equal(got["model"][k], v), k


def test_safetensors_reader_reads_what_save_pretrained_wrote(tiny_base):
    from safetensors.torch import load_file

    index = loading.safetensors_index(str(tiny_base))
    stored = {k: v for f in tiny_base.glob("*.safetensors") for k, v in load_file(f).items()}
    assert set(index) == set(stored)
    for k, v in stored.items():
        assert torch.equal(loading.read_safetensor(index[k]), v), k


@pytest.mark.slow
def test_each_rank_loads_a_smollm2_sized_model_without_holding_it_whole(tmp_path):
    """Peak host memory of the load on each of 2 ranks, for a SmolLM2-135M-shaped model (540 MB in
    fp32): the shards plus well under half the full model, where a plain load needs the full model
    plus the shards (measured: ``benchmarks/loading_memory.py``)."""
    from benchmarks.loading_memory import measure, write_smollm2_shaped

    model = write_smollm2_shaped(tmp_path / "smollm2_shaped")
    r = measure(str(model), ranks=2, teacher=False, chunk_mib=64)
    full, shards = r["full_fp32_bytes"], r["shards_per_rank_bytes"]
    for rank, growth in enumerate(r["peak_growth_bytes"]):
        assert growth < shards + 0.5 * full, (rank, growth, shards, full)
