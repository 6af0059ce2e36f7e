"""The statistics behind every verdict: 95% t-intervals over seeds, the verdict rule, and the
text that shows them; the mean ± std of table cells; the cost claims' verdict rule.

Verdicts (``verdict``): a claim is *reproduced* only when the 95% t-interval over seeds (paired
by seed) of the quantity it is about excludes zero in the paper's direction, *contradicted* when
it excludes zero the other way, and *inconclusive (n seeds)* otherwise. The cost claims have two
rules before that one (``COST_VERDICT_RULE``): *not like-for-like* when the two methods ran
different execution policies, and *mechanism absent in this profile* against GRPO when GRPO's
response length does not grow.
"""

from __future__ import annotations

import math

# Fixed before any run: when a cost claim is decided, and when it is not.
COST_VERDICT_RULE = (
    "Cost claims (SRPO cheaper per step than GRPO / SDPO, in FLOPs) compare like with like: when SRPO and the other "
    "method differ in execution policy in the window (one pays the old-log-prob pass and the other does not), the "
    "verdict is *not like-for-like (what differs)*, never reproduced or contradicted. Against GRPO the paper "
    "attributes the saving to (i) the teacher running on routed samples only and (ii) SRPO's responses being shorter "
    "than GRPO's, whose length grows over training; so when the 95% t-interval over GRPO runs (model x benchmark x "
    "seed) of the least-squares slope of GRPO's mean response length over the window's steps contains 0 or lies below "
    "it, the verdict is *mechanism absent in this profile* and the measured FLOPs difference stays in the evidence. "
    "Against SDPO (teacher on fewer samples, which can always occur) only the like-for-like guard applies. Otherwise "
    "the report's verdict rule (the 95% t-interval over seeds) decides. The evidence of both carries SRPO minus the "
    "other method in GFLOPs/step per phase, averaged over seeds.")


def _t975(df: int) -> float:
    """The exact two-sided 95% Student t quantile for ``df`` degrees of freedom (scipy)."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def interval(values) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)``: the 95% t-interval of the mean of ``values`` (differences paired
    by seed, or one value per run). Fewer than two values give an infinite interval."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(vals)
    if n == 0:
        return float("nan"), -math.inf, math.inf, 0
    mu = sum(vals) / n
    if n < 2:
        return mu, -math.inf, math.inf, n
    sd = math.sqrt(sum((v - mu) ** 2 for v in vals) / (n - 1))
    half = _t975(n - 1) * sd / math.sqrt(n)
    return mu, mu - half, mu + half, n


def verdict(values, expected_sign: int, noun: str = "seeds") -> tuple[str, tuple[float, float, float, int]]:
    """The verdict on a claim whose paper direction is ``expected_sign`` (+1: the quantity is
    positive, -1: negative), from per-seed values of the quantity (or per-run: ``noun``)."""
    mu, lo, hi, n = interval(values)
    if n == 0:
        return "n/a", (mu, lo, hi, n)
    if (expected_sign > 0 and lo > 0) or (expected_sign < 0 and hi < 0):
        return "reproduced", (mu, lo, hi, n)
    if (expected_sign > 0 and hi < 0) or (expected_sign < 0 and lo > 0):
        return "contradicted", (mu, lo, hi, n)
    return f"inconclusive ({n} {noun})", (mu, lo, hi, n)


def interval_text(iv: tuple[float, float, float, int], scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
    """An interval from ``interval`` as the evidence shows it: mean [95% CI low, high], n."""
    mu, lo, hi, n = iv
    if n < 2:
        return f"{mu * scale:+.{digits}f}{unit} (n={n}, no interval)"
    return f"{mu * scale:+.{digits}f}{unit} [95% CI {lo * scale:+.{digits}f}, {hi * scale:+.{digits}f}], n={n}"


def mean_std(values) -> tuple[float, float, int]:
    """``(mean, sample std, n)`` of the values that are not missing (std 0 for one value)."""
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return float("nan"), float("nan"), 0
    mu = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mu) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mu, sd, len(vals)


def mean_std_text(mu, sd=None, n=None, scale=100.0) -> str:
    """A table cell: the mean (x ``scale``), with ± the std over seeds when there are several."""
    if mu is None or (isinstance(mu, float) and math.isnan(mu)):
        return "–"
    s = f"{mu * scale:.1f}"
    if sd is not None and n and n > 1:
        s += f" ± {sd * scale:.1f}"
    return s
