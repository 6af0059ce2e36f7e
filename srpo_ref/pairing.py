"""What a sharded (FSDP) run adds to an update: collective pairing, stated once.

Under FSDP every forward and backward is a collective: each layer all-gathers its weights from
every rank. So all ranks must run the same sequence of passes, whatever rows they hold. A rank
with fewer micro-batches than the busiest rank runs a one-token dummy pass (with a zero loss's
backward) for each one it lacks, and a rank with nothing to distil runs a dummy teacher forward
while another rank runs a real one. The dummies change no gradient (their loss is 0) and no cost
(they are not counted). Unsharded runs need none of this: each rank computes on its own and
gradients are all-reduced once, after the update (``Pairing(sharded=False)`` answers so).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

from srpo_ref import distributed
from srpo_ref.forward import make_batch, response_logits


class Pairing:
    """Keeps a sharded run's ranks in step. ``teacher_forward(batch, student_logits)`` is the
    update's own teacher forward, run on the dummy batch when another rank distils."""

    def __init__(self, model, pad_id: int, device, autocast, shared_prefix: bool, teacher_forward: Callable,
                 sharded: bool):
        self.model, self.pad_id, self.device, self.autocast = model, pad_id, device, autocast
        self.shared_prefix, self.teacher_forward, self.sharded = shared_prefix, teacher_forward, sharded

    def n_micro_batches(self, n_rows: int, micro_batch_size: int) -> int:
        """Micro-batches this rank runs for ``n_rows`` rows: sharded, as many as the busiest rank."""
        n = -(-n_rows // micro_batch_size)
        return distributed.max_over_ranks(n) if self.sharded else n

    def teacher_elsewhere(self, distils_here: bool) -> bool:
        """Sharded: another rank runs a teacher forward that this rank has no rows for."""
        return self.sharded and distributed.max_over_ranks(int(distils_here)) > 0 and not distils_here

    def dummy_pass(self, with_teacher: bool, backward: bool, student: bool = True, keep_graph: bool = False):
        """A one-token forward (and zero-loss backward) that joins the other ranks' collectives:
        the student's (unless ``student`` is false), then the teacher's (``with_teacher``).
        ``keep_graph`` returns the student's logits for the caller's own backward instead."""
        b = make_batch([[self.pad_id, self.pad_id]], [[self.pad_id]], self.pad_id, self.device, self.shared_prefix)
        logits = None
        if student:
            with contextlib.nullcontext() if backward or keep_graph else torch.no_grad():
                logits = response_logits(self.model, b, self.autocast)
        if with_teacher:
            with torch.no_grad():
                vocab = self.model.config.vocab_size
                self.teacher_forward(b, logits if logits is not None else torch.zeros(1, 1, vocab, device=self.device))
        if backward:
            (logits.sum() * 0.0).backward()
        return logits
