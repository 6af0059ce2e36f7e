"""The entropy weights' normaliser (SPEC section 5): what the raw weights ``exp(-beta H)`` of the
distilled tokens are divided by, chosen by ``method.weight_normalizer``:

- ``step`` (the SPEC): the mean raw weight over the training step's distilled tokens, on every
  rank. The step is one optimizer update here (config.py refuses several with entropy weights),
  so it is the update's mean;
- ``update``: the mean over the optimizer update's distilled tokens, on every rank;
- ``micro_batch``: each micro-batch's own mean (``losses.srpo_objective`` with no normaliser).

Each choice is a strategy with the three calls an update makes, so the update never tests the
name. ``all_sum`` is the caller's sum over ranks (a collective: the trainer's
``distributed.all_sum``, TRL's ``accelerator.gather``); both callers share the rule, not the
communication.
"""

from __future__ import annotations

from typing import Callable

import torch

AllSum = Callable[[torch.Tensor], torch.Tensor]


def mean_raw_weight(raw_sum, count, all_sum: AllSum) -> float:
    """This rank's sum of raw weights and count of distilled tokens, summed over ranks, divided
    (1.0 when nothing was distilled). A collective: every rank calls it once per update."""
    raw = all_sum(torch.tensor([float(raw_sum), float(count)], dtype=torch.float64))
    return (raw[0] / raw[1]).item() if raw[1] > 0 else 1.0


class UpdateMean:
    """``step`` and ``update``: one mean over the update's distilled tokens on every rank."""

    needs_raw_weights = True

    def update_mean(self, raw_sum, count, all_sum: AllSum) -> float:
        """The normaliser of the update's losses, from every micro-batch's raw weights (a
        collective): found in the pass when the update is one micro-batch per rank, or before it
        from a no-grad pre-pass (TRL)."""
        return mean_raw_weight(raw_sum, count, all_sum)

    def deferred_pass_normaliser(self) -> float:
        """Several micro-batches, normalised afterwards: the distilled micro-batches run on raw
        weights (divided by 1) ..."""
        return 1.0

    def gradient_divisor(self, raw_sum, count, all_sum: AllSum) -> float:
        """... and their accumulated gradients are then divided by the update's mean (a collective)."""
        return mean_raw_weight(raw_sum, count, all_sum)


class MicroBatchMean:
    """``micro_batch``: each micro-batch divides by its own mean (no collective, nothing deferred)."""

    needs_raw_weights = False

    def update_mean(self, raw_sum, count, all_sum: AllSum) -> None:
        return None

    def deferred_pass_normaliser(self) -> None:
        return None

    def gradient_divisor(self, raw_sum, count, all_sum: AllSum) -> float:
        return 1.0


NORMALIZERS = {"step": UpdateMean(), "update": UpdateMean(), "micro_batch": MicroBatchMean()}


def normalizer(name: str) -> UpdateMean | MicroBatchMean:
    if name not in NORMALIZERS:
        raise ValueError(f"weight_normalizer must be one of {', '.join(NORMALIZERS)}, got {name!r}")
    return NORMALIZERS[name]
