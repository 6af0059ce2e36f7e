"""``srpo_ref.flops`` against ``torch.utils.flop_counter.FlopCounterMode`` on randomly initialised
models built from configs (no downloads): the tiny Qwen3 policy (``srpo_ref.models.tiny.build_model``'s
shape) and SmolLM2-135M's Llama shape.

What the counter counts (torch 2.13 / transformers 5.19, CPU):

- ``aten.mm`` (the linear layers and the output layer, run only at ``logits_to_keep`` positions):
  exactly ``2 * weights * tokens``; the counter and the estimate agree on it exactly (the
  estimate's ``2 N_ne`` also counts norm weights: 0.18% of N_ne tiny, 0.03% SmolLM2).
- attention with HF's default ``sdpa`` on CPU: nothing. It dispatches to
  ``aten._scaled_dot_product_flash_attention_for_cpu``, which has no flop formula registered
  (only the CUDA flash / efficient / cuDNN kernels do, and those count densely: "NB: We aren't
  accounting for causal attention here").
- attention with ``attn_implementation="eager"``: the dense ``L x L`` score and value ``bmm``s,
  ``4 n_layer d_attn L^2`` (GQA keys/values repeated to all query heads first). The estimate is
  causal, ``4 n_layer d_attn L (L + 1) / 2``, so the counter's attention is compared after scaling
  by the causal fraction ``(L + 1) / (2 L)``; a one-token step after a KV cache of ``C`` attends
  to all ``C + 1`` keys and is compared unscaled.

Measured (``python tests/unit/test_flops.py`` prints it; one forward, batch 1, random init; "eager" =
counter total with eager attention = mm + dense attention bmm; "sdpa" = counter total with sdpa =
mm alone; "causal" = mm + eager bmm x (L + 1) / (2 L); "old" = the trainer's former 2 * N_all * L):

  model    L   logits           eager eager attn (dense)            sdpa          causal        estimate             old
  tiny     64     64      125,829,120          8,388,608     117,440,512     121,700,352     121,880,576     117,620,736
  tiny    160     16      308,281,344         52,428,800     255,852,544     282,230,784     282,681,344     294,051,840
  tiny    400    400    1,061,683,200        327,680,000     734,003,200     898,252,800     899,379,200     735,129,600
  smollm2  64     64   17,496,539,136        283,115,520  17,213,423,616  17,357,193,216  17,361,690,624  17,217,921,024
  smollm2 160     16   36,649,304,064      1,769,472,000  34,879,832,064  35,770,097,664  35,781,341,184  43,044,802,560
  smollm2 400      1   96,050,479,104     11,059,200,000  84,991,279,104  90,534,703,104  90,562,811,904 107,612,006,400

estimate / causal - 1 is the norm weights' share of N_ne (+0.15%/+0.16%/+0.13% tiny, +0.03% SmolLM2).
"""

from __future__ import annotations

import pytest
import torch

from srpo_ref.flops import FlopModel

TOLERANCE = 0.05  # the brief's bound; measured gaps are under 0.2%
LENGTHS_AND_LOGITS = [(64, 0), (160, 16), (400, 0)]  # logits_to_keep: 0 = every position (HF)


class _TokenizerShape:
    """What ``srpo_ref.models.tiny.build_model`` reads from a tokenizer, without training one."""

    eos_token_id, pad_token_id = 2, 0

    def __len__(self) -> int:
        return 1024  # tiny.train_tokenizer's vocab_size


def tiny_model():
    from srpo_ref.models.tiny import build_model

    return build_model(_TokenizerShape()).eval()


def smollm2_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                      num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True, max_position_embeddings=8192,
                      rope_theta=100000.0)
    return LlamaForCausalLM(cfg).eval()


BUILDERS = {"tiny": tiny_model, "smollm2": smollm2_model}


@pytest.fixture(scope="module", params=list(BUILDERS))
def model(request):
    torch.set_num_threads(1)
    return BUILDERS[request.param]()


def count(fn) -> tuple[int, int, int]:
    """(total, linear = mm + addmm, attention = bmm) counted while ``fn`` runs."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    ops = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    linear = ops.get("aten.mm", 0) + ops.get("aten.addmm", 0)
    return counter.get_total_flops(), linear, ops.get("aten.bmm", 0)


def with_attention(model, implementation: str):
    model.set_attn_implementation(implementation)
    return model


def matmul_weights(model) -> int:
    """Weights of the decoder layers' linear layers (what the counter's mm sees, norms excluded)."""
    return sum(m.weight.numel() for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear))


def forward_counts(model, seq_len: int, logits_to_keep: int) -> dict:
    ids = torch.randint(0, model.config.vocab_size, (1, seq_len), generator=torch.Generator().manual_seed(seq_len))
    with torch.no_grad():
        with_attention(model, "eager")
        total, linear, attn = count(lambda: model(input_ids=ids, logits_to_keep=logits_to_keep))
        with_attention(model, "sdpa")
        sdpa_total, sdpa_linear, sdpa_attn = count(lambda: model(input_ids=ids, logits_to_keep=logits_to_keep))
    causal_fraction = (seq_len + 1) / (2 * seq_len)
    fm = FlopModel.from_model(model)
    k = logits_to_keep or seq_len
    return {"total": total, "linear": linear, "attn_dense": attn, "causal_scaled": linear + attn * causal_fraction,
            "sdpa_total": sdpa_total, "sdpa_linear": sdpa_linear, "sdpa_attn": sdpa_attn, "logits": k,
            "estimate": fm.forward(seq_len, k), "attention_estimate": fm.attention(seq_len),
            "old": 2 * sum(p.numel() for p in model.parameters()) * seq_len}


# ---------------------------------------------------------------- shape


def test_from_config_matches_parameter_count(model):
    from_model, from_config = FlopModel.from_model(model), FlopModel.from_config(model.config)
    assert from_model == from_config
    embedding = model.get_input_embeddings().weight.numel()
    assert from_model.n_nonembedding == sum(p.numel() for p in model.parameters()) - embedding  # tied lm_head
    assert from_model.d_attn == model.config.num_attention_heads * model.config.head_dim
    assert from_model.n_down_projection == sum(layer.mlp.down_proj.weight.numel() for layer in model.model.layers)


def test_untied_output_layer_is_not_counted_as_nonembedding():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=100, tie_word_embeddings=False, attention_bias=True)
    m = LlamaForCausalLM(cfg)
    fm = FlopModel.from_model(m)
    assert fm == FlopModel.from_config(cfg)
    assert fm.n_nonembedding == sum(p.numel() for p in m.parameters()) - 2 * 100 * 32


# ---------------------------------------------------------------- against the counter


@pytest.mark.parametrize("seq_len,logits_to_keep", LENGTHS_AND_LOGITS)
def test_forward_matches_flop_counter(model, seq_len, logits_to_keep):
    if model.config.num_hidden_layers > 4 and seq_len == 400:
        logits_to_keep = 1  # SmolLM2: the last position only (a decode-style forward), keeps the run short
    c = forward_counts(model, seq_len, logits_to_keep)
    fm = FlopModel.from_model(model)
    # the linear part exactly: decoder matmuls at every position, the output layer at the kept ones
    assert c["linear"] == 2 * matmul_weights(model) * seq_len + fm.output_layer(c["logits"])
    # eager attention is the dense square; causally it is (L + 1) / (2 L) of it, which is the estimate
    assert c["attn_dense"] == 4 * fm.n_layer * fm.d_attn * seq_len**2
    assert c["attn_dense"] * (seq_len + 1) / (2 * seq_len) == pytest.approx(c["attention_estimate"], rel=1e-9)
    assert c["causal_scaled"] == pytest.approx(c["estimate"], rel=TOLERANCE)
    assert abs(c["causal_scaled"] - c["estimate"]) / c["estimate"] < 0.005  # only the norm weights differ
    # sdpa on CPU: same linear work; its attention kernel is either uncounted or counted densely
    assert c["sdpa_linear"] == c["linear"]
    assert c["sdpa_attn"] in (0, c["attn_dense"])


@pytest.mark.parametrize("checkpointing,early_stop", [(False, True), (True, True), (True, False)])
def test_train_step_matches_flop_counter(checkpointing, early_stop):
    """Forward + backward, and the rerun under gradient checkpointing. Measured (tiny, batch 2,
    L = 96, eager): mm 1,056,964,608 without checkpointing (3 x (decoder matmuls 301,989,888 +
    output layer 50,331,648)); with checkpointing 1,283,457,024: the rerun is 226,492,416, the
    decoder's matmuls less the four down projections (4 x 18,874,368), which PyTorch's early stop
    skips; 1,358,954,496 (a whole decoder) with early stop off. Attention bmm is rerun whole."""
    from torch.utils.checkpoint import set_checkpoint_early_stop

    torch.set_num_threads(1)
    model = with_attention(tiny_model(), "eager").train()  # HF checkpoints only in train mode
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    batch, seq_len = 2, 96
    ids = torch.randint(0, model.config.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(1))
    with set_checkpoint_early_stop(early_stop):
        total, linear, attn = count(lambda: model(input_ids=ids).logits.float().logsumexp(-1).mean().backward())
    fm = FlopModel.from_model(model)
    decoder_matmuls = 2 * matmul_weights(model) * seq_len * batch
    not_rerun = 2 * fm.n_down_projection * seq_len * batch if early_stop else 0
    passes = 4 if checkpointing else 3  # forward, backward (2x), rerun
    assert linear == (passes * decoder_matmuls - (not_rerun if checkpointing else 0)
                      + 3 * batch * fm.output_layer(seq_len))
    assert attn == passes * batch * 4 * fm.n_layer * fm.d_attn * seq_len**2  # dense, rerun whole
    counted = linear + attn * (seq_len + 1) / (2 * seq_len)
    estimate = batch * fm.train(seq_len, seq_len, checkpointing)
    if checkpointing and not early_stop:
        estimate += 2 * fm.n_down_projection * seq_len * batch  # the whole decoder is rerun
    assert counted == pytest.approx(estimate, rel=TOLERANCE)
    assert abs(counted - estimate) / estimate < 0.005


@pytest.mark.parametrize("new_tokens", [1, 8])
def test_kv_cache_context(new_tokens):
    """New tokens after a cached prefix attend to the prefix plus their own causal part."""
    torch.set_num_threads(1)
    model = with_attention(tiny_model(), "eager")
    fm = FlopModel.from_model(model)
    prefix_len = 100
    ids = torch.randint(0, model.config.vocab_size, (1, prefix_len + new_tokens),
                        generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        cache = model(input_ids=ids[:, :prefix_len], use_cache=True).past_key_values
        total, linear, attn = count(lambda: model(input_ids=ids[:, prefix_len:], past_key_values=cache, use_cache=True,
                                                  logits_to_keep=1))
    dense = 4 * fm.n_layer * fm.d_attn * new_tokens * (prefix_len + new_tokens)
    assert attn == dense
    causal_fraction = fm.attention(new_tokens, prefix_len) / dense  # 1 for a single decode step
    assert (causal_fraction == 1.0) == (new_tokens == 1)
    assert linear + attn * causal_fraction == pytest.approx(fm.forward(new_tokens, 1, context=prefix_len), rel=0.005)


# ---------------------------------------------------------------- the formulas themselves

SHAPE = FlopModel(n_nonembedding=1_000_000, n_layer=4, d_attn=128, d_model=128, vocab=1024)


def test_splitting_at_a_cache_boundary_costs_the_same():
    for a, b, k in [(1, 1, 1), (100, 37, 5), (0, 50, 50), (63, 1, 1)]:
        assert SHAPE.forward(a, 0) + SHAPE.forward(b, k, context=a) == SHAPE.forward(a + b, k)
    # token by token (generation with a KV cache) equals one causal pass
    steps = sum(SHAPE.forward(1, 1, context=c) for c in range(30))
    assert steps == SHAPE.forward(30, 30)


def test_attention_is_kaplans_term_up_to_the_causal_plus_one():
    n_ctx = 2048
    kaplan_per_token = 2 * SHAPE.n_layer * n_ctx * SHAPE.d_attn
    assert SHAPE.attention(n_ctx) / n_ctx == pytest.approx(kaplan_per_token * (n_ctx + 1) / n_ctx, rel=1e-12)
    assert SHAPE.decoder(n_ctx) / n_ctx == pytest.approx(2 * SHAPE.n_nonembedding + kaplan_per_token, rel=1e-3)


def test_train_and_phases():
    L, K = 200, 50
    assert SHAPE.train(L, K) == 3 * SHAPE.forward(L, K)
    assert SHAPE.train(L, K, checkpointing=True) == 4 * SHAPE.decoder(L) + 3 * SHAPE.output_layer(K)  # no N_down
    with_down = FlopModel(**{**SHAPE.__dict__, "n_down_projection": 300_000})
    assert SHAPE.train(L, K, True) - with_down.train(L, K, True) == 2 * 300_000 * L  # only the rerun changes
    assert with_down.train(L, K) == SHAPE.train(L, K)
    pairs = [(40, 10), (40, 25), (7, 0)]
    per_pair = [SHAPE.forward(p + r, r) for p, r in pairs]
    assert SHAPE.generate(pairs) == SHAPE.forward_pass(pairs) == sum(per_pair)
    assert SHAPE.update(pairs) == 3 * sum(per_pair)
    assert SHAPE.update(pairs, checkpointing=True) > SHAPE.update(pairs)
    assert SHAPE.generate([]) == 0
    # cost is quadratic: one long rollout costs more than two halves
    assert SHAPE.generate([(0, 400)]) > SHAPE.generate([(0, 200), (0, 200)])


def test_rejects_impossible_counts():
    with pytest.raises(ValueError):
        SHAPE.forward(10, 11)
    with pytest.raises(ValueError):
        SHAPE.forward(-1, 0)
    with pytest.raises(ValueError):
        SHAPE.forward(10, 1, context=-3)


def measured_table() -> list[dict]:
    torch.set_num_threads(1)
    rows = []
    for name, build in BUILDERS.items():
        m = build()
        for seq_len, keep in LENGTHS_AND_LOGITS:
            keep = 1 if name == "smollm2" and seq_len == 400 else keep
            rows.append({"model": name, "L": seq_len, **forward_counts(m, seq_len, keep)})
    return rows


if __name__ == "__main__":
    cols = ["total", "attn_dense", "causal_scaled", "sdpa_total", "estimate", "old"]
    print("model    L    logits  " + "  ".join(f"{c:>16}" for c in cols))
    for r in measured_table():
        print(f"{r['model']:8} {r['L']:4} {r['logits']:6}  " + "  ".join(f"{int(r[c]):>16,}" for c in cols))


def test_computed_flops_follow_the_batch_layout():
    """``flops_computed`` (MFU's numerator) from a batch's segments: whole sequences cost what the
    method's FLOPs say; shared prefixes are computed once (and a row's last response token is
    never an input there)."""
    from srpo_ref.forward import make_batch

    g = torch.Generator().manual_seed(0)
    prefixes = [list(range(3, 3 + n)) for n in (12, 12, 12, 5)]
    responses = [torch.randint(3, 50, (int(n),), generator=g).tolist() for n in (7, 1, 0, 9)]
    pairs = [(len(p), len(r)) for p, r in zip(prefixes, responses)]
    whole = make_batch(prefixes, responses, 0, "cpu", share_prefix=False)
    assert SHAPE.computed(whole.segments) == SHAPE.forward_pass(pairs)
    assert SHAPE.computed(whole.segments, backward=True) == SHAPE.update(pairs)
    assert SHAPE.computed(whole.segments, backward=True, checkpointing=True) == SHAPE.update(pairs, checkpointing=True)
    shared = make_batch(prefixes, responses, 0, "cpu", share_prefix=True)
    # an empty response's row is its prefix's last token alone
    expected = SHAPE.forward(11, 0) + SHAPE.forward(4, 0) + sum(SHAPE.forward(max(r, 1), r, context=p - 1) for p,
                                                                r in pairs)
    assert SHAPE.computed(shared.segments) == pytest.approx(expected, rel=1e-12)
    assert SHAPE.computed(shared.segments) < SHAPE.forward_pass(pairs)
    assert sum(n for n, _, _ in shared.segments) == shared.n_computed
