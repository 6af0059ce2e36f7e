"""Memory plan: ``srpo-train --config C [overrides] --memory-plan [--gpus N] [--gpu-gib G]``.

Prints, per GPU, the bytes a training run holds at its peak, term by term, from the config and
the model's shape alone (``AutoConfig``; the model is instantiated on the meta device to count
its parameters; nothing is downloaded when the shape is one of ``KNOWN_SHAPES``):

    parameters     fp32 master weights (1/world of them with run.sharding=fsdp), plus the
                   weights gathered for compute: with fsdp, two decoder layers (the one running
                   and the one prefetched) and the root group (embeddings, output layer) in the
                   compute dtype; without, autocast's low-precision copy of every weight
    gradients      fp32, like the master weights (FSDP keeps them sharded)
    optimizer      AdamW: two fp32 moments
    teacher        the fp32 EMA/frozen teacher, sharded like the student (none for GRPO)
    activations    one micro-batch of ``micro_batch_size`` sequences of ``max_prompt_tokens +
                   max_response_tokens`` tokens: what the backward keeps per layer (with
                   gradient checkpointing only each layer's input, plus one layer recomputed);
                   whole sequences, the worst case: shared prefixes (optim.shared_prefix) lower it
    logits         the student's response logits in fp32 and their gradients (3 copies of
                   ``[micro_batch, T, V]``) and the teacher's chunk of positions
                   (``method.logits_chunk``)
    vllm           ``rollout.vllm_gpu_memory_utilization`` of the GPU when the rollout engine is
                   vLLM; with sleep mode it is released during the update, so the peak is the
                   larger of generation (vLLM + weights and teacher) and update (everything else)

The last line is ``peak per GPU: X GiB of Y GiB``. ``measure_peak`` gives the matching measured
figure on CPU (peak bytes of live tensors, tracked op by op), which ``benchmarks/memory_check.py``
and the tests compare with the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GIB = 1 << 30

# Shapes of hub models the paper profile names, so that the plan needs no download.
KNOWN_SHAPES = {
    "Qwen/Qwen3-8B": dict(model_type="qwen3", hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                          num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151936,
                          tie_word_embeddings=False, max_position_embeddings=40960),
    "Qwen/Qwen3-0.6B": dict(model_type="qwen3", hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                            num_attention_heads=16, num_key_value_heads=8, head_dim=128, vocab_size=151936,
                            tie_word_embeddings=True, max_position_embeddings=40960),
}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def model_config(path: str):
    from transformers import AutoConfig

    if path in KNOWN_SHAPES:
        spec = dict(KNOWN_SHAPES[path])
        return AutoConfig.for_model(spec.pop("model_type"), **spec)
    return AutoConfig.from_pretrained(path)


@dataclass
class Shape:
    n_params: int
    n_layer_params: int  # one decoder layer
    n_root_params: int  # embeddings, final norm, output layer (once when tied)
    layers: int
    hidden: int
    intermediate: int
    kv_dim: int  # key/value width (kv heads x head dim)
    q_dim: int
    vocab: int


def model_shape(path: str) -> Shape:
    from transformers import AutoModelForCausalLM

    hf = model_config(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf)
    n = sum(p.numel() for p in model.parameters())
    layer = sum(p.numel() for p in model.model.layers[0].parameters())
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    return Shape(n, layer, n - layer * hf.num_hidden_layers, hf.num_hidden_layers, hf.hidden_size, hf.intermediate_size,
                 hf.num_key_value_heads * head_dim, hf.num_attention_heads * head_dim, hf.vocab_size)


def plan(cfg, gpus: int = 1, gpu_gib: float = 80.0, shape: Shape | None = None) -> dict:
    """Bytes per GPU, by term, and the peak. ``gpus`` ranks train data-parallel on one node."""
    s = shape or model_shape(cfg.model.path)
    fsdp = cfg.run.sharding == "fsdp"
    shard = gpus if fsdp else 1
    cb = DTYPE_BYTES[cfg.model.dtype]  # compute dtype
    has_teacher = cfg.method.name != "grpo" and cfg.method.teacher in ("ema", "frozen")
    N = s.n_params

    gathered = (2 * s.n_layer_params + s.n_root_params) * cb if fsdp else (N * cb if cb < 4 else 0)
    terms = {
        "parameters": 4 * N / shard + gathered,
        "gradients": 4 * N / shard + (2 * s.n_layer_params * 4 if fsdp else 0),  # + unsharded grads being reduced
        "optimizer": 8 * N / shard,
        "teacher": (4 * N / shard) if has_teacher else 0.0,
    }
    mb = cfg.optim.micro_batch_size
    seq = cfg.data.max_prompt_tokens + cfg.rollout.max_response_tokens
    tokens = mb * seq
    # What the backward keeps per token and layer, in the compute dtype: the attention block's
    # norm input and output, q, k, v, attention output and its projection; the MLP's norm input
    # and output, gate, up, activation and product; fp32 norm statistics.
    per_layer = tokens * (cb * (8 * s.hidden + 2 * s.q_dim + 2 * s.kv_dim + 4 * s.intermediate) + 8)
    layer_input = tokens * s.hidden * cb
    act_full = s.layers * per_layer
    act_ckpt = s.layers * layer_input + per_layer
    terms["activations"] = act_ckpt if cfg.model.gradient_checkpointing else act_full
    T = cfg.rollout.max_response_tokens
    from srpo_ref.losses import auto_chunk

    chunk = auto_chunk(s.vocab, cfg.method.logits_chunk)
    terms["logits"] = 3 * mb * T * s.vocab * 4 + (3 * min(chunk, mb * T) * s.vocab * 4 if has_teacher else 0)
    vllm = cfg.rollout.engine == "vllm"
    terms["vllm"] = cfg.rollout.vllm_gpu_memory_utilization * gpu_gib * GIB if vllm else 0.0
    persistent = terms["parameters"] + terms["optimizer"] + terms["teacher"]
    update = persistent + terms["gradients"] + terms["activations"] + terms["logits"]
    sleep = vllm and cfg.rollout.vllm_sleep
    generation = persistent + terms["vllm"]
    peak = max(update, generation) if sleep else update + terms["vllm"]
    return {"gpus": gpus, "gpu_gib": gpu_gib, "sharding": cfg.run.sharding, "n_params": N, "terms": terms,
            "activations_without_checkpointing": act_full, "activations_with_checkpointing": act_ckpt,
            "micro_batch_tokens": tokens, "update_phase": update, "generation_phase": generation, "vllm_sleep": sleep,
            "peak": peak, "fits": peak <= gpu_gib * GIB}


def render(p: dict) -> str:
    g = lambda b: f"{b / GIB:8.2f} GiB"  # noqa: E731
    lines = [f"memory plan: {p['n_params'] / 1e9:.3f} B parameters, {p['gpus']} GPU(s) x {p['gpu_gib']:g} GiB, "
             f"sharding={p['sharding']}, micro-batch of {p['micro_batch_tokens']} tokens"]
    for k, v in p["terms"].items():
        lines.append(f"  {k:<12} {g(v)}")
    lines.append(f"  (activations: {g(p['activations_with_checkpointing']).strip()} with gradient checkpointing, "
                 f"{g(p['activations_without_checkpointing']).strip()} without)")
    lines.append(f"  update phase {g(p['update_phase'])}   generation phase {g(p['generation_phase'])}"
                 f"   vLLM sleep mode: {'on' if p['vllm_sleep'] else 'off'}")
    lines.append(f"peak per GPU: {p['peak'] / GIB:.2f} GiB of {p['gpu_gib']:g} GiB" + ("" if p["fits"] else "  (DOES NOT FIT)"))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- measurement


def measure_peak(fn, existing: list[torch.Tensor] = ()) -> int:
    """Peak bytes of tensor memory while ``fn()`` runs on CPU (CPU's answer to CUDA's
    ``max_memory_allocated``): the storage of ``existing`` tensors (weights loaded before) plus
    the running maximum of the allocations minus frees the profiler records during ``fn``."""
    from torch.profiler import ProfilerActivity, profile

    seen, base = set(), 0
    for t in existing:
        st = t.untyped_storage()
        if st.data_ptr() not in seen:
            seen.add(st.data_ptr())
            base += st.nbytes()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type().name == "CPU"),
                    key=lambda e: e.start_ns())
    current = peak = 0
    for e in events:
        current += e.nbytes()
        peak = max(peak, current)
    return base + peak
