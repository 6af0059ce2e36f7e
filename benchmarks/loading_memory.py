"""Host memory of loading a sharded policy (``srpo_ref/loading.py``): ``python benchmarks/loading_memory.py
[--model DIR] [--ranks 2] [--teacher]``.

Starts ``--ranks`` gloo ranks on CPU. Each builds the model on the meta device, shards it with
FSDP2, and fills its shards from rank 0's chunked reads of the checkpoint. Each rank reports the
growth of its peak resident memory over the load (``VmHWM`` after the load minus ``VmRSS``
before it, with the peak reset first), beside the full model's fp32 bytes and its shard's. A
plain load would need at least the full model plus the shard. Without ``--model`` a randomly
initialised model with SmolLM2-135M's shape is written to a temporary directory (bf16
safetensors, like the hub's checkpoints).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MIB = 1 << 20
SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, tie_word_embeddings=True,
                    rope_theta=100000.0, rms_norm_eps=1e-5)


def write_smollm2_shaped(out: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)).to(torch.bfloat16).save_pretrained(out)
    return out


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _rank(rank: int, world: int, port: int, model: str, teacher: bool, chunk_mib: int, result: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    from srpo_ref import loading
    from srpo_ref.config import load_config

    cfg = load_config(None, [f"model.path={model}", "run.sharding=fsdp", "run.device=cpu"])
    # imports (a few hundred MiB of modules) are not the load's memory: done before the baseline
    from torch.distributed.checkpoint.state_dict import set_model_state_dict  # noqa: F401
    from torch.distributed.fsdp import fully_shard  # noqa: F401
    from transformers import AutoConfig, AutoModelForCausalLM  # noqa: F401

    AutoConfig.from_pretrained(model)

    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    m, t = loading.load_policy(cfg, torch.device("cpu"), None, with_teacher=teacher, chunk_bytes=chunk_mib * MIB)
    peak = _status("VmHWM")
    full = sum(p.numel() for p in m.parameters()) * 4
    shard = sum(p.to_local().numel() for p in m.parameters()) * 4 * (2 if teacher else 1)
    growth = torch.tensor([peak - before], dtype=torch.float64)
    parts = [torch.zeros_like(growth) for _ in range(world)]
    torch.distributed.all_gather(parts, growth)
    if rank == 0:
        Path(result).write_text(json.dumps({"full_fp32_bytes": full, "shards_per_rank_bytes": shard,
                                            "peak_growth_bytes": [int(p.item()) for p in parts]}))
    torch.distributed.destroy_process_group()


def measure(model: str, ranks: int = 2, teacher: bool = False, chunk_mib: int = 64) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        mp.spawn(_rank, args=(ranks, port, model, teacher, chunk_mib, str(result)), nprocs=ranks, join=True)
        return json.loads(result.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a save_pretrained directory (default: a random SmolLM2-135M-shaped model)")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--teacher", action="store_true", help="also build the sharded teacher")
    ap.add_argument("--chunk-mib", type=int, default=64, help="rank 0's read chunk (fp32 MiB)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = a.model or str(write_smollm2_shaped(Path(tmp) / "smollm2_shaped"))
        r = measure(model, a.ranks, a.teacher, a.chunk_mib)
    r.update(model=a.model or "random SmolLM2-135M shape", ranks=a.ranks, teacher=a.teacher, chunk_mib=a.chunk_mib)
    print(json.dumps(r, indent=2))
    full, shard = r["full_fp32_bytes"] / MIB, r["shards_per_rank_bytes"] / MIB
    for k, g in enumerate(r["peak_growth_bytes"]):
        print(f"rank {k}: peak RSS grew {g / MIB:.0f} MiB while loading; full model {full:.0f} MiB, its shards "
              f"{shard:.0f} MiB, "
              f"a plain load at least {full + shard:.0f} MiB")


if __name__ == "__main__":
    main()
