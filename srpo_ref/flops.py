"""FLOPs of a decoder-only transformer, per causal pass: the cost unit of ``budget_unit: flops``.

Pure arithmetic on a model's shape (no trainer imports); checked against
``torch.utils.flop_counter.FlopCounterMode`` in ``tests/unit/test_flops.py``.

Symbols
-------
``N_ne``    non-embedding parameters: the decoder layers (attention and MLP weights, norms, biases)
            plus the final norm; not the input embedding, not the output layer (``lm_head``).
``n_layer`` decoder layers; ``d_attn = num_attention_heads * head_dim`` (query heads: with
            grouped-query attention the shared key/value heads are broadcast to every query head,
            so the score and value matmuls run at full ``d_attn``); ``d_model`` hidden size;
            ``V`` vocabulary (rows of the output layer).

Formulas (a multiply-add is 2 FLOPs)
------------------------------------
Kaplan et al. 2020 (Table 1) give, per token, ``C_forward = 2 N_ne + 2 n_layer n_ctx d_attn``.
Its attention term is, up to a ``+1``, the causal average of the per-key cost used here: in a layer a
query that attends to ``k`` keys costs ``2 d_attn k`` for the scores ``Q K^T`` and ``2 d_attn k``
for ``softmax(.) V``, i.e. ``4 d_attn k``; with ``k = i`` at position ``i = 1..n_ctx`` the mean is
``2 d_attn (n_ctx + 1)`` per layer, Kaplan's ``2 d_attn n_ctx``. So, for ``S`` new tokens after
``C`` cached ones (KV cache: the token at position ``i`` of the new ones attends to ``C + i`` keys):

    attention(S, C)   = n_layer * sum_{i=1..S} 4 d_attn (C + i)
                      = 4 n_layer d_attn (S C + S (S + 1) / 2)
    decoder(S, C)     = 2 N_ne S + attention(S, C)
    output_layer(K)   = 2 d_model V K                 (K = positions whose logits are computed)
    forward(S, K, C)  = decoder(S, C) + output_layer(K)
    train(S, K)       = 3 forward(S, K)               (backward = 2 x forward)
                        + recompute(S)                (gradient checkpointing only)
    recompute(S)      = decoder(S) - 2 N_down S

Under gradient checkpointing each decoder layer runs forward again in the backward; the output
layer is not checkpointed. ``N_down`` (the MLP down projections' weights, ``n_layer * d_ff *
d_model``) is left out of the rerun because PyTorch's non-reentrant checkpoint (what the trainer
uses) stops recomputing early, once every tensor the backward needs is back: a layer's last
matmul, whose output nothing saves, is not rerun (about a quarter of a layer's weights in
Llama/Qwen shapes). With ``use_reentrant=True`` or
``torch.utils.checkpoint.set_checkpoint_early_stop(False)`` the rerun is the whole ``decoder(S)``.

Splitting a sequence at any point costs the same as running it whole:
``forward(A, 0) + forward(B, K, context=A) == forward(A + B, K)``.

Not counted: element-wise work (norms, rotary embeddings, activations, softmax, residual adds),
the input embedding lookup, the optimizer. The ``2 N_ne`` term counts the norm weights as if they
were matmul weights: an excess of their share of ``N_ne`` (under 0.2% for the models here).
Attention is counted causally, as a causal kernel such as FlashAttention computes it; dense (eager)
attention computes the full square, about ``2 L / (L + 1)`` times more attention FLOPs than
counted here.

Phases (``pairs`` = one ``(prompt_len, response_len)`` per rollout). Each rollout's whole sequence
counts, as the method's cost, whether or not a prefix is shared or cached by the engine:

    generate(pairs)               = sum forward(P + R, K=R)    (one logit row per generated token)
    forward_pass(pairs)           = sum forward(P + R, K=R)    (old log-probs, teacher forward)
    update(pairs, checkpointing)  = sum train(P + R, K=R, checkpointing)

(Generation never feeds its last sampled token back, so it runs ``P + R - 1`` positions; the one
position is kept so that generate and a forward pass over the same rollouts cost the same.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class FlopModel:
    """The shape that the FLOP formulas need (see the module docstring)."""

    n_nonembedding: int  # decoder layers + final norm; no input embedding, no output layer
    n_layer: int
    d_attn: int  # num_attention_heads * head_dim
    d_model: int
    vocab: int
    n_down_projection: int = 0  # MLP down-projection weights, all layers: not rerun under checkpointing

    @classmethod
    def from_config(cls, config) -> "FlopModel":
        """From a ``transformers`` config of a dense Llama-style decoder (Llama, Mistral, Qwen2,
        Qwen3). Needs no weights, so it is also right for a sharded model."""
        if hasattr(config, "get_text_config"):
            config = config.get_text_config()
        d = config.hidden_size
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or d // heads
        ff = config.intermediate_size
        model_type = getattr(config, "model_type", "")
        if model_type == "qwen2":  # q/k/v biases always, none on o_proj (no config switch)
            qkv_bias, o_bias = True, False
        else:  # Llama/Qwen3: attention_bias covers q, k, v and o
            qkv_bias = o_bias = bool(getattr(config, "attention_bias", False))
        mlp_bias = bool(getattr(config, "mlp_bias", False))
        q, kv = heads * head_dim, kv_heads * head_dim
        attention = d * q + 2 * d * kv + q * d + (q + 2 * kv if qkv_bias else 0) + (d if o_bias else 0)
        mlp = 3 * d * ff + ((2 * ff + d) if mlp_bias else 0)  # gate, up, down
        norms = 2 * d + (2 * head_dim if model_type.startswith("qwen3") else 0)  # Qwen3's q_norm, k_norm
        n_ne = config.num_hidden_layers * (attention + mlp + norms) + d  # + the final norm
        down = config.num_hidden_layers * (ff * d + (d if mlp_bias else 0))
        return cls(n_ne, config.num_hidden_layers, q, d, config.vocab_size, down)

    @classmethod
    def from_model(cls, model) -> "FlopModel":
        """Shape from ``model.config``, ``n_nonembedding`` from the parameters themselves: all of
        them (``model.parameters()`` yields a tied weight once) less the input embedding and the
        output layer when that is a separate weight. Call it on an unsharded model (or one whose
        parameters report their full size, as FSDP2's DTensors do)."""
        shape = cls.from_config(model.config)
        params = {id(p): p.numel() for p in model.parameters()}
        embedding_ids = {id(p) for p in model.get_input_embeddings().parameters()}
        output = model.get_output_embeddings()
        if output is not None:
            embedding_ids |= {id(p) for p in output.parameters()}
        n_ne = sum(n for pid, n in params.items() if pid not in embedding_ids)
        vocab = output.weight.shape[0] if output is not None else shape.vocab
        return cls(n_ne, shape.n_layer, shape.d_attn, shape.d_model, vocab, shape.n_down_projection)

    # ---------------------------------------------------------------- one sequence

    def attention(self, seq_len: int, context: int = 0) -> float:
        """Causal score and value matmuls of ``seq_len`` new tokens after ``context`` cached ones:
        the new token at position ``i`` attends to ``context + i`` keys, ``4 d_attn`` FLOPs each."""
        _check(seq_len=seq_len, context=context)
        keys_attended = seq_len * context + seq_len * (seq_len + 1) / 2
        return 4.0 * self.n_layer * self.d_attn * keys_attended

    def decoder(self, seq_len: int, context: int = 0) -> float:
        """The decoder layers (and final norm) on ``seq_len`` new tokens after ``context`` cached ones."""
        return 2.0 * self.n_nonembedding * seq_len + self.attention(seq_len, context)

    def output_layer(self, logit_positions: int) -> float:
        """The output layer at the positions whose logits are computed."""
        _check(logit_positions=logit_positions)
        return 2.0 * self.d_model * self.vocab * logit_positions

    def forward(self, seq_len: int, logit_positions: int, context: int = 0) -> float:
        """One causal forward of ``seq_len`` new tokens after ``context`` cached ones (KV cache),
        with logits at ``logit_positions`` of the new positions."""
        if logit_positions > seq_len:
            raise ValueError(f"logit_positions={logit_positions} > seq_len={seq_len}")
        return self.decoder(seq_len, context) + self.output_layer(logit_positions)

    def recompute(self, seq_len: int, context: int = 0) -> float:
        """The decoder's rerun under (non-reentrant, early-stopping) gradient checkpointing: all
        but each layer's MLP down projection."""
        return self.decoder(seq_len, context) - 2.0 * self.n_down_projection * seq_len

    def train(self, seq_len: int, logit_positions: int, checkpointing: bool = False) -> float:
        """Forward + backward (2x forward) of one sequence; gradient checkpointing adds the
        decoder's rerun (``recompute``; the output layer is not recomputed)."""
        fwd = self.forward(seq_len, logit_positions)
        return 3.0 * fwd + (self.recompute(seq_len) if checkpointing else 0.0)

    # ---------------------------------------------------------------- phases of a step

    def generate(self, pairs: Iterable[tuple[int, int]]) -> float:
        """Sampling: each rollout's prompt + response as one causal pass, a logit row per
        generated token (prefix sharing between a prompt's rollouts is not discounted)."""
        return sum(self.forward(p + r, r) for p, r in pairs)

    def forward_pass(self, pairs: Iterable[tuple[int, int]]) -> float:
        """A no-grad forward (old log-probs, teacher) over prompt + response, logits at the response."""
        return sum(self.forward(p + r, r) for p, r in pairs)

    def update(self, pairs: Iterable[tuple[int, int]], checkpointing: bool = False) -> float:
        """A training forward + backward over prompt + response, logits at the response."""
        return sum(self.train(p + r, r, checkpointing) for p, r in pairs)

    def computed(self, segments: Iterable[tuple[int, int, int]], backward: bool = False,
                 checkpointing: bool = False) -> float:
        """What a forward (``backward``: and its backward) really computed, from its batch's
        ``segments`` ``(new tokens, logit positions, cached context)``: a shared prefix counts
        once. The budget's FLOPs above are the method's (whole sequences); these measure the
        hardware's work (MFU)."""
        total = 0.0
        for n, logits, context in segments:
            fwd = self.forward(n, logits, context)
            total += 3.0 * fwd + (self.recompute(n, context) if checkpointing else 0.0) if backward else fwd
        return total


def _check(**counts: int) -> None:
    for name, value in counts.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
