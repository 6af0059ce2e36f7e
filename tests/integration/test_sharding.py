"""FSDP2 sharding (``run.sharding=fsdp``) on CPU with gloo: 2 ranks reproduce 1 unsharded process,
and a sharded run resumes from its DCP checkpoint (also in another layout)."""

import json
import os

import pytest
import torch
import torch.multiprocessing as mp

from srpo_ref.distributed import full_tensors
from srpo_ref.run import train
from srpo_ref.trainer import Trainer
from tests.integration.test_trainer import VOLATILE, FixedRollouts, _free_port, records, tiny_cfg

STEPS = 3


def _join(rank, world, port):
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)


def _steps(rank, world, port, base, out, method, sharding, result, micro_batch=3, checkpointing=False):
    """``STEPS`` training steps on fixed rollouts; rank 0 saves the records and full weights."""
    _join(rank, world, port)
    extra = ["optim.mini_batch_prompts=2"] if method == "grpo" else []
    extra += ["run.hsdp_shard_size=2"] if sharding == "hsdp" else []
    extra += ["model.gradient_checkpointing=true"] if checkpointing else []
    cfg = tiny_cfg(base, out, f"method.name={method}", f"optim.micro_batch_size={micro_batch}",
                   f"run.sharding={sharding}", *extra)
    trainer = Trainer(cfg)
    trainer.engine = FixedRollouts(trainer.tokenizer)
    recs = [trainer.train_step() for _ in range(STEPS)]
    params = {k: v.clone() for k, v in full_tensors(trainer.model)}  # a collective: every rank gathers
    teacher = None if trainer.teacher is None else {k: v.clone() for k, v in full_tensors(trainer.teacher)}
    if rank == 0:
        torch.save({"recs": recs, "params": params, "teacher": teacher}, result)
    if world > 1:
        torch.distributed.destroy_process_group()


# micro-batches of 3: several per update, the distilled ones first; of 16: the update is one
# micro-batch per rank, both branches in it, the weight normaliser summed over ranks before the
# loss, and the sharded ranks recompute their layers (gradient checkpointing, shared prefixes)
# hsdp: 4 ranks as a 2x2 mesh (sharded over pairs of ranks, replicated across the pairs)
@pytest.mark.parametrize("method, micro_batch, sharding, world", [
    ("srpo", 3, "fsdp", 2), ("srpo", 16, "fsdp", 2), ("grpo", 3, "fsdp", 2), ("srpo", 3, "hsdp", 4)])
def test_sharded_ranks_match_one_unsharded_process(tiny_base, tmp_path, method, micro_batch, sharding, world):
    _steps(0, 1, 0, str(tiny_base), str(tmp_path / "single"), method, "none", str(tmp_path / "single.pt"), 3)
    mp.spawn(_steps, args=(world, _free_port(), str(tiny_base), str(tmp_path / "fsdp"), method, sharding,
                           str(tmp_path / "fsdp.pt"),
                           micro_batch, micro_batch == 16), nprocs=world, join=True)
    single = torch.load(tmp_path / "single.pt", weights_only=False)
    sharded = torch.load(tmp_path / "fsdp.pt", weights_only=False)
    for a, b in zip(single["recs"], sharded["recs"]):
        for k in ("loss", "loss_grpo", "loss_sdpo", "grad_norm", "reward_mean", "frac_sdpo"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), (a["step"], k)
    if method == "srpo":
        assert any(r["frac_sdpo"] > 0 for r in single["recs"])  # the teacher and its normaliser ran
        assert sharded["teacher"] is not None
        for name, p in single["teacher"].items():  # the sharded EMA teacher followed the same path
            assert (p - sharded["teacher"][name]).norm() <= 1e-5 * p.norm(), name
    # After three steps (up to six Adam updates of about lr = 1e-3 per weight), every weight tensor
    # agrees to 2e-5 relative (norm of the difference over the norm), and every element to 3% of
    # one Adam step: Adam's normalised step can move a near-zero gradient's weight by a few 1e-6
    # when the summation order differs (across ranks, and each rank's micro-batches share prompt
    # prefixes among other rows; the same unsharded GRPO run with optim.shared_prefix true and
    # false differs by 1.1e-5).
    for name, p in single["params"].items():
        q = sharded["params"][name]
        assert (p - q).norm() <= 2e-5 * p.norm(), name
        torch.testing.assert_close(p, q, rtol=0, atol=3e-5)
    from transformers import AutoModelForCausalLM

    start = AutoModelForCausalLM.from_pretrained(tiny_base).state_dict()
    assert max((single["params"][k] - start[k]).abs().max().item() for k in start) > 1e-3  # real updates happened


def _train(rank, world, port, base, out, max_steps):
    """A real sharded run (HF generation with synced ranks, validation, DCP checkpoints)."""
    _join(rank, world, port)
    train(tiny_cfg(base, out, "run.sharding=fsdp", f"run.max_steps={max_steps}"))
    if world > 1:
        torch.distributed.destroy_process_group()


def test_sharded_run_killed_after_a_checkpoint_resumes_to_the_same_metrics(tiny_base, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    mp.spawn(_train, args=(2, _free_port(), str(tiny_base), str(full), 4), nprocs=2, join=True)
    mp.spawn(_train, args=(2, _free_port(), str(tiny_base), str(part), 2), nprocs=2, join=True)  # "killed" after step 2
    (part / "DONE").unlink()
    ckpt = part / "checkpoints" / "step_000002"
    assert (ckpt / "COMPLETE").exists() and len(list((ckpt / "state").glob("*.distcp"))) == 2  # one shard file per rank
    # the checkpoint loads into one unsharded process too (DCP re-shards): the weights are step 2's
    import shutil

    shutil.copytree(part, tmp_path / "other_layout")
    one = Trainer(tiny_cfg(tiny_base, tmp_path / "other_layout", "run.sharding=none"))
    one.load(one.latest_checkpoint())
    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(part / "final").state_dict()  # consolidated export at step 2
    assert one.step == 2
    for k, v in one.model.state_dict().items():
        torch.testing.assert_close(v, exported[k], rtol=0, atol=0)

    mp.spawn(_train, args=(2, _free_port(), str(tiny_base), str(part), 4), nprocs=2, join=True)  # resume to step 4
    a, b = records(full / "steps.jsonl"), records(part / "steps.jsonl")
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        for k in ra:
            if k in VOLATILE:
                continue
            if isinstance(ra[k], float):
                assert ra[k] == pytest.approx(rb[k], rel=1e-5, abs=1e-7), (ra["step"], k)
            else:
                assert ra[k] == rb[k], (ra["step"], k)
    assert records(full / "val.jsonl") == records(part / "val.jsonl")
    assert json.loads((part / "provenance.json").read_text())["world_size"] == 2
