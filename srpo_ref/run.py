"""The run: ``srpo-train --config CONFIG [key=value ...]`` (``python -m srpo_ref.run``). Builds the
Trainer (``srpo_ref.trainer``), resumes from its last complete checkpoint, and steps until
``run.max_steps`` or the budget is spent, validating every ``eval.val_every`` steps and saving
every ``run.save_every``; then exports the final model for evaluation.

A budget (``run.budget`` in ``run.budget_unit``) ends the run inside it: a step that would
overrun it, costing about what the last one did, is not started. Records of steps after the
checkpoint a resumed run starts from are dropped, so a resumed run's files equal an
uninterrupted one's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from srpo_ref import checkpoint, distributed, memory_plan, tasks
from srpo_ref.config import ConfigError, TrainConfig, load_config
from srpo_ref.loggers import RunLoggers
from srpo_ref.record import provenance, truncate_jsonl
from srpo_ref.trainer import Trainer

rank, world, all_sum = distributed.rank, distributed.world, distributed.all_sum


def _resume(trainer: Trainer) -> list[dict]:
    """Load the run's latest complete checkpoint (if any), drop the records written after it, and
    write the run's config and provenance; returns the validation records kept."""
    out, cfg = trainer.out, trainer.cfg
    out.mkdir(parents=True, exist_ok=True)
    ckpt = trainer.latest_checkpoint()
    if ckpt is not None:
        trainer.load(ckpt)
    kept_val: list[dict] = []
    if rank() == 0:
        truncate_jsonl(out / "steps.jsonl", trainer.step)
        kept_val = truncate_jsonl(out / "val.jsonl", trainer.step)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        (out / "provenance.json").write_text(json.dumps({**provenance(), "resumed_from_step": trainer.step,
                                                         "world_size": world(),
                                                         "n_params": trainer.n_params}, indent=2))
    return kept_val


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; returns the run directory."""
    distributed.init("cuda" if torch.cuda.is_available() and cfg.run.device != "cpu" else "cpu")  # before CUDA starts
    if cfg.rollout.prompts_per_step % world() or cfg.optim.mini_batch_prompts % world():
        raise ConfigError(f"prompts_per_step and mini_batch_prompts must be multiples of the world size {world()}")
    trainer = Trainer(cfg)
    out = trainer.out
    kept_val = _resume(trainer)
    names = cfg.run.loggers + (["tensorboard"] if cfg.run.tensorboard else [])  # run.tensorboard: the old spelling
    loggers = RunLoggers(names, out, cfg.run.project, f"{cfg.method.name}-{cfg.data.benchmark}-seed{cfg.run.seed}",
                         cfg.to_dict(), enabled=rank() == 0)

    def log_val():
        t0 = time.perf_counter()
        v = trainer.validate()
        v["seconds"] = round(time.perf_counter() - t0, 3)
        loggers.record("val", v)
        return v

    # step-0 validation once, even when a run killed before its first checkpoint is restarted
    has_start = all_sum(torch.tensor(float(any(v.get("step") == 0 for v in kept_val)))).item() > 0
    if trainer.step == 0 and cfg.eval.at_start and cfg.eval.val_every > 0 and not has_start:
        log_val()
    bar = tqdm(total=cfg.run.max_steps, initial=trainer.step, desc=f"{cfg.method.name}:{cfg.data.benchmark}",
               unit="step",
               disable=not cfg.run.progress or rank() != 0, mininterval=1 if sys.stderr.isatty() else 30)
    last_cost = [0.0]  # what the previous step consumed, in the budget's unit

    def budget_spent() -> bool:
        """The budget is spent, or the next step (costing about what the last one did) would
        overrun it: a run ends inside its budget, so its last validation counts in that window."""
        if cfg.run.budget is None:
            return False
        used = trainer.consumed(cfg.run.budget_unit)
        return used >= cfg.run.budget or used + last_cost[0] > cfg.run.budget * (1 + 1e-9)

    while trainer.step < cfg.run.max_steps:
        if budget_spent():
            break
        before = trainer.consumed(cfg.run.budget_unit)
        rec = trainer.train_step()
        last_cost[0] = trainer.consumed(cfg.run.budget_unit) - before
        loggers.record("train", rec)
        bar.update(1)
        bar.set_postfix(reward=f"{rec['reward_mean']:.3f}", sdpo=f"{rec['frac_sdpo']:.2f}",
                        s_per_step=f"{rec['seconds']['step']:.2f}", refresh=False)
        last = trainer.step >= cfg.run.max_steps or budget_spent()
        if cfg.eval.val_every > 0 and (trainer.step % cfg.eval.val_every == 0 or last):
            log_val()
        if cfg.run.save_every > 0 and (trainer.step % cfg.run.save_every == 0 or last):
            trainer.save()
    bar.close()
    # what evaluation reads, in the run's compute dtype
    checkpoint.export_hf(trainer.model, trainer.tokenizer, out / "final", getattr(torch, cfg.model.dtype))
    if rank() == 0:
        (out / "DONE").write_text(json.dumps({"steps": trainer.step, "train_seconds": trainer.train_seconds,
                                              "train_flops": trainer.train_flops,
                                              "train_tokens": trainer.train_tokens}))
    loggers.close()
    distributed.barrier()  # the last collective of the trainer's: vLLM's shutdown takes the process group with it
    getattr(trainer.engine, "shutdown", lambda: None)()
    return out


def _profile_to_train_config(path: str, overrides: list[str]) -> tuple[str, list[str]]:
    """A pipeline profile (config/*.yaml, with ``models`` and ``train``) given to --memory-plan
    stands for its training job on the profile's last (largest) model with a given path."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return path, overrides  # load_config reports it
    if not (isinstance(raw, dict) and "models" in raw and "train" in raw):
        return path, overrides
    paths = [m["path"] for m in raw["models"].values() if m.get("path")]
    extra = [f"model.path={paths[-1]}"] if paths else []
    return raw["train"]["config"], [*extra, *overrides]  # the trainer YAML holds every other setting


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="srpo-train",
                                 description="Train a policy with GRPO, SDPO or SRPO (see srpo_ref/run.py).")
    ap.add_argument("--config", required=False,
                    help="YAML config (sections: model, data, rollout, optim, method, eval, run)")
    ap.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. method.name=grpo run.seed=1")
    ap.add_argument("--memory-plan", action="store_true",
                    help="print the per-GPU memory plan of this config and exit (srpo_ref/memory_plan.py)")
    ap.add_argument("--gpus", type=int, default=None,
                    help="--memory-plan: GPUs (ranks) of the run (default: $WORLD_SIZE or 1)")
    ap.add_argument("--gpu-gib", type=float, default=80.0, help="--memory-plan: memory of one GPU in GiB (default 80)")
    ap.add_argument("--gpus-per-node", type=int, default=None,
                    help="--memory-plan: GPUs per node, the shard degree of run.sharding=hsdp (default: "
                         "run.hsdp_shard_size, "
                         "$LOCAL_WORLD_SIZE, else 8)")
    a = ap.parse_args(argv)
    if a.memory_plan and a.config:
        a.config, a.overrides = _profile_to_train_config(a.config, a.overrides)
    try:
        cfg = load_config(a.config, a.overrides)
    except (ConfigError, tasks.DataNotFound, tasks.DataError) as e:
        print(f"srpo-train: error: {e}", file=sys.stderr)
        return 2
    if a.memory_plan:
        print(memory_plan.render(memory_plan.plan(cfg, a.gpus or int(os.environ.get("WORLD_SIZE", 1)), a.gpu_gib,
                                                  gpus_per_node=a.gpus_per_node)))
        return 0
    try:
        train(cfg)
    except (ConfigError, tasks.DataNotFound, tasks.DataError) as e:
        print(f"srpo-train: error: {e}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
