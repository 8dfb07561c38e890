"""What one scheduler step does to the requests admitted into the batch."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

import torch

from engine.background import BackgroundJob
from engine.batch_decode import decode_step, decode_weights
from engine.batch_join import join_batch
from engine.batch_kv import BatchKV
from engine.blend.blender import Blender
from engine.blend.chunk_cache import ChunkCache
from engine.cold_pieces import store_after_answer
from engine.config import SchedulerConfig
from engine.logprobs import TokenLogprob, token_logprobs
from engine.model import LlamaModel
from engine.preemptible import PreemptibleTask, pausing_copy
from engine.prefill_work import prefill_prompt
from engine.sequence import Sequence
from engine.stats import StepRecord

log = logging.getLogger(__name__)


class BatchRunner:
    """The admitted requests: prefilling (a preemptible task each), decoding (one batch slot each; list
    index = slot) and writing back (answered; their chunk caches are being stored), and background jobs.

    Each step's prefill budget goes, in order, to: write-backs that an admitted request waits for; then
    interactive prefills, the cheapest remaining first with aging (`Sequence.priority`); then, only
    if no prefill could use it and nobody is decoding, write-backs and background jobs, oldest first.
    A background item that has had no slice for `background_aging_s` gets one slice regardless.

    Only the scheduler's thread calls in; other threads may read the counters and list lengths.
    """

    def __init__(
        self, model: LlamaModel, chunk_cache: ChunkCache, cfg: SchedulerConfig, wake: Callable[[], None]
    ) -> None:
        self.model = model
        decode_weights(model)  # made now, not in the middle of some request's first decode step
        self.blender = Blender(pausing_copy(model), chunk_cache)
        self.batch = BatchKV(model.cfg, model.dtype, cfg.max_batch_size, model.device)
        self.budget = cfg.prefill_chunk_tokens * model.cfg.num_layers  # rows x layers per step
        self.cfg = cfg
        self.background: list[BackgroundJob[object]] = []
        self._wake = wake  # called from task threads when a task becomes ready to be resumed
        self.prefilling: list[Sequence] = []
        self.decoding: list[Sequence] = []
        self.writing: list[Sequence] = []
        self.tokens_in = self.tokens_out = 0
        self.service_s = 1.0  # running average of one request's duration, for Retry-After

    @property
    def active(self) -> int:
        """Batch slots taken or promised: a prefilling request holds one per sequence it forks into."""
        return sum(s.width for s in self.prefilling) + len(self.decoding)

    def has_work(self) -> bool:
        return bool(
            self.decoding
            or any(s.gave_up() or self._can_advance(s) for s in self.prefilling)
            or any(s.write_back is not None and s.write_back.ready for s in self.writing)
            or any(j.task is None or j.task.ready for j in self.background)
        )

    def add_background(self, job: BackgroundJob[object]) -> None:
        self.background.append(job)

    def _can_advance(self, seq: Sequence) -> bool:
        if seq.prefill is None:
            return not seq.waits_for & {s.id for s in self.writing}
        return seq.prefill.ready

    def admit(self, seq: Sequence) -> None:
        """Start the request's prefill, whose thread runs freely up to the first layer (the cache fetch).

        A blended request first waits for the write-backs of requests answered before it was admitted:
        it then finds the chunk caches they computed (as it would have had they been stored at once)
        instead of recomputing, and storing again, the same documents. Write-backs come first in each
        step's budget, so this wait is short; decoding never waits for it.
        """
        if seq.blended:
            seq.waits_for = frozenset(s.id for s in self.writing)
        self.prefilling.append(seq)
        if not seq.waits_for:
            self._start_prefill(seq)

    def _start_prefill(self, seq: Sequence) -> None:
        work = partial(prefill_prompt, self.blender, seq.prompt, seq.blend, seq.salt)
        seq.prefill = PreemptibleTask(work, f"prefill-{seq.id}", self._wake)

    def step(self, index: int) -> StepRecord:
        decoded: tuple[int, ...] = ()
        prefilled: list[tuple[int, int]] = []
        written: list[tuple[int, int]] = []
        finished: list[int] = []
        for slot in reversed(range(len(self.decoding))):
            if self.decoding[slot].cancel.is_set():
                self.finish(self.leave(slot), finished)
        if self.decoding:
            decoded = tuple(s.id for s in self.decoding)
            self._decode(finished)
        awaited = {i for s in self.prefilling for i in s.waits_for}
        budget = self._advance_write_backs(self.budget, written, lambda s: s.id in awaited)
        before = len(prefilled)
        budget = self._advance_prefills(budget, prefilled, finished)
        interactive = bool(self.decoding) or len(prefilled) > before
        budget = self._advance_background(budget, written, interactive)
        return StepRecord(index, decoded, tuple(prefilled), tuple(written), tuple(finished))

    def _advance_prefills(self, budget: int, prefilled: list[tuple[int, int]], finished: list[int]) -> int:
        """Cheapest remaining first (aged) while the budget lasts; a finished prefill joins the batch."""
        now = time.perf_counter()
        aging = self.cfg.aging_tokens_per_s
        for seq in sorted(self.prefilling, key=lambda s: s.priority(now, aging)):
            if seq.prefill is None and not seq.gave_up():
                if self._can_advance(seq):
                    self._start_prefill(seq)  # it fetches on its own thread; computes from next step
                continue
            task = seq.prefill
            if task is None:  # cancelled before it started
                self.prefilling.remove(seq)
                self.finish_group(seq, finished)
                continue
            if seq.gave_up():
                task.abort()  # its thread ends at its next layer; nobody waits for it
            elif not task.done and task.ready and budget > 0:
                spent = task.resume(budget)
                budget -= spent
                seq.cost_left = max(0, seq.cost_left - spent // self.model.cfg.num_layers)
                prefilled.append((seq.id, spent))
            if seq.gave_up() or task.done:
                self.prefilling.remove(seq)
                join_batch(self, seq, finished)
        return budget

    def _decode(self, finished: list[int]) -> None:
        logits = decode_step(self.model, self.batch, [s.next_token for s in self.decoding])
        greedy = logits.argmax(-1).tolist()  # one call for every greedy row
        # Sampled rows use their own seeded generator, exactly as the request running alone.
        tokens = [
            greedy[i] if s.state.greedy else s.state.sample(logits[i]) for i, s in enumerate(self.decoding)
        ]
        logprobs = batch_logprobs(logits, tokens, [s.state.params.logprobs for s in self.decoding])
        done: list[int] = []
        for slot, seq in enumerate(self.decoding):
            self.accept(seq, tokens[slot], logprobs[slot])
            if seq.state.done:
                done.append(slot)
        for slot in reversed(done):
            self.finish(self.leave(slot), finished)

    def accept(self, seq: Sequence, token: int, logprob: TokenLogprob | None = None) -> None:
        produced = seq.state.produced
        event = seq.state.accept(token, logprob)
        self.tokens_out += seq.state.produced - produced
        seq.next_token = token
        if event is not None:
            seq.sink.put(event)

    def leave(self, slot: int) -> Sequence:
        """Take the sequence in `slot` out of the batch, freeing its K/V rows at once."""
        seq = self.decoding[slot]
        moved = self.batch.remove(slot)
        if moved is not None:
            self.decoding[slot] = self.decoding[moved]
        self.decoding.pop()
        return seq

    def finish(self, seq: Sequence, finished: list[int]) -> None:
        """Send the final event; then store the chunk caches the request computed, if it blended."""
        if seq.cancel.is_set():
            seq.state.cancel()
        result, opts, seq.blend_result = seq.blend_result, seq.blend, None
        if result is not None and opts is not None:  # counted as writing back before the answer is out
            entries, seq.entries = seq.entries, []
            work = partial(store_after_answer, self.blender, seq.prompt, result, opts, seq.salt, entries)
            seq.write_back = PreemptibleTask(work, f"store-{seq.id}", self._wake)
            self.writing.append(seq)
        seq.emit_finish()
        finished.append(seq.id)
        self.service_s = 0.8 * self.service_s + 0.2 * (time.perf_counter() - seq.state.started)
        if seq.write_back is None:
            seq.sink.end()

    def finish_group(self, seq: Sequence, finished: list[int]) -> None:
        """Finish a request that never joined the batch: each of its sequences, forks included."""
        members, seq.forks = seq.members, []
        for m in members:
            self.finish(m, finished)

    def _advance_write_backs(
        self, budget: int, written: list[tuple[int, int]], chosen: Callable[[Sequence], bool]
    ) -> int:
        """Advance the `chosen` write-backs while the budget lasts; end those that are done."""
        for seq in list(self.writing):
            task = seq.write_back
            assert task is not None
            if chosen(seq) and not task.done and task.ready and budget > 0:
                spent = task.resume(budget)
                budget -= spent
                seq.last_slice = time.perf_counter()
                written.append((seq.id, spent))
            if task.done:
                self._end_write_back(seq)
        return budget

    def _end_write_back(self, seq: Sequence) -> None:
        task = seq.write_back
        if task is not None and task.error is not None:
            log.warning("chunk cache write-back failed: %s", task.error)
        self.writing.remove(seq)
        seq.sink.end()

    def _advance_background(self, budget: int, written: list[tuple[int, int]], interactive: bool) -> int:
        """Write-backs, then background jobs: the leftover budget when nothing interactive ran this
        step; otherwise one slice each for the items that have waited `background_aging_s`."""
        now = time.perf_counter()

        def grant(last_slice: float) -> int:
            if not interactive:
                return budget
            return self.budget if now - last_slice >= self.cfg.background_aging_s else 0

        for seq in list(self.writing):
            task = seq.write_back
            assert task is not None
            if not task.done and task.ready and (give := grant(seq.last_slice)) > 0:
                spent = task.resume(give)
                budget -= 0 if interactive else spent
                seq.last_slice = time.perf_counter()
                written.append((seq.id, spent))
            if task.done:
                self._end_write_back(seq)
        for job in list(self.background):
            if job.task is None:
                job.start(self._wake)  # it runs freely up to its first layer
                continue
            work = job.task
            if not work.done and work.ready and (give := grant(job.last_slice)) > 0:
                spent = work.resume(give)
                budget -= 0 if interactive else spent
                job.last_slice, job.slices = time.perf_counter(), job.slices + 1
            if work.done:
                self.background.remove(job)
                job.settle()
        return budget

    def fail_batch(self, exc: Exception) -> None:
        """After a failed decode step: every decoding request gets the error; the batch is emptied."""
        for slot in reversed(range(len(self.decoding))):
            seq = self.leave(slot)
            seq.sink.put(exc)
            seq.sink.end()

    def cancel_all(self) -> None:
        """Shutting down: every request gets a cancelled final event; no write-back is started."""
        finished: list[int] = []
        for seq in self.prefilling:
            seq.cancel_all()
            if seq.prefill is not None:
                seq.prefill.abort()
            self.finish_group(seq, finished)
        self.prefilling = []
        for slot in reversed(range(len(self.decoding))):
            seq = self.leave(slot)
            seq.cancel.set()
            seq.blend_result = None
            self.finish(seq, finished)
        for seq in self.writing:
            if seq.write_back is not None:
                seq.write_back.abort()
            seq.sink.end()
        self.writing = []
        for job in self.background:
            if job.task is not None:
                job.task.abort()
            job.settle()
        self.background = []


def batch_logprobs(
    logits: torch.Tensor, tokens: list[int], asked: list[int | None]
) -> list[TokenLogprob | None]:
    """Per slot, the log-probabilities of its token when its request asked for them: one call over the
    rows that did, with as many alternatives as the most demanding of them (the others' cut down)."""
    rows = [i for i, k in enumerate(asked) if k is not None]
    out: list[TokenLogprob | None] = [None] * len(tokens)
    if not rows:
        return out
    top = max(asked[i] or 0 for i in rows)
    picked = token_logprobs(logits[rows], [tokens[i] for i in rows], top)
    for i, lp in zip(rows, picked, strict=True):
        k = asked[i] or 0
        out[i] = lp if k == top else TokenLogprob(lp.token, lp.logprob, lp.top[:k])
    return out
