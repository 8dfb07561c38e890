"""Continuous batching: one engine thread runs steps; requests join and leave between steps.

Each step (engine/batch_runner.py): (1) admit waiting requests while the batch has room (decoding plus
prefilling sequences <= max_batch_size), starting their prefill; (2) drop cancelled requests, freeing
their batch slot and K/V; (3) one batched forward gives every decoding sequence its next token
(engine/batch_decode.py); (4) with a budget of `prefill_chunk_tokens` tokens through the whole model,
first write-backs an admitted request waits for, then interactive prefills (shortest remaining
prefill first, with aging), and only then background work (see below).

Why a per-step budget over preemptible prefills rather than chunked prefill: a blended prefill
(CacheBlend's check layer, Cache-Craft's row selection) is not a sequence of independent token chunks,
so it cannot be split along the prompt. Every prefill, blended or not, and every write-back instead
runs as a `PreemptibleTask` that pauses at layer boundaries (engine/preemptible.py): the cut is along
layers, the work is bitwise the same as one uninterrupted call, and a long prompt costs each step
about what a `prefill_chunk_tokens`-token chunk would. Running decodes wait for at most one slice
per step, and a chunk-cache fetch runs on the task's own thread before its first layer, overlapping
the decode steps. A write-back starts only after its request's final event is sent; a blended
request admitted while write-backs are pending starts its lookup once they are stored, so it reuses
what they computed (as a one-at-a-time server would let it) instead of recomputing it.

Priorities. Interactive work (decoding, prefills) comes first; work nobody waits for runs at
background priority (engine/background.py): write-backs nobody waits for, and the jobs other parts
hand in through `run_background` (ingestion's perplexity chunking and chunk-cache warm-up). It is
paused at the next layer boundary when a request arrives and resumed when the model is free again,
with aging so that it is never starved. Waiting requests are admitted by cost: the one with the least
prefill left after reuse first (engine/prefill_cost.py), less credit for the time it has waited, so a
warm request is not stuck behind a cold 6,000-token one and a cold one is never starved.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from engine.background import BackgroundJob
from engine.batch_runner import BatchRunner
from engine.blend.chunk_cache import ChunkCache
from engine.blend.options import BlendOptions
from engine.config import SchedulerConfig
from engine.decode_state import DecodeState
from engine.detokenizer import Decoder
from engine.event_sink import EventSink
from engine.model import LlamaModel
from engine.prefill_cost import prefill_cost
from engine.prompt import Prompt
from engine.request_queue import QueueFull
from engine.sampling import SamplingParams
from engine.sequence import Sequence
from engine.stats import EngineStats, StepRecord

log = logging.getLogger(__name__)

T = TypeVar("T")


class Scheduler:
    """Serves many requests at once over one model. `submit`, `stats`, `step_log` and `close` are
    thread-safe; everything else runs on the scheduler's own thread (started on first submit)."""

    def __init__(
        self,
        model: LlamaModel,
        tokenizer: Decoder,
        eos_ids: frozenset[int],
        chunk_cache: ChunkCache,
        cfg: SchedulerConfig,
    ) -> None:
        self.tokenizer, self.eos_ids, self.cfg = tokenizer, eos_ids, cfg
        self.runner = BatchRunner(model, chunk_cache, cfg, self._wake)
        self.chunk_cache = chunk_cache
        self._unpriced: list[Sequence] = []  # submitted, prefill cost not estimated yet
        self._background: list[BackgroundJob[object]] = []  # handed in, not yet given to the runner
        self._cond = threading.Condition()
        self._waiting: deque[Sequence] = deque()
        self._log: deque[StepRecord] = deque(maxlen=cfg.step_log_size)
        self._ids = itertools.count(1)
        self._steps = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(
        self,
        prompt: Prompt,
        params: SamplingParams,
        sink: EventSink,
        cancel: threading.Event | None = None,
        blend: BlendOptions | None = None,
        salt: str = "",
    ) -> int:
        """Queue a request whose events go to `sink`; return its id. Raises QueueFull when
        max_batch_size requests are in the batch and max_waiting more wait behind it."""
        cancels = [cancel if cancel is not None else threading.Event()]
        return self.submit_group(prompt, [params], [sink], cancels, blend, salt)[0]

    def submit_group(
        self,
        prompt: Prompt,
        params: list[SamplingParams],
        sinks: list[EventSink],
        cancels: list[threading.Event],
        blend: BlendOptions | None = None,
        salt: str = "",
    ) -> list[int]:
        """Queue the n sequences of one request (one sampling parameters, sink and cancel each): they
        share one prefill, then decode side by side (engine/batch_join.py). Return their ids. Raises
        ValueError when n exceeds max_batch_size, QueueFull when there is no room for them."""
        n = len(params)
        if not 0 < n <= self.cfg.max_batch_size or not n == len(sinks) == len(cancels):
            raise ValueError(f"a request of {n} sequences does not fit a batch of {self.cfg.max_batch_size}")
        with self._cond:
            if self._closed:
                raise RuntimeError("the scheduler is closed")
            waiting = sum(s.width for s in self._waiting)
            if waiting + self.runner.active + n > self.cfg.max_batch_size + self.cfg.max_waiting:
                raise QueueFull(self._retry_after())
            started = time.perf_counter()
            members = [
                Sequence(
                    next(self._ids),
                    prompt,
                    p,
                    blend,
                    salt,
                    sink,
                    cancel,
                    DecodeState(self.tokenizer, self.eos_ids, p, prompt_tokens=len(prompt), started=started),
                )
                for p, sink, cancel in zip(params, sinks, cancels, strict=True)
            ]
            seq = members[0]
            seq.forks = members[1:]
            seq.cost_left = len(prompt)  # until priced on the scheduler's thread (a store lookup)
            self._waiting.append(seq)
            self._unpriced.append(seq)
            self._start_thread()
            self._cond.notify_all()
        return [m.id for m in members]

    def run_background(self, fn: Callable[[], T], name: str) -> BackgroundJob[T]:
        """Run `fn` at background priority; it may call `background_model`'s forward, whose layers
        pause whenever interactive work is waiting. `wait()` on the result blocks until it ran."""
        job: BackgroundJob[T] = BackgroundJob(fn, name)
        with self._cond:
            if self._closed:
                raise RuntimeError("the scheduler is closed")
            self._background.append(job)  # type: ignore[arg-type]
            self._start_thread()
            self._cond.notify_all()
        return job

    @property
    def background_model(self) -> LlamaModel:
        """The model whose layers yield to interactive work; for use inside `run_background` only."""
        return self.runner.blender.model

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="engine-scheduler", daemon=True)
            self._thread.start()

    def stats(self) -> EngineStats:
        runner = self.runner
        return EngineStats(
            queue_depth=len(self._waiting),
            batch_size=len(runner.decoding),
            prefilling=len(runner.prefilling),
            writing_back=len(runner.writing),
            max_batch_size=self.cfg.max_batch_size,
            tokens_in=runner.tokens_in,
            tokens_out=runner.tokens_out,
            steps=self._steps,
            kv_rows=runner.batch.rows_in_use(),
            kv_bytes=runner.batch.nbytes(),
        )

    def step_log(self) -> list[StepRecord]:
        """The most recent steps that did any work, oldest first."""
        with self._cond:
            return list(self._log)

    def failure(self) -> str | None:
        """Why the scheduler can no longer serve (closed, or its thread died), or None while it can."""
        if self._closed:
            return "the scheduler is closed"
        thread = self._thread
        if thread is not None and not thread.is_alive():
            return "the scheduler's thread died"
        return None

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting; cancel what is in flight (each request still gets its final event)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _retry_after(self) -> int:
        per_slot = self.runner.service_s / self.cfg.max_batch_size
        return max(1, math.ceil(per_slot * (len(self._waiting) + 1)))

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        runner = self.runner
        while True:
            with self._cond:
                while not self._closed and not self._has_work():
                    # Tasks still fetching wake us at their first layer; a cancel is polled.
                    busy = runner.prefilling or runner.writing or runner.background
                    self._cond.wait(timeout=0.05 if busy else None)
                if self._closed:
                    break
            try:
                record = self._step()
            except Exception as exc:  # the batch is unusable: its requests fail, the thread serves on
                log.exception("scheduler step failed")
                runner.fail_batch(exc)
                continue
            if record.decoded or record.prefilled or record.written or record.finished:
                with self._cond:
                    self._log.append(record)
                    self._steps += 1
        with self._cond:
            waiting, self._waiting = list(self._waiting), deque()
        for seq in waiting:
            seq.cancel_all()
            runner.finish_group(seq, [])
        runner.cancel_all()
        with self._cond:
            pending, self._background = self._background, []
        for job in pending:
            job.settle()

    def _has_work(self) -> bool:
        room = self.cfg.max_batch_size - self.runner.active
        gave_up = any(s.gave_up() for s in self._waiting)
        fits = bool(_admissible(self._order(time.perf_counter()), room))
        return fits or gave_up or bool(self._background) or self.runner.has_work()

    def _order(self, now: float) -> list[Sequence]:
        """The waiting requests nobody gave up on, in admission order (call with the lock held)."""
        live = (s for s in self._waiting if not s.gave_up())
        return sorted(live, key=lambda s: s.priority(now, self.cfg.aging_tokens_per_s))

    def _step(self) -> StepRecord:
        finished: list[int] = []
        with self._cond:
            unpriced, self._unpriced = self._unpriced, []
            jobs, self._background = self._background, []
        for seq in unpriced:  # outside the lock: the store may be Redis
            seq.cost_left = prefill_cost(self.chunk_cache, seq.prompt, seq.blend, seq.salt)
        for job in jobs:
            self.runner.add_background(job)
        now = time.perf_counter()
        with self._cond:
            # A request that gave up while waiting leaves at once, never prefilled.
            gave_up = [s for s in self._waiting if s.gave_up()]
            order = self._order(now)
            admitted = _admissible(order, self.cfg.max_batch_size - self.runner.active)
            self._waiting = deque(order[len(admitted) :])
        for seq in gave_up:
            self.runner.finish_group(seq, finished)
        for seq in admitted:
            self.runner.admit(seq)
        record = self.runner.step(self._steps)
        return StepRecord(
            record.index, record.decoded, record.prefilled, record.written, tuple(finished) + record.finished
        )


def _admissible(order: list[Sequence], room: int) -> list[Sequence]:
    """The leading requests, in priority order, whose sequences fit the free batch slots together; a
    request of n sequences that does not fit yet holds back those behind it, so it is never starved."""
    taken: list[Sequence] = []
    for seq in order:
        if seq.width > room:
            break
        taken.append(seq)
        room -= seq.width
    return taken
