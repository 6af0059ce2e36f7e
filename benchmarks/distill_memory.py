"""Peak memory of the distillation loss path (forward + backward), full-vocabulary against the
memory-lean form (``srpo_ref.losses``: student top-K log-probs and teacher stats in chunks).

    python benchmarks/distill_memory.py [--vocab 151936] [--tokens 2048] [--hidden 16]

Each path runs in a fresh process; the figure is the growth of its peak resident set size over
the inputs (student and teacher hidden states and the output layer), so both count the
student's own ``[T, V]`` logits, which the backward needs either way.
"""

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_path(path: str, vocab: int, tokens: int, hidden: int, topk: int = 100) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from srpo_ref import losses

    torch.manual_seed(0)
    head = torch.nn.Linear(hidden, vocab, bias=False)
    h_student = torch.randn(1, tokens, hidden, requires_grad=True)
    h_teacher = torch.randn(1, tokens, hidden)
    resp = torch.randint(0, vocab, (1, tokens))
    base = _peak_mb()
    logits = head(h_student)  # [1, T, V]: the student's logits, alive in both paths
    if path == "full":
        logp = torch.log_softmax(logits.float(), -1).gather(-1, resp[..., None]).squeeze(-1)
        with torch.no_grad():
            teacher_logits = head(h_teacher)
        div = losses.distillation_loss(logits, teacher_logits, topk=topk)
        ent = losses.teacher_entropy(teacher_logits)
    else:
        logp = losses.token_logprobs(logits, resp)
        ids = logits.detach().topk(topk, -1).indices
        stats = losses.teacher_stats(h_teacher, head, ids)
        div = losses.distillation_loss_topk(losses.topk_logprobs(logits, ids), stats.logp)
        ent = stats.entropy
    loss = (torch.exp(-ent) * div).mean() - logp.mean()
    loss.backward()
    return {"path": path, "vocab": vocab, "tokens": tokens, "peak_growth_mb": round(_peak_mb() - base, 1),
            "loss": loss.item()}


def measure(vocab: int = 151936, tokens: int = 2048, hidden: int = 16) -> dict:
    out = {}
    for path in ("full", "lean"):
        code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import distill_memory as d; "
                f"print(json.dumps(d.run_path({path!r}, {vocab}, {tokens}, {hidden})))")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            raise RuntimeError(res.stderr[-2000:])
        out[path] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--hidden", type=int, default=16)
    a = ap.parse_args()
    out = measure(a.vocab, a.tokens, a.hidden)
    print(f"loss path, V={a.vocab}, T={a.tokens}, one sequence: peak RSS growth over the inputs")
    for path, r in out.items():
        print(f"  {path:<5} {r['peak_growth_mb']:>9.1f} MB   (loss {r['loss']:.6f})")
    print(f"  lean / full = {out['lean']['peak_growth_mb'] / out['full']['peak_growth_mb']:.2f}")


if __name__ == "__main__":
    main()
