#!/usr/bin/env bash
# GPU smoke run: 5 steps each of GRPO, SDPO and SRPO on a random-initialised Qwen3-0.6B-shaped model
# (no download: the tokenizer is srpo-tiny's, trained here; the model keeps Qwen3's 151,936-token
# vocabulary), with vLLM rollouts (sleep mode on), run.sharding=fsdp, bf16, one rank per GPU.
# Prints per method: seconds per step by phase, generated tokens/s, training MFU and peak memory.
#
#   bash benchmarks/gpu_smoke.sh                 # all GPUs of the machine
#   NGPU=2 bash benchmarks/gpu_smoke.sh          # two ranks (NCCL)
#   SHAPE=tiny DEVICE=cpu bash benchmarks/gpu_smoke.sh   # the same code path on CPU, in seconds
#
# Environment: OUT (default runs/gpu_smoke), NGPU, SHAPE (0.6b | tiny), DEVICE (cuda | cpu),
# PEAK_TFLOPS (dense bf16 peak of one GPU for MFU; default 989, an H100 SXM), MODEL (a local model
# directory to use instead of the random one). A random model never answers in the task's format,
# so every reward is 0 and SDPO/SRPO distil nothing (the `teacher` column shows the samples the
# teacher scored): give MODEL a real instruct model to time the teacher's forward too.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_smoke}
DEVICE=${DEVICE:-cuda}
SHAPE=${SHAPE:-0.6b}
if [ "$DEVICE" = cuda ]; then NGPU=${NGPU:-$(nvidia-smi -L | wc -l)}; else NGPU=${NGPU:-1}; fi
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"

if [ -n "${MODEL:-}" ]; then rm -rf "$OUT/model"; ln -s "$(realpath "$MODEL")" "$OUT/model"; else
python - "$OUT/model" "$SHAPE" <<'PY'
import sys, torch
from transformers import Qwen3Config, Qwen3ForCausalLM
from srpo_ref.tiny import train_tokenizer
out, shape = sys.argv[1], sys.argv[2]
tok = train_tokenizer()
if shape == "0.6b":  # Qwen3-0.6B's shape (srpo_ref.memory_plan.KNOWN_SHAPES)
    dims = dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                num_key_value_heads=8, head_dim=128, vocab_size=151936)
else:
    dims = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, head_dim=32, vocab_size=len(tok))
torch.manual_seed(0)
cfg = Qwen3Config(**dims, tie_word_embeddings=True, max_position_embeddings=4096, bos_token_id=tok.bos_token_id,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
Qwen3ForCausalLM(cfg).save_pretrained(out)
tok.save_pretrained(out)
print(f"model: {shape}, {sum(p.numel() for p in Qwen3ForCausalLM(cfg).parameters()) / 1e6:.1f}M parameters -> {out}")
PY
fi

if [ "$DEVICE" = cuda ]; then DTYPE=bfloat16; P=32; G=8; T=512; MB=8; else DTYPE=float32; P=4; G=4; T=40; MB=8; fi
for METHOD in grpo sdpo srpo; do
  EXTRA=""
  [ "$METHOD" = grpo ] && EXTRA="optim.mini_batch_prompts=$((P / 4))"
  rm -rf "$OUT/$METHOD"
  python -m torch.distributed.run --standalone --nproc_per_node "$NGPU" -m srpo_ref.trainer \
    --config srpo_ref/configs/tiny.yaml model.path="$OUT/model" model.dtype=$DTYPE data.benchmark=tiny_mcq \
    method.name=$METHOD rollout.engine=vllm run.sharding=fsdp run.device=$DEVICE run.max_steps=5 run.save_every=0 \
    rollout.prompts_per_step=$P rollout.rollouts_per_prompt=$G rollout.max_response_tokens=$T optim.mini_batch_prompts=$P \
    optim.micro_batch_size=$MB optim.warmup_steps=0 eval.val_every=0 run.progress=false run.out_dir="$OUT/$METHOD" $EXTRA \
    > "$OUT/$METHOD.log" 2>&1 || { echo "$METHOD failed; see $OUT/$METHOD.log"; tail -20 "$OUT/$METHOD.log"; exit 1; }
done

python - "$OUT" "$NGPU" "$PEAK_TFLOPS" <<'PY'
import json, statistics, sys
from pathlib import Path
out, ngpu, peak = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
print(f"\n{'method':<6} {'s/step':>7} {'generate':>9} {'teacher':>8} {'update':>8} {'gen tok/s':>10} {'train MFU':>10} {'peak GiB':>9} {'distilled':>10}")
for m in ("grpo", "sdpo", "srpo"):
    recs = [json.loads(l) for l in (out / m / "steps.jsonl").read_text().splitlines()][1:]  # step 1 warms up
    med = lambda f: statistics.median(f(r) for r in recs)
    gen_tps = med(lambda r: r["tokens"]["generate"] / max(r["seconds"]["generate"], 1e-9))
    # the per-phase FLOPs and seconds in the records are rank 0's: MFU per GPU
    mfu = med(lambda r: (r["flops"]["update"] + r["flops"]["old_logprob"] + r["flops"]["teacher_forward"])
              / max(r["seconds"]["update"] + r["seconds"]["old_logprob"] + r["seconds"]["teacher_forward"], 1e-9)) / (peak * 1e12)
    peak_gib = max((r.get("peak_memory_gib") or 0) for r in recs)
    print(f"{m:<6} {med(lambda r: r['seconds']['step']):7.2f} {med(lambda r: r['seconds']['generate']):9.2f} "
          f"{med(lambda r: r['seconds']['teacher_forward']):8.2f} {med(lambda r: r['seconds']['update']):8.2f} "
          f"{gen_tps:10.0f} {100 * mfu:9.1f}% {peak_gib:9.2f} {sum(r['teacher_forward_samples'] for r in recs):10d}")
PY
