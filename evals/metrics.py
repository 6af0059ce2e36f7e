"""Evaluation metrics over a ``[questions][samples]`` table of rewards.

- ``avg_at_k``: mean reward over all samples (the paper's avg@16), with a bootstrap standard
  error over questions.
- ``pass_at_k``: the unbiased estimator ``1 - C(n - c, k) / C(n, k)`` per question (Chen et
  al. 2021), averaged.
- ``maj_at_k``: majority vote over the extracted answers (ties broken by first occurrence).
"""

from __future__ import annotations

import collections
import math
import random


def avg_at_k(scores: list[list[float]]) -> float:
    flat = [s for row in scores for s in row]
    return sum(flat) / len(flat) if flat else float("nan")


def bootstrap_stderr(scores: list[list[float]], resamples: int = 1000, seed: int = 0) -> float:
    """Standard deviation of avg@k over question-level bootstrap resamples."""
    if len(scores) < 2:
        return float("nan")
    per_q = [sum(r) / len(r) for r in scores]
    rng = random.Random(seed)
    n = len(per_q)
    means = [sum(per_q[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples)]
    mu = sum(means) / resamples
    return math.sqrt(sum((m - mu) ** 2 for m in means) / (resamples - 1))


def pass_at_k_single(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` draws without replacement from ``n`` samples, ``c``
    of them correct, is correct."""
    if k > n:
        raise ValueError(f"k={k} exceeds the number of samples n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def pass_at_k(scores: list[list[float]], k: int, threshold: float = 0.5) -> float:
    vals = [pass_at_k_single(len(r), sum(s >= threshold for s in r), k) for r in scores]
    return sum(vals) / len(vals) if vals else float("nan")


def maj_at_k(answers: list[list[str | None]], golds: list[str]) -> float:
    """Share of questions whose most frequent (non-empty) extracted answer equals the gold."""
    hits = 0
    for row, gold in zip(answers, golds):
        votes = collections.Counter(a for a in row if a)
        if votes:
            top = max(votes.items(), key=lambda kv: (kv[1], -row.index(kv[0])))[0]
            hits += top == str(gold).strip()
    return hits / len(golds) if golds else float("nan")


def summarize(scores: list[list[float]], lengths: list[list[int]], truncated: list[list[bool]],
              answers: list[list[str | None]] | None = None, golds: list[str] | None = None) -> dict:
    k = min(len(r) for r in scores) if scores else 0
    out = {
        "n_questions": len(scores),
        "k": k,
        "avg_at_k": avg_at_k(scores),
        "avg_at_k_stderr": bootstrap_stderr(scores),
        "pass_at_1": pass_at_k(scores, 1) if k else float("nan"),
        f"pass_at_{k}": pass_at_k(scores, k) if k else float("nan"),
        "truncation_rate": avg_at_k([[float(t) for t in r] for r in truncated]),
        "response_length_mean": avg_at_k([[float(x) for x in r] for r in lengths]),
    }
    if answers is not None and golds is not None:
        out["maj_at_k"] = maj_at_k(answers, golds)
    return out
