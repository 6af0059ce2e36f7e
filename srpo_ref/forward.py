"""The model's forward passes as the trainer runs them: batches, shared prefixes, response logits
and the teacher's statistics.

- ``make_batch`` lays out rows ``prefix + response`` for one forward: whole right-padded
  sequences, or (``optim.shared_prefix``) each distinct prefix once, whose KV cache the rows'
  suffixes attend to (``Batch`` documents both layouts).
- ``response_logits``: the student's logits at the positions that predict response tokens only
  (a hook on the final norm cuts the hidden states before the output layer).
- ``teacher_statistics``: the teacher's top-K log-probs at the student's ids, tail and entropy,
  computed inside the teacher's forward a chunk of positions at a time (no ``[B, T, V]`` tensor).

Nothing here knows the method: the update (``srpo_ref.update``) decides what to run.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
from dataclasses import dataclass

import torch

from srpo_ref import distributed, losses
from srpo_ref.rollout import prefill


@dataclass
class Batch:
    """Sequences of one forward. Unshared: ``ids [B, L]`` right-padded whole sequences, ``start``
    the index of each row's first response token. Shared prefix (``prefix_ids`` set): each
    distinct prefix once, without its last token, ``prefix_ids [U, W]`` right-padded, and
    ``prefix_index [B]`` its row for every sequence; ``ids [B, T]`` is then each row's last
    prefix token followed by its response minus the last token, so position ``t`` predicts
    response token ``t``; ``attn [B, W + T]`` covers the prefix slots and the suffix, and
    ``position`` gives the suffix's position ids. ``resp [B, T]`` and ``mask`` are the response
    tokens either way."""

    ids: torch.Tensor
    attn: torch.Tensor
    start: torch.Tensor | None
    resp: torch.Tensor
    mask: torch.Tensor
    position: torch.Tensor | None = None
    prefix_ids: torch.Tensor | None = None
    prefix_attn: torch.Tensor | None = None
    prefix_index: torch.Tensor | None = None
    n_computed: int = 0  # tokens the forward processes (each shared prefix once), counted on the host
    # what the forward computes, for FlopModel.computed: (new tokens, logit positions, cached
    # context) of each whole sequence, or of each shared prefix and each row's suffix after it
    segments: list = dataclasses.field(default_factory=list)


def make_batch(prefixes: list[list[int]], responses: list[list[int]], pad_id: int, device,
               share_prefix: bool = False) -> Batch:
    """The forward's batch for rows ``prefix + response``: whole sequences, or with
    ``share_prefix`` each distinct prefix once (see ``Batch``)."""
    T = max(1, max(len(r) for r in responses))
    resp = torch.full((len(responses), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(responses), T)
    for i, r in enumerate(responses):
        resp[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    if share_prefix:
        return _shared_prefix_batch(prefixes, responses, resp, mask, pad_id, device)
    seqs = [p + r for p, r in zip(prefixes, responses)]
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
    start = torch.tensor([len(p) for p in prefixes])
    return Batch(ids.to(device), attn.to(device), start.to(device), resp.to(device), mask.to(device),
                 n_computed=sum(len(s) for s in seqs), segments=[(len(s), len(r), 0) for s, r in zip(seqs, responses)])


def _shared_prefix_batch(prefixes, responses, resp, mask, pad_id, device) -> Batch:
    distinct: dict[tuple, int] = {}
    index = torch.tensor([distinct.setdefault(tuple(p), len(distinct)) for p in prefixes])
    heads = [list(p[:-1]) for p in distinct]
    W = max(1, max(len(h) for h in heads))  # at least one slot, so the prefix forward always runs
    prefix_ids = torch.full((len(heads), W), pad_id, dtype=torch.long)
    prefix_attn = torch.zeros_like(prefix_ids)
    for u, h in enumerate(heads):
        prefix_ids[u, : len(h)] = torch.tensor(h, dtype=torch.long)
        prefix_attn[u, : len(h)] = 1
    B, T = resp.shape
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    suffix_attn = torch.zeros(B, T, dtype=torch.long)
    for i, (p, r) in enumerate(zip(prefixes, responses)):
        row = [p[-1]] + list(r[:-1])
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        suffix_attn[i, : len(row)] = 1
    attn = torch.cat([prefix_attn[index], suffix_attn], dim=1)
    position = torch.tensor([len(p) - 1 for p in prefixes])[:, None] + torch.arange(T)[None]
    n_computed = sum(len(h) for h in heads) + int(suffix_attn.sum())
    # a row is its prefix's last token and its response but the last token (one token when empty)
    segments = [(len(h), 0, 0) for h in heads]
    segments += [(max(1, len(r)), len(r), len(p) - 1) for p, r in zip(prefixes, responses)]
    return Batch(ids.to(device), attn.to(device), None, resp.to(device), mask.to(device), position.to(device),
                 prefix_ids.to(device), prefix_attn.to(device), index.to(device), n_computed, segments)


def _response_positions(batch: Batch, hidden: torch.Tensor) -> torch.Tensor:
    """``hidden [B, L, H]`` at the positions that predict each response token: ``[B, T, H]``
    (a shared-prefix batch's suffix already is exactly those positions)."""
    if batch.start is None:
        return hidden
    T = batch.resp.shape[1]
    pos = (batch.start[:, None] - 1 + torch.arange(T, device=hidden.device)[None]).clamp(min=0, max=hidden.shape[1] - 1)
    return hidden.gather(1, pos[..., None].expand(-1, -1, hidden.shape[-1]))


@contextlib.contextmanager
def _set_on(modules, **attrs):
    """Set attributes on each module for the duration of the block."""
    old = [{k: getattr(m, k) for k in attrs} for m in modules]
    for m in modules:
        for k, v in attrs.items():
            setattr(m, k, v)
    try:
        yield
    finally:
        for m, saved in zip(modules, old):
            for k, v in saved.items():
                setattr(m, k, v)


@functools.cache
def _prefix_caches():
    """The two KV caches of a shared-prefix forward, both safe under gradient checkpointing (a
    layer recomputed in the backward must see exactly what it saw in the forward):

    - ``StoreOnce`` for the prefix pass: each layer stores its keys and values on its first call;
      a recomputed layer gets its recomputed ones back and nothing is appended;
    - ``ReadOnly`` for the suffix pass: each layer's prefix keys and values (expanded to the rows)
      with the new tokens' appended, the cache itself never extended."""
    from transformers import DynamicCache

    class StoreOnce(DynamicCache):
        def update(self, key_states, value_states, layer_idx, *args, **kwargs):
            layer = self.layers[layer_idx]
            if not layer.is_initialized:
                layer.lazy_initialization(key_states, value_states)
                layer.keys, layer.values = key_states, value_states
            return key_states, value_states

    class ReadOnly(DynamicCache):
        def update(self, key_states, value_states, layer_idx, *args, **kwargs):
            layer = self.layers[layer_idx]
            return torch.cat([layer.keys, key_states], dim=-2), torch.cat([layer.values, value_states], dim=-2)

    return StoreOnce, ReadOnly


def _forward(model, batch: Batch, autocast_dtype, on_final_norm, logits_to_keep: int):
    """The model's forward on ``batch`` with ``on_final_norm`` hooked on the final norm of the
    pass over the response positions. A shared-prefix batch runs two passes through the whole
    model (so a sharded model's collectives stay the same on every rank): the distinct
    prefixes once into a KV cache, which is then expanded to the rows and attended by the
    suffixes; gradients flow through the cache into the prefix pass. Under gradient
    checkpointing both passes are checkpointed (``_prefix_caches``)."""
    ctx = torch.autocast(batch.ids.device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    kwargs: dict = {"use_cache": False}
    anchor = None
    layers = getattr(model, model.base_model_prefix).layers
    # a checkpointed layer keeps the cache (HF drops it otherwise): see _prefix_caches
    keep_cache = (lambda: _set_on(layers, _can_checkpoint_with_cache=True)) if batch.prefix_ids is not None \
        else contextlib.nullcontext
    with ctx:
        if batch.prefix_ids is not None:
            StoreOnce, ReadOnly = _prefix_caches()
            cache = StoreOnce(config=model.config)
            with keep_cache():
                prefix_logits = prefill(model, batch.prefix_ids, batch.prefix_attn, cache)
            expanded = ReadOnly(config=model.config)
            expanded.layers = [copy.copy(layer) for layer in cache.layers]  # the prefix pass's own stay as they are
            expanded.batch_select_indices(batch.prefix_index)
            kwargs = {"past_key_values": expanded, "use_cache": True, "position_ids": batch.position}
            if torch.is_grad_enabled() and distributed.is_sharded(model):
                # A zero that depends on the prefix pass's output: the backward then reaches every
                # layer of that pass through its output, where FSDP's pre-backward hook gathers the
                # layer's weights; through the cache alone it would meet them resharded.
                anchor = torch.nan_to_num(prefix_logits, nan=0.0, posinf=0.0, neginf=0.0).sum() * 0.0
        handle = getattr(model, model.base_model_prefix).norm.register_forward_hook(on_final_norm)
        try:
            with keep_cache():
                logits = model(input_ids=batch.ids, attention_mask=batch.attn, logits_to_keep=logits_to_keep,
                               **kwargs).logits
        finally:
            handle.remove()
    return logits if anchor is None else logits + anchor


def response_logits(model, batch: Batch, autocast_dtype) -> torch.Tensor:
    """Logits that predict each response token, ``[B, T, V]`` in fp32 (position ``start + t - 1``).
    Only those positions go through the output layer: a hook on the final norm replaces its
    output ``[B, L, H]`` by the response positions ``[B, T, H]``, so no logits are computed for
    prompts, prompt tails of a right-padded batch or padding (inside the model's own forward,
    where a sharded output layer is gathered)."""
    return _forward(model, batch, autocast_dtype, lambda _m, _i, hidden: _response_positions(batch, hidden), 0).float()


@torch.no_grad()
def teacher_statistics(model, batch: Batch, autocast_dtype, topk_ids: torch.Tensor, temperature: float,
                       chunk: int | None) -> losses.TeacherStats:
    """The teacher's ``losses.TeacherStats`` (top-K log-probs at ``topk_ids``, tail, entropy) for
    each response token, from the final hidden states a chunk of positions at a time: no
    ``[B, T, V]`` tensor. They are computed inside the model's own forward (a hook on the final
    norm, with the output layer's logits cut to one position), where a sharded model's output
    layer is gathered."""
    found = {}

    def hook(_module, _inputs, hidden):
        h = _response_positions(batch, hidden)
        found["stats"] = losses.teacher_stats(h, model.get_output_embeddings(), topk_ids, temperature, chunk)

    _forward(model, batch, autocast_dtype, hook, 1)
    return found["stats"]
