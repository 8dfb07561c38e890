"""Background ingestion jobs: one worker thread runs them in order; their status can be polled.

A job holds one or more documents of one collection. Each document is prepared and committed on its
own (atomically), so a job that fails part-way keeps the documents it finished and leaves no trace of
the one it failed on; its status names every document's outcome and the reason for any failure.
Jobs live in memory: after a restart, finished jobs are forgotten and unfinished ones never happened.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "succeeded", "failed"]
DocState = Literal["pending", "running", "ingested", "failed"]
# share of one document's work each stage ends at, for a smooth progress figure
STAGE_END = {"waiting": 0.0, "chunking": 0.6, "embedding": 0.8, "indexing": 0.85, "kv_cache": 1.0}


@dataclass(frozen=True)
class DocumentTask:
    doc_id: str
    name: str
    state: DocState = "pending"
    chunks: int = 0
    error: str | None = None


@dataclass(frozen=True)
class JobView:
    """A consistent snapshot of a job, safe to hand to another thread."""

    job_id: str
    collection: str
    state: JobState
    stage: str
    progress: float
    documents: tuple[DocumentTask, ...]
    error: str | None
    warnings: tuple[str, ...]
    created_at: float
    started_at: float | None
    finished_at: float | None


@dataclass
class Job:
    collection: str
    documents: list[DocumentTask]
    texts: dict[str, str] = field(repr=False)  # doc_id -> text, dropped when the job ends
    target: Any = field(default=None, repr=False)  # the collection object the job was submitted to
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: JobState = "queued"
    stage: str = "queued"
    progress: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def view(self) -> JobView:
        with self._lock:
            return JobView(
                self.job_id, self.collection, self.state, self.stage, round(self.progress, 4),
                tuple(self.documents), self.error, tuple(self.warnings),
                self.created_at, self.started_at, self.finished_at,
            )  # fmt: skip

    def set_document(self, index: int, **changes: object) -> None:
        with self._lock:
            self.documents[index] = replace(self.documents[index], **changes)  # type: ignore[arg-type]

    def report(self, index: int, stage: str, fraction: float) -> None:
        """Progress of document `index` inside `stage` (fraction of that stage)."""
        stages = list(STAGE_END)
        at = stages.index(stage) if stage in STAGE_END else 0
        lo = STAGE_END[stages[at - 1]] if at > 0 else 0.0
        within = lo + (STAGE_END.get(stage, 0.0) - lo) * min(max(fraction, 0.0), 1.0)
        with self._lock:
            self.stage = stage
            self.progress = max(self.progress, (index + within) / max(1, len(self.documents)))

    def warn(self, message: str) -> None:
        with self._lock:
            self.warnings.append(message)


class JobRunner:
    """Runs `execute(job)` for each submitted job on one worker thread, oldest first."""

    def __init__(self, execute: Callable[[Job], None], history: int = 1000) -> None:
        self._execute = execute
        self._history = history
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="ingest-worker", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> JobView:
        with self._lock:
            self._jobs[job.job_id] = job
            self._forget_old()
        self._queue.put(job)
        return job.view()

    def get(self, job_id: str) -> JobView | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return None if job is None else job.view()

    def pending(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.finished_at is not None]
        for key in finished[: max(0, len(self._jobs) - self._history)]:
            del self._jobs[key]

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job.state, job.started_at = "running", time.time()
            try:
                self._execute(job)
            except Exception as exc:  # reported in the job's status; the worker keeps going
                log.exception("ingestion job %s failed", job.job_id)
                job.error = job.error or f"{type(exc).__name__}: {exc}"
            with job._lock:
                for i, doc in enumerate(job.documents):
                    if doc.state in ("pending", "running"):
                        reason = f"not ingested: {job.error or 'the job stopped'}"
                        job.documents[i] = replace(doc, state="failed", error=reason)
                failed = [d for d in job.documents if d.state != "ingested"]
                if failed and job.error is None:
                    job.error = f"{len(failed)} of {len(job.documents)} documents failed: {failed[0].error}"
                job.state = "failed" if job.error else "succeeded"
                job.stage = "done"
                job.progress = 1.0 if job.state == "succeeded" else job.progress
                job.finished_at = time.time()
                job.texts.clear()
                job.target = None
