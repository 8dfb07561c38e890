"""What the batch scheduler reports about itself: gauges and counters, and a log of its steps."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of the engine's load; counters only ever grow."""

    queue_depth: int  # requests waiting for a place in the batch
    batch_size: int  # sequences in the decode batch
    prefilling: int  # admitted requests whose prompt is being prefilled (blended or not)
    writing_back: int  # answered requests whose chunk caches are still being stored
    max_batch_size: int
    tokens_in: int  # prompt tokens prefilled, in total
    tokens_out: int  # tokens generated, in total
    steps: int  # scheduler steps that did any work
    kv_rows: int  # K/V rows held by the decode batch
    kv_bytes: int  # bytes allocated for the decode batch's K/V


@dataclass(frozen=True)
class StepRecord:
    """One scheduler step: who got a token from the batched forward, and who got prefill work.

    Work is counted in rows x layers, the unit of the prefill budget (a 100-token prompt through a
    30-layer model is 3000).
    """

    index: int
    decoded: tuple[int, ...]  # request ids in the batched decode forward, in slot order
    prefilled: tuple[tuple[int, int], ...]  # (request id, rows x layers) of prefill work
    written: tuple[tuple[int, int], ...]  # (request id, rows x layers) of chunk-cache write-back work
    finished: tuple[int, ...]  # request ids that sent their final event in this step
