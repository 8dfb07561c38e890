"""The ingestion worker: one thread per process claims stored jobs and runs them, one at a time.

Any process sharing a store runs one of these, so a job accepted by one gateway may run on another.
While a job runs, its state is saved on every new stage or outcome (and at least twice a second
while it progresses), and a heartbeat renews the lease even when the model is busy for a long
stretch. Once a save says the job is no longer ours (the lease expired and another worker took it,
or its collection was deleted), the next progress report raises JobAbandoned and the work stops;
what was committed stays (documents are atomic, and a resumed job skips those already stored).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from retrieval.collection_store import MAX_JOB_ATTEMPTS, CollectionStore
from retrieval.jobs import Job, JobView

log = logging.getLogger(__name__)

SAVE_EVERY_S = 0.5


class JobAbandoned(Exception):
    """The job is no longer this worker's: its lease was lost, its collection deleted, or the worker
    is stopping. Whoever owns it now finishes it."""


class _Saver:
    """Saves a running job's state to the store, throttled, and notices when it stops being ours."""

    def __init__(self, worker: JobWorker, job: Job) -> None:
        self.worker, self.job = worker, job
        self.lost = False
        self._last = 0.0
        self._lock = threading.Lock()

    def save(self, force: bool) -> None:
        with self._lock:
            if self.lost or (not force and time.monotonic() - self._last < SAVE_EVERY_S):
                return
            w = self.worker
            try:
                ok = w.store.save_job(self.job.view(), w.worker_id, w.lease_s)
            except Exception:  # the store is unreachable: keep working, the lease may still hold
                log.exception("saving job %s failed", self.job.job_id)
                return
            self._last = time.monotonic()
            self.lost = not ok

    def changed(self, important: bool) -> None:
        self.save(important)
        if self.lost:
            raise JobAbandoned(self.job.job_id)


class JobWorker:
    """Claims the next ready job from `store` (tenants in turn, see collection_store) and runs
    `execute(job)`; repeats until closed."""

    def __init__(
        self,
        store: CollectionStore,
        execute: Callable[[Job], None],
        worker_id: str,
        lease_s: float,
        poll_s: float,
        history: int,
    ) -> None:
        self.store, self._execute = store, execute
        self.worker_id, self.lease_s, self.poll_s, self.history = worker_id, lease_s, poll_s, history
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._current: Job | None = None
        self._thread = threading.Thread(target=self._run, name="ingest-worker", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """A job was just stored here: look at once rather than at the next poll."""
        self._wake.set()

    def running(self) -> JobView | None:
        job = self._current
        return None if job is None else job.view()

    def close(self, timeout: float = 5.0) -> None:
        """Stop claiming; a job still running is handed back for another worker to finish."""
        self._stop.set()
        self._wake.set()
        job = self._current
        if job is not None:
            try:
                self.store.release_job(job.job_id, self.worker_id)
            except Exception:  # its lease runs out instead
                log.exception("could not hand back job %s", job.job_id)
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                claimed = self.store.claim_job(self.worker_id, self.lease_s)
            except Exception:  # a store outage: try again at the next poll
                log.exception("claiming an ingestion job failed")
                claimed = None
            if claimed is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            try:
                self._run_one(*claimed)
            except Exception:  # the worker must keep going whatever one job does
                log.exception("ingestion job %s could not be recorded", claimed[0].job_id)

    def _run_one(self, view: JobView, texts: dict[str, str], attempts: int) -> None:
        job = Job.from_view(view, texts)
        job.state, job.started_at = "running", job.started_at or time.time()
        if attempts > MAX_JOB_ATTEMPTS:
            job.error = f"its worker stopped {attempts - 1} times before it finished"
        else:
            saver = _Saver(self, job)
            job.on_change = saver.changed
            self._current = job
            beat = threading.Event()
            heartbeat = threading.Thread(target=self._heartbeat, args=(saver, beat), daemon=True)
            heartbeat.start()
            try:
                self._execute(job)
            except JobAbandoned:
                log.warning("job %s is no longer this worker's; left to its owner", job.job_id)
                return
            except Exception as exc:  # reported in the job's status; the worker keeps going
                log.exception("ingestion job %s failed", job.job_id)
                job.error = job.error or f"{type(exc).__name__}: {exc}"
            finally:
                beat.set()
                self._current = None
                job.on_change = None
            if saver.lost or self._stop.is_set():
                return  # handed back or taken over: the owner records the outcome
        job.conclude()
        self.store.finish_job(job.view(), self.worker_id, self.history)

    def _heartbeat(self, saver: _Saver, done: threading.Event) -> None:
        while not done.wait(self.lease_s / 3):
            saver.save(force=True)
