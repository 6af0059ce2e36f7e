"""Memory plan: ``srpo-train --config C [overrides] --memory-plan [--gpus N] [--gpu-gib G]``.

Prints, per GPU, the bytes a training run holds, term by term, from the config and the model's
shape alone (``AutoConfig``; the model is instantiated on the meta device to count its
parameters; nothing is downloaded when the shape is one of ``KNOWN_SHAPES``), then the peak of
each phase. Notation: ``N`` parameters, ``d`` the shard degree (``fsdp``: every GPU; ``hsdp``:
the GPUs of one shard group, ``run.hsdp_shard_size``, else ``$LOCAL_WORLD_SIZE``, else 8;
``none``: 1), ``cb`` bytes of the compute dtype, ``B`` = ``optim.micro_batch_size``, ``T`` =
``rollout.max_response_tokens``, ``S`` = ``data.max_prompt_tokens + T``, ``V`` the vocabulary,
``H`` the hidden size, ``I`` the MLP width, ``q``/``kv`` the query and key/value widths, ``R`` the
distilled rows of a micro-batch (``B``, the worst case, for every method that distils; 0 for
GRPO), ``c`` the positions of one vocabulary chunk (``losses.auto_chunk``: 128 MB of fp32; the
teacher's is ``method.logits_chunk`` when set), ``St`` the teacher's sequence
(``max_prompt_tokens + min(T, method.max_demo_tokens) + TEACHER_TEMPLATE_TOKENS + T``).

Held through every phase (the *persistent* part):

    parameters        fp32 master weights, 4N/d
    optimizer         AdamW's two fp32 moments, 8N/d
    teacher           the fp32 EMA/frozen teacher, sharded like the student, 4N/d (none for GRPO)
    gradients         fp32, 4N/d; alive from an update's first backward until the next update's
                      zero_grad(set_to_none=True): through the EMA, the weight sync and the next
                      generation too
    runtime           GPU only, an allowance (not a tensor, not in max_memory_allocated): CUDA
                      context, cuBLAS and NCCL workspaces (RUNTIME_GIB), plus vLLM's CUDA graphs
                      when rollout.vllm_enforce_eager is false (VLLM_GRAPHS_GIB; not freed by sleep)

The update (per micro-batch, worst case: a micro-batch of distilled rows with the gradients of
earlier micro-batches alive):

    gathered          the student's weights in the compute dtype while they compute: sharded, the
                      root group (embeddings, final norm, output layer; gathered from the forward
                      to the end of the backward) and two decoder layers (running, prefetched);
                      unsharded with bf16, autocast's cached copy of every weight, N cb
    teacher_gathered  sharded: the teacher's root group and two of its layers, gathered in cb for
                      its forward (its root is resharded after it); unsharded bf16: autocast's
                      cast of its largest weight
    activations       what the backward keeps of one micro-batch of B whole sequences of S tokens:
                      with gradient checkpointing each layer's input (B S H cb per layer), else
                      every layer's saved tensors (``layer_activation_bytes``, measured on CPU);
                      a padded batch (``padded``, the rule in training) adds its boolean
                      [B, 1, S, S] mask, each layer's copy of it in cb, and the keys and values
                      repeated to the query heads (2 (q - kv) cb a token)
    recompute         gradient checkpointing: one layer's saved tensors, recomputed in the backward
    layer_backward    the gradients of one layer's MLP intermediates during its backward, B S 2I cb
    prefix_cache      optim.shared_prefix: the prefix pass's KV cache and its copy expanded to the
                      rows, every layer, kept for the backward: 2 x B x max_prompt_tokens x 2 kv
                      widths x cb x layers (worst case: no two rows of a micro-batch share a prompt)
    logits            the response logits [B, T, V] in fp32, 4BTV: alive from the student's forward
                      to the end of the micro-batch's backward (the update holds them in a local)
    logits_cast       cb < 4: the output layer's compute-dtype logits while ``.float()`` copies
                      them, cb BTV (the forward and the old-log-prob pass only)
    logits_copy       the distilled rows' logits copied by indexing, 4RTV: ``logits[local]``
                      during the teacher's forward (for its top-K ids), then ``student_logits[rows]``
                      saved for the distillation's backward (its gradient, 4RTV more, in that
                      backward)
    logits_grads      the backward through the loss: the distillation's gradient scattered back
                      into a [B, T, V] zero tensor and the token log-probs' gradient, 8BTV (4BTV
                      for GRPO), beside the fp32 logits
    vocab_chunks      vocabulary-sized fp32 temporaries, a chunk of c positions at a time: five
                      [c, V] at most (the distillation's backward), 3 in the forwards, 4 in the
                      token log-probs' backward; the teacher's 3 plus its cb head output
    topk              the student's top-K ids (int64), the teacher's and the student's top-K + tail
                      log-probs and the latter's gradient, R T (K + 1) 20
    teacher_forward   the teacher's no-grad forward over R rows of St tokens: its hidden states,
                      one layer's temporaries (``teacher_layer_bytes``) and its mask (boolean and
                      converted); with optim.shared_prefix the larger of its two passes: the
                      prompts into a KV cache, then the responses against the cache and its copy
                      expanded to the rows (every layer's, R (St - T) 2 kv cb each)
    output_grads      the root's gradients: sharded, the output layer's unsharded cb gradient from
                      its backward through every layer's, then at the end the embedding's too and
                      the fp32 reduce-scatter buffer of the root group (4 n_root) with its shard;
                      unsharded tied, the output layer's fp32 gradient waits for the embedding's
                      (4VH; 12VH at the end: both and their sum, measured); untied, one 4VH
                      transient
    layer_grads       sharded: one decoder layer's unsharded cb gradients and two fp32
                      reduce-scatter buffers in flight

Rollouts and loading:

    vllm              rollout.vllm_gpu_memory_utilization of the GPU (its weights, 2N/t bytes per
                      GPU at tensor parallelism t = rollout.vllm_tensor_parallel_size, the KV cache
                      and its activations); with sleep mode (level 2: weights discarded, KV cache
                      freed; the trainer reloads the weights after each update) it holds nothing
                      during the update
    weight_sync       one full fp32 tensor (the largest) gathered for vLLM's reload, while vLLM's
                      weights are awake (its KV cache wakes after the load): 4 max_tensor
    loading           sharded: the one full fp32 tensor beyond the shards that
                      set_model_state_dict(broadcast_from_rank0) receives at a time, 4 max_tensor
                      (rank 0's full state dict is in host memory); unsharded: from_pretrained on
                      the host, so nothing beyond the weights

The update is a sequence of moments (``MOMENTS``), each the terms alive at once; with ``saved`` =
gathered + activations + prefix_cache + logits + topk (what a micro-batch holds from its forward
to its backward):

    student forward   gathered + activations + prefix_cache + logits + logits_cast
    teacher forward   saved + logits_copy + teacher_gathered + teacher_forward
    teacher head      saved + logits_copy + teacher_gathered + the teacher's last hidden states
                      (and KV caches) + its vocabulary chunks
    loss              saved + logits_copy + 3 chunks
    logits backward   saved + the larger of 2 logits_copy + 5 chunks (the distillation's backward)
                      and logits_grads + 4 chunks (the token log-probs' backward)
    layers backward   saved + recompute + layer_backward + the held output-layer gradient +
                      layer_grads
    end of backward   gathered + logits + topk + output_grads at the end
    old log-probs     gathered + logits + logits_cast + 3 chunks + prefix_cache + one layer's
                      no-grad temporaries (when optim.old_logprob computes them)

The update phase is the persistent part plus the largest moment (printed with all of them). The
generation phase is the persistent part (gradients included) plus vLLM and the weight sync's
tensor (the larger of vLLM's weights plus that tensor, and vLLM's whole budget); without sleep
mode vLLM is added to the update too. The loading phase is the student's
shards plus the loading tensor (the teacher's shards are copied after). Not counted: the caching
allocator's fragmentation (``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` keeps it small),
and blocks the trainer's allocator keeps cached when vLLM wakes (the plan assumes they are
returned, ``torch.cuda.empty_cache()``, before vLLM reallocates).

The last line is ``peak per GPU: X GiB of Y GiB``. ``measure_peak`` gives the matching measured
figure on CPU (peak bytes of live tensors, tracked op by op), which ``benchmarks/memory_check.py``
and the tests compare with the plan's update phase (``device="cpu"``: no runtime allowance).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import SimpleNamespace

import torch

from srpo_ref.losses import auto_chunk

GIB = 1 << 30

# Shapes of hub models the profiles name, so that the plan needs no download. Sources: the
# models' published config.json (Qwen3-32B: hidden 5120, intermediate 25600, 64 layers, 64 query
# and 8 key/value heads of 128, vocabulary 151936, untied, context 40960).
KNOWN_SHAPES = {
    "Qwen/Qwen3-8B": dict(model_type="qwen3", hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                          num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151936,
                          tie_word_embeddings=False, max_position_embeddings=40960),
    "Qwen/Qwen3-32B": dict(model_type="qwen3", hidden_size=5120, intermediate_size=25600, num_hidden_layers=64,
                           num_attention_heads=64, num_key_value_heads=8, head_dim=128, vocab_size=151936,
                           tie_word_embeddings=False, max_position_embeddings=40960),
    "Qwen/Qwen3-0.6B": dict(model_type="qwen3", hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                            num_attention_heads=16, num_key_value_heads=8, head_dim=128, vocab_size=151936,
                            tie_word_embeddings=True, max_position_embeddings=40960),
}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
TEACHER_TEMPLATE_TOKENS = 16  # the teacher prompt's text around the demonstration (14 tokens with the tiny tokenizer)
RUNTIME_GIB = 1.0  # CUDA context, cuBLAS and NCCL workspaces per process: an allowance
VLLM_GRAPHS_GIB = 1.0  # vLLM's CUDA graph pool (rollout.vllm_enforce_eager=false), kept while it sleeps: an allowance
MOMENTS = ("student forward", "teacher forward", "teacher head", "loss", "logits backward", "layers backward",
           "end of backward", "old log-probs")


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
    tied: bool = True  # the output layer is the embedding
    qk_norm: bool = False  # per-head norms of queries and keys (Qwen3)
    max_tensor: int = 0  # elements of the largest parameter (the embedding)
    head_dim: int = 128


def model_shape(path: str) -> Shape:
    from transformers import AutoModelForCausalLM

    hf = model_config(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf)
    n = sum(p.numel() for p in model.parameters())
    layer0 = model.model.layers[0]
    layer = sum(p.numel() for p in layer0.parameters())
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    out, emb = model.get_output_embeddings(), model.get_input_embeddings()
    return Shape(n, layer, n - layer * hf.num_hidden_layers, hf.num_hidden_layers, hf.hidden_size, hf.intermediate_size,
                 hf.num_key_value_heads * head_dim, hf.num_attention_heads * head_dim, hf.vocab_size,
                 tied=out is None or out.weight is emb.weight, qk_norm=hasattr(layer0.self_attn, "q_norm"),
                 max_tensor=max(p.numel() for p in model.parameters()), head_dim=head_dim)


def layer_activation_bytes(s: Shape, tokens: int, cb: int, autocast: bool = False) -> int:
    """What the backward keeps of one decoder layer per ``tokens``, measured on CPU for Qwen3 and
    Llama layers in fp32 and bf16: 5H + 3q + 2kv + 4I values a token (2q + 2kv more with the
    per-head query/key norms) in the compute dtype, each RMSNorm's input in fp32 instead (the norm
    upcasts it: 4 - cb more bytes per value normalised), and one fp32 statistic per token for each
    norm and head (the norms' reciprocal roots, attention's log-sum-exp). Under autocast (fp32
    weights, unsharded bf16) the residual stream and the norms stay fp32: 10H bytes more."""
    q, kv, h, i = s.q_dim, s.kv_dim, s.hidden, s.intermediate
    heads, kv_heads = q // s.head_dim, kv // s.head_dim
    values = 5 * h + 3 * q + 2 * kv + 4 * i + ((2 * q + 2 * kv) if s.qk_norm else 0)
    normed = 2 * h + ((q + kv) if s.qk_norm else 0)
    stats = 2 + heads + ((heads + kv_heads) if s.qk_norm else 0)
    return tokens * (cb * values + (4 - cb) * normed + 4 * stats + (10 * h if autocast and cb < 4 else 0))


def teacher_layer_bytes(s: Shape, tokens: int, cb: int) -> int:
    """The largest set of temporaries alive at once in one layer of a no-grad forward over
    ``tokens``: the residual stream and the normalised input, and in the MLP the activation, the
    up projection and their product (3I); under bf16 the norm's fp32 copy."""
    return tokens * (cb * (3 * s.hidden + 3 * s.intermediate) + (8 * s.hidden if cb < 4 else 0))


def shard_degree(cfg, gpus: int, gpus_per_node: int | None = None) -> int:
    """GPUs one parameter is sharded over: fsdp every GPU; hsdp one shard group (``gpus_per_node``,
    else ``run.hsdp_shard_size``, else ``$LOCAL_WORLD_SIZE``, else 8 GPUs a node); none 1."""
    if cfg.run.sharding == "fsdp":
        return gpus
    if cfg.run.sharding == "hsdp":
        size = (gpus_per_node or getattr(cfg.run, "hsdp_shard_size", None)
                or int(os.environ.get("LOCAL_WORLD_SIZE", 0)) or 8)
        return max(1, min(size, gpus))
    return 1


def _dims(cfg, s: Shape, d: int, gpu: bool, padded: bool) -> SimpleNamespace:
    """The sizes every term is made of: the run's shape, the micro-batch, the teacher's inputs,
    the vocabulary chunks, and the per-token helpers of a padded micro-batch."""
    x = SimpleNamespace(s=s, d=d, gpu=gpu, cb=DTYPE_BYTES[cfg.model.dtype],
                        sharded=cfg.run.sharding in ("fsdp", "hsdp"))
    x.distils = cfg.method.name != "grpo"  # the teacher's forward runs (ema/frozen teacher, or the student itself)
    x.has_teacher = x.distils and cfg.method.teacher in ("ema", "frozen")
    x.vllm = cfg.rollout.engine == "vllm"
    x.eager = getattr(cfg.rollout, "vllm_enforce_eager", True)
    x.tp = getattr(cfg.rollout, "vllm_tensor_parallel_size", 1) or 1
    x.N, x.V, x.H, x.L = s.n_params, s.vocab, s.hidden, s.layers
    x.max_tensor = s.max_tensor or x.V * x.H
    x.B, x.T, x.W = cfg.optim.micro_batch_size, cfg.rollout.max_response_tokens, cfg.data.max_prompt_tokens
    x.S = x.W + x.T
    x.R = x.B if x.distils else 0
    x.Wt = x.W + min(x.T, cfg.method.max_demo_tokens) + TEACHER_TEMPLATE_TOKENS  # the teacher's prompt
    x.St = x.Wt + x.T
    x.K = min(cfg.method.topk, x.V) if cfg.method.topk else x.V
    x.c = auto_chunk(x.V)  # the student's log-prob chunks (losses.topk_logprobs)
    x.ct = auto_chunk(x.V, cfg.method.logits_chunk)  # the teacher's (losses.teacher_stats)
    x.BTV, x.RTV = x.B * x.T * x.V, x.R * x.T * x.V
    x.shared = cfg.optim.shared_prefix
    x.ckpt = cfg.model.gradient_checkpointing
    x.old_logprob = (cfg.optim.old_logprob == "always"
                     or cfg.rollout.prompts_per_step // cfg.optim.mini_batch_prompts > 1)
    # A padded micro-batch (the rule in training: responses differ in length): transformers passes
    # a boolean [B, 1, L, L] mask, which each attention call converts to the compute dtype (and the
    # backward keeps), and repeats the keys and values to the query heads (no grouped-query kernel
    # with a mask). ``padded=False`` (memory_check's equal-length rows): neither.
    x.mask = lambda rows, q, k: rows * q * k if padded else 0  # bool elements
    gqa = 2 * (s.q_dim - s.kv_dim) * x.cb if padded else 0  # per token and layer
    x.layer_saved = lambda tokens: layer_activation_bytes(s, tokens, x.cb, autocast=not x.sharded) + tokens * gqa
    x.layer_temp = lambda tokens: teacher_layer_bytes(s, tokens, x.cb) + tokens * gqa  # no grad
    return x


def _student_terms(x: SimpleNamespace, t: dict) -> None:
    """The persistent state and the student's update: weights, optimizer, activations, logits."""
    s, N, d, cb, B, S = x.s, x.N, x.d, x.cb, x.B, x.S
    t["parameters"] = 4 * N / d
    t["optimizer"] = 8 * N / d
    t["teacher"] = 4 * N / d if x.has_teacher else 0.0
    t["gradients"] = 4 * N / d
    t["runtime"] = ((RUNTIME_GIB + (VLLM_GRAPHS_GIB if x.vllm and not x.eager else 0.0)) * GIB) if x.gpu else 0.0
    root_group = s.n_root_params + 2 * s.n_layer_params
    t["gathered"] = root_group * cb if x.sharded else (N * cb if cb < 4 else 0.0)
    t["teacher_gathered"] = ((root_group * cb if x.sharded else (x.max_tensor * cb if cb < 4 else 0.0))
                             if x.has_teacher else 0.0)
    x.act_full = x.L * (x.layer_saved(B * S) + cb * x.mask(B, S, S)) + x.mask(B, S, S)
    x.act_ckpt = x.L * B * S * (x.H * cb + 2) + x.mask(B, S, S)
    t["activations"] = x.act_ckpt if x.ckpt else x.act_full
    t["recompute"] = x.layer_saved(B * S) + cb * x.mask(B, S, S) if x.ckpt else 0.0
    t["layer_backward"] = B * S * 2 * s.intermediate * cb
    t["prefix_cache"] = 2 * B * x.W * 2 * s.kv_dim * cb * x.L if x.shared else 0.0
    t["logits"] = 4 * x.BTV
    t["logits_cast"] = cb * x.BTV if cb < 4 else 0.0
    t["logits_copy"] = 4 * x.RTV
    t["logits_grads"] = (8 if x.distils else 4) * x.BTV
    chunk_b, chunk_r, chunk_t = min(x.c, B * x.T) * x.V * 4, min(x.c, x.R * x.T) * x.V * 4, min(x.ct, x.R * x.T) * x.V
    x.chunks = {"forward": 3 * chunk_b, "distil_forward": 3 * chunk_r, "distil_backward": 5 * chunk_r,
                "token_backward": 4 * chunk_b, "teacher": chunk_t * (12 + cb)}
    t["vocab_chunks"] = max(x.chunks.values())
    t["topk"] = x.R * x.T * (x.K + 1) * 20


def _teacher_and_output_terms(x: SimpleNamespace, t: dict) -> None:
    """The teacher's no-grad forward: whole sequences, or (shared prefix) its prompts into a KV
    cache, then the responses against the cache and its copy expanded to the rows; then the
    output layer's gradients."""
    s, cb, R, T, Wt, St, H, L, mask = x.s, x.cb, x.R, x.T, x.Wt, x.St, x.H, x.L, x.mask
    teacher_cache = R * Wt * 2 * s.kv_dim * cb * L if x.shared else 0  # one copy
    if x.shared:
        prefix_pass = R * Wt * H * cb + x.layer_temp(R * Wt) + (2 + cb) * mask(R, Wt, Wt) + teacher_cache
        suffix_pass = (2 * teacher_cache + R * T * H * cb + x.layer_temp(R * T) + (2 + cb) * mask(R, T, St)
                       + R * St * 2 * s.kv_dim * cb)  # a layer's keys and values with the cache's
        teacher_fwd = max(prefix_pass, suffix_pass)
        x.teacher_hidden = 2 * teacher_cache + 2 * R * T * H * cb + mask(R, T, St)
    else:
        teacher_fwd = R * St * H * cb + x.layer_temp(R * St) + (2 + cb) * mask(R, St, St)
        x.teacher_hidden = R * St * H * cb + R * T * H * cb + mask(R, St,
                                                                   St)  # its last hidden states, the responses' cut
    t["teacher_forward"] = teacher_fwd if x.distils else 0.0
    V = x.V
    if x.sharded:
        x.out_hold = V * H * cb
        x.out_end = s.n_root_params * cb + 4 * s.n_root_params + 4 * s.n_root_params / x.d
        x.layer_grads = s.n_layer_params * (cb + 2 * 4)
    else:
        x.out_hold = 4 * V * H if s.tied else 0
        x.out_end = 12 * V * H if s.tied else 4 * V * H  # tied: the held gradient, the embedding's, their sum
        x.layer_grads = 0
    t["output_grads"] = max(x.out_hold, x.out_end)
    t["layer_grads"] = x.layer_grads


def _moments(x: SimpleNamespace, t: dict) -> dict[str, float]:
    """What the update holds at each of its moments (beyond the persistent state)."""
    chunks, distils = x.chunks, x.distils
    saved = t["gathered"] + t["activations"] + t["prefix_cache"] + t["logits"] + t["topk"]
    moments = {
        "student forward": t["gathered"] + t["activations"] + t["prefix_cache"] + t["logits"] + t["logits_cast"],
        "loss": saved + (t["logits_copy"] if distils else 0) + max(chunks["forward"],
                                                                   chunks["distil_forward"] if distils else 0),
        "logits backward": saved + max(2 * t["logits_copy"] + chunks["distil_backward"] if distils else 0,
                                       t["logits_grads"] + chunks["token_backward"]),
        "layers backward": saved + t["recompute"] + t["layer_backward"] + x.out_hold + x.layer_grads,
        "end of backward": t["gathered"] + t["logits"] + t["topk"] + x.out_end,
    }
    if distils:
        moments["teacher forward"] = saved + t["logits_copy"] + t["teacher_gathered"] + t["teacher_forward"]
        moments["teacher head"] = (saved + t["logits_copy"] + t["teacher_gathered"] + x.teacher_hidden
                                   + chunks["teacher"])
    if x.old_logprob:
        B, S = x.B, x.S
        moments["old log-probs"] = (t["gathered"] + t["logits"] + t["logits_cast"] + chunks["forward"]
                                    + t["prefix_cache"] + x.layer_temp(B * S) + (2 + x.cb) * x.mask(B, S, S))
    return {k: moments[k] for k in MOMENTS if k in moments}


def _vllm_budget(cfg, x: SimpleNamespace, t: dict) -> dict | None:
    """vLLM's own budget: its weights per GPU and what is left for the KV cache and its activations."""
    if not x.vllm:
        return None
    tp = x.tp
    kv_per_token = 2 * x.L * max(x.s.kv_dim / tp,
                                 x.s.head_dim) * 2  # bf16 keys and values, kv heads split over TP ranks
    max_len = x.W + max(x.T, cfg.eval.max_new_tokens)
    weights = 2 * x.N / tp
    room = t["vllm"] - weights
    return {"tensor_parallel": tp, "weights": weights, "kv_room": room, "max_model_len": max_len,
            "sequences": room / (kv_per_token * max_len) if room > 0 else 0.0}


def plan(cfg, gpus: int = 1, gpu_gib: float = 80.0, shape: Shape | None = None, gpus_per_node: int | None = None,
         device: str = "cuda", padded: bool = True) -> dict:
    """Bytes per GPU, by term and by moment, and the peak of each phase. ``gpus`` ranks train data
    parallel; ``device="cpu"`` drops the GPU-only allowances (what ``measure_peak`` sees);
    ``padded=False`` plans micro-batches of equal-length rows (no attention mask)."""
    x = _dims(cfg, shape or model_shape(cfg.model.path), shard_degree(cfg, gpus, gpus_per_node), device == "cuda",
              padded)
    t: dict[str, float] = {}
    _student_terms(x, t)
    _teacher_and_output_terms(x, t)
    # rollouts and loading
    t["vllm"] = cfg.rollout.vllm_gpu_memory_utilization * gpu_gib * GIB if x.vllm else 0.0
    t["weight_sync"] = 4 * x.max_tensor if x.vllm else 0.0
    t["loading"] = 4 * x.max_tensor if x.sharded else 0.0

    persistent = t["parameters"] + t["optimizer"] + t["teacher"] + t["gradients"] + t["runtime"]
    moments = _moments(x, t)
    at = max(moments, key=moments.get)
    update = persistent + moments[at]
    sleep = x.vllm and cfg.rollout.vllm_sleep
    vllm_weights = 2 * x.N / x.tp if x.vllm else 0.0  # bf16, split over the engine's tensor-parallel ranks
    # the weight sync wakes vLLM's weights, loads them a gathered fp32 tensor at a time, then wakes
    # its KV cache: the larger of (its weights + that tensor) and its whole budget
    generation = persistent + max(vllm_weights + t["weight_sync"], t["vllm"])
    if x.vllm and not sleep:
        update += t["vllm"]
    loading = t["parameters"] + max(t["loading"], t["teacher"]) + t["runtime"]
    peak = max(update, generation, loading)
    vllm_info = _vllm_budget(cfg, x, t)
    fits = peak <= gpu_gib * GIB and (vllm_info is None or vllm_info["sequences"] >= 1)
    return {"gpus": gpus, "gpu_gib": gpu_gib, "sharding": cfg.run.sharding, "shard_degree": x.d, "n_params": x.N,
            "terms": t, "activations_without_checkpointing": x.act_full, "activations_with_checkpointing": x.act_ckpt,
            "micro_batch_tokens": x.B * x.S, "teacher_tokens": x.R * x.St, "persistent": persistent, "moments": moments,
            "update_at": at, "update_phase": update, "generation_phase": generation, "loading_phase": loading,
            "vllm_sleep": sleep, "vllm": vllm_info, "peak": peak, "fits": fits}


def render(p: dict) -> str:
    g = lambda b: f"{b / GIB:8.2f} GiB"  # noqa: E731
    lines = [f"memory plan: {p['n_params'] / 1e9:.3f} B parameters, {p['gpus']} GPU(s) x {p['gpu_gib']:g} GiB, "
             f"sharding={p['sharding']}, micro-batch of {p['micro_batch_tokens']} tokens"]
    if p["sharding"] == "hsdp":
        lines[0] += f" (shard groups of {p['shard_degree']} GPUs)"
    for k, v in p["terms"].items():
        lines.append(f"  {k:<16} {g(v)}")
    lines.append(f"  (activations: {g(p['activations_with_checkpointing']).strip()} with gradient checkpointing, "
                 f"{g(p['activations_without_checkpointing']).strip()} without)")
    lines.append(f"  update moments beyond the persistent {g(p['persistent']).strip()}: "
                 + ", ".join(f"{k} {v / GIB:.2f}" for k, v in p["moments"].items()) + " GiB")
    if p["vllm"]:
        v = p["vllm"]
        lines.append(f"  vLLM: tensor parallel {v['tensor_parallel']}, weights {v['weights'] / GIB:.2f} GiB per GPU, "
                     f"{v['kv_room'] / GIB:.2f} GiB left for its KV cache and activations "
                     f"({v['sequences']:.1f} sequences of {v['max_model_len']} tokens)")
    lines.append(f"  update phase {g(p['update_phase'])} (at the {p['update_at']})   generation phase "
                 f"{g(p['generation_phase'])}"
                 f"   loading phase {g(p['loading_phase'])}   vLLM sleep mode: {'on' if p['vllm_sleep'] else 'off'}")
    lines.append(f"peak per GPU: {p['peak'] / GIB:.2f} GiB of {p['gpu_gib']:g} GiB"
                 + ("" if p["fits"] else "  (DOES NOT FIT)"))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- measurement


def storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    seen, total = set(), 0
    for t in tensors:
        st = t.untyped_storage()
        if st.data_ptr() not in seen:
            seen.add(st.data_ptr())
            total += st.nbytes()
    return total


def measure_peak(fn, existing: list[torch.Tensor] | int = ()) -> int:
    """Peak bytes of tensor memory while ``fn()`` runs on CPU (CPU's answer to CUDA's
    ``max_memory_allocated``): the storage of ``existing`` tensors (or that many bytes) plus the
    running maximum of the allocations minus frees the profiler records during ``fn``, block by
    block (address and size).

    Two gaps of the profiler's CPU allocator hook, and what is done about them: a block allocated
    before ``fn`` and freed during it is not seen freed (the hook knows a block's size only if it
    saw it allocated), so create inside ``fn`` what ``fn`` frees; a block freed on a thread that
    is not profiled (gloo's, under FSDP) is not seen freed either, so an allocation at the address
    of a block still counted live frees that block first (the allocator cannot hand out an address
    twice)."""
    from torch.profiler import ProfilerActivity, profile

    base = existing if isinstance(existing, int) else storage_bytes(existing)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    blocks = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        e = stack.pop()
        if str(e.tag).endswith("Allocation"):
            f = e.typed[1]
            if f.device.type == "cpu":
                blocks.append((e.start_time_ns, f.ptr, f.alloc_size))
        stack.extend(e.children)
    live: dict[int, int] = {}
    current = peak = 0
    for _, ptr, size in sorted(blocks, key=lambda b: b[0]):
        if size > 0:
            current += size - live.get(ptr, 0)  # a live block at this address was freed unseen
            live[ptr] = size
        elif ptr in live:
            current -= live.pop(ptr)
        peak = max(peak, current)
    return base + peak
