"""Generated tokens per second, HF ``generate`` against vLLM, same model, prompts and sampling.

    python benchmarks/generation_speed.py --model work/tiny/models/tiny [--prompts 64] [--n 8]

Each engine first runs one warm-up batch (not timed); engine start-up is reported separately.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--benchmark", default="tiny_mcq")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from srpo_ref import tasks
    from srpo_ref.rollout import HFEngine, SamplingConfig, VLLMEngine
    from srpo_ref.teacher import chat_prompt_ids

    tok = AutoTokenizer.from_pretrained(a.model)
    prompts = [chat_prompt_ids(tok, ex.messages) for ex in tasks.load_task(a.benchmark, "test")[: a.prompts]]
    sampling = SamplingConfig(1.0, 1.0, a.max_new_tokens, 0)
    results = {}
    for name in ("hf", "vllm"):
        t0 = time.perf_counter()
        if name == "hf":
            device = "cuda" if torch.cuda.is_available() else "cpu"
            engine = HFEngine(AutoModelForCausalLM.from_pretrained(a.model).to(device), tok)
        else:
            engine = VLLMEngine(a.model, tok, max_model_len=1024)
        start = time.perf_counter() - t0
        engine.generate(prompts[:8], a.n, sampling)  # warm-up
        tokens, seconds = 0, 0.0
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            out = engine.generate(prompts, a.n, sampling)
            seconds += time.perf_counter() - t0
            tokens += sum(len(s.response_ids) for g in out for s in g)
        results[name] = (start, tokens / seconds, tokens / a.repeats)
        del engine
    print(f"{a.prompts} prompts x {a.n} samples, up to {a.max_new_tokens} new tokens, {a.repeats} timed repeats, model "
          f"{a.model}")
    print(f"{'engine':<8}{'start (s)':>12}{'tokens/s':>12}{'tokens/batch':>14}")
    for name, (start, tps, per) in results.items():
        print(f"{name:<8}{start:>12.1f}{tps:>12.0f}{per:>14.0f}")
    print(f"vLLM / HF throughput: {results['vllm'][1] / results['hf'][1]:.2f}x")


if __name__ == "__main__":
    main()
