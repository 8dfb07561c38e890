"""A prefilled request joining the decode batch: one sequence, or the n forks of an `n` > 1 request.

The n sequences of one request share one prefill (blend included): the prompt is computed once,
and its K/V rows are copied into one batch slot per sequence, from which each decodes on its own.
Each fork samples its first token from the same last-position logits with its own sampler (its own
seed), so fork i answers exactly as a request of its own with fork i's sampling parameters would.
The chunk-cache write-back of a blended prefill is done once, after the first live fork's answer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from engine.preemptible import TaskAborted
from engine.prefill_work import Prefilled
from engine.sequence import Sequence

if TYPE_CHECKING:
    from engine.batch_runner import BatchRunner

log = logging.getLogger(__name__)


def join_batch(runner: BatchRunner, seq: Sequence, finished: list[int]) -> None:
    """Take `seq`'s finished (or aborted) prefill and put each of its sequences into the batch; a
    sequence that is cancelled, or done at its first token, finishes at once instead."""
    task, seq.prefill = seq.prefill, None
    assert task is not None
    members, seq.forks = seq.members, []
    if all(m.cancel.is_set() for m in members) or isinstance(task.error, TaskAborted):
        for m in members:
            m.cancel.set()
            runner.finish(m, finished)
        return
    if task.error is not None or task.result is None:
        error = task.error or RuntimeError("prefill produced no result")
        for m in members:
            m.sink.put(error)
            m.sink.end()
        return
    pre = task.result
    runner.tokens_in += len(seq.prompt)  # once for the request, however many sequences share it
    live = [m for m in members if not m.cancel.is_set()]
    for m in members:
        if m.cancel.is_set():
            runner.finish(m, finished)
    if live:  # the first live sequence stores the chunk caches the prefill computed
        live[0].blend_result, live[0].entries = pre.blend, pre.entries
    for m in live:
        _start(runner, m, pre, finished)


def _start(runner: BatchRunner, seq: Sequence, pre: Prefilled, finished: list[int]) -> None:
    n = len(seq.prompt)
    seq.state.extra_usage, seq.state.extra_timings = dict(pre.usage), dict(pre.timings)
    try:
        token = seq.state.sample(pre.logits)
        runner.accept(seq, token, seq.state.logprob_of(pre.logits, token))
    except Exception as exc:  # out of the batch already: fail it alone, never leave it waiting
        log.exception("first token of request %s failed", seq.id)
        seq.sink.put(exc)
        seq.sink.end()
        return
    if seq.state.done:
        runner.finish(seq, finished)
        return
    runner.batch.add(pre.kv, n, n + seq.params.max_tokens)
    runner.decoding.append(seq)
