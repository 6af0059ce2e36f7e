"""What every rank of a multi-rank run must agree on, with gloo ranks on CPU: the checkpoint to
resume from, and (tensor-parallel vLLM) the prompts and seeds a shared engine is sent."""

import os
from types import SimpleNamespace

import torch
import torch.multiprocessing as mp

from srpo_ref import checkpoint
from srpo_ref.config import TrainConfig
from srpo_ref.rollout import Sample, TensorParallelGroup
from srpo_ref.trainer import Trainer
from tests.integration.test_trainer import _free_port


def _join(rank, world, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)


def _latest(rank, world, port, root, result):
    _join(rank, world, port)
    out = os.path.join(root, f"view{rank}")  # what each node's file system shows of the run
    choice = checkpoint.latest(__import__("pathlib").Path(out))
    torch.save(str(choice), f"{result}.{rank}")
    torch.distributed.destroy_process_group()


def test_rank_0_chooses_the_checkpoint_every_rank_loads(tmp_path):
    # rank 0's file system shows step 2 complete; rank 1's already shows a step 4 (or a stale
    # listing): every rank must load rank 0's choice
    for view, steps in (("view0", [1, 2]), ("view1", [1, 2, 4])):
        for s in steps:
            d = tmp_path / view / "checkpoints" / f"step_{s:06d}"
            d.mkdir(parents=True)
            (d / "COMPLETE").write_text(str(s))
    mp.spawn(_latest, args=(2, _free_port(), str(tmp_path), str(tmp_path / "r")), nprocs=2, join=True)
    chosen = {torch.load(f"{tmp_path / 'r'}.{r}") for r in range(2)}
    assert chosen == {str(tmp_path / "view0" / "checkpoints" / "step_000002")}


class RecordingEngine:
    """Returns, for each prompt, ``n`` samples naming the prompt, and records every call."""

    name = "recording"

    def __init__(self):
        self.calls = []

    def generate(self, prompt_ids, n, sampling):
        self.calls.append((prompt_ids, n, sampling.seed))
        return [[Sample(list(p), f"{p}", "stop") for _ in range(n)] for p in prompt_ids]


def _sample(rank, world, port, tp, result):
    _join(rank, world, port)
    group = TensorParallelGroup(tp)  # what a VLLMEngine owns, around an engine that records its calls
    cfg = TrainConfig()
    cfg.rollout.engine, cfg.rollout.vllm_tensor_parallel_size = "vllm", tp
    recording = RecordingEngine()
    engine = SimpleNamespace(seed_rank=group.seed_rank, generate=lambda ids, n, s: group.generate(recording.generate,
                                                                                                  ids, n, s))
    me = SimpleNamespace(cfg=cfg, engine=engine, step=3)
    prompts = [(None, [100 * rank + k, 7]) for k in range(rank + 1)]  # uneven shares: rank r has r + 1 prompts
    got = Trainer.sample(me, prompts, 2, 1.0, 1.0, 8, salt=2)
    torch.save({"calls": recording.calls, "got": [[s.response_ids for s in g] for g in got], "mine": [p for _,
                                                                                                      p in prompts]},
               f"{result}.{rank}")
    torch.distributed.destroy_process_group()


def test_a_tensor_parallel_group_sends_its_engine_identical_prompts_and_seeds(tmp_path):
    world, tp = 4, 2
    mp.spawn(_sample, args=(world, _free_port(), tp, str(tmp_path / "r")), nprocs=world, join=True)
    r = [torch.load(f"{tmp_path / 'r'}.{k}", weights_only=False) for k in range(world)]
    for k in range(world):
        assert len(r[k]["calls"]) == 1
        assert r[k]["got"] == [[p, p] for p in r[k]["mine"]]  # each rank keeps the answers to its own prompts
    for g in range(0, world, tp):  # one group: the same call on both ranks, all its prompts in rank order
        assert r[g]["calls"] == r[g + 1]["calls"]
        assert r[g]["calls"][0][0] == r[g]["mine"] + r[g + 1]["mine"]
    assert r[0]["calls"][0][2] != r[2]["calls"][0][2]  # two engines, two seeds
