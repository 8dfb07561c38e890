"""Ingestion jobs: what one is (documents of one collection, their outcomes, progress) and the
worker thread that claims stored jobs and runs them.

A job holds one or more documents of one collection. Each document is prepared and committed on its
own (atomically), so a job that fails part-way keeps the documents it finished and leaves no trace of
the one it failed on; its status names every document's outcome and the reason for any failure.
Jobs live in the collection store with their texts, so they outlive the process that accepted them:
a worker in any process sharing the store claims a job under a lease it keeps renewing; when the
worker dies the lease runs out and another worker finishes the job.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Literal

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "succeeded", "failed"]
DocState = Literal["pending", "running", "ingested", "unchanged", "failed"]
# a document in one of these states is settled: a resumed job leaves it alone
DONE_STATES = ("ingested", "unchanged")
# share of one document's work each stage ends at, for a smooth progress figure
STAGE_END = {"waiting": 0.0, "chunking": 0.6, "embedding": 0.8, "indexing": 0.85, "kv_cache": 1.0}


@dataclass(frozen=True)
class DocumentTask:
    doc_id: str
    name: str
    state: DocState = "pending"
    chunks: int = 0
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # re-ingest by name: a named document replaces the collection's document of that name (or, when
    # its text and metadata are the same, leaves it as it is: "unchanged")
    by_name: bool = False
    # where each page starts in the text, for a paged file (PDF); kept with the document
    page_starts: tuple[int, ...] | None = None


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
    target: Any = field(default=None, repr=False)  # the collection the job writes to, while it runs
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
    # called after each change (with whether it is a new stage or outcome, worth saving at once)
    on_change: Any = field(default=None, repr=False)

    @classmethod
    def from_view(cls, view: JobView, texts: dict[str, str]) -> Job:
        return cls(
            view.collection, list(view.documents), texts, job_id=view.job_id, state=view.state,
            stage=view.stage, progress=view.progress, error=view.error, warnings=list(view.warnings),
            created_at=view.created_at, started_at=view.started_at, finished_at=view.finished_at,
        )  # fmt: skip

    def _changed(self, important: bool) -> None:
        if self.on_change is not None:
            self.on_change(important)

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
        self._changed(True)

    def report(self, index: int, stage: str, fraction: float) -> None:
        """Progress of document `index` inside `stage` (fraction of that stage)."""
        stages = list(STAGE_END)
        at = stages.index(stage) if stage in STAGE_END else 0
        lo = STAGE_END[stages[at - 1]] if at > 0 else 0.0
        within = lo + (STAGE_END.get(stage, 0.0) - lo) * min(max(fraction, 0.0), 1.0)
        with self._lock:
            new_stage = stage != self.stage
            self.stage = stage
            self.progress = max(self.progress, (index + within) / max(1, len(self.documents)))
        self._changed(new_stage)

    def warn(self, message: str) -> None:
        with self._lock:
            self.warnings.append(message)
        self._changed(True)

    def conclude(self) -> None:
        """Settle the final state after the work stopped: documents never reached count as failed."""
        with self._lock:
            for i, doc in enumerate(self.documents):
                if doc.state in ("pending", "running"):
                    reason = f"not ingested: {self.error or 'the job stopped'}"
                    self.documents[i] = replace(doc, state="failed", error=reason)
            failed = [d for d in self.documents if d.state not in DONE_STATES]
            if failed and self.error is None:
                self.error = f"{len(failed)} of {len(self.documents)} documents failed: {failed[0].error}"
            self.state = "failed" if self.error else "succeeded"
            self.stage = "done"
            self.progress = 1.0 if self.state == "succeeded" else self.progress
            self.finished_at = time.time()
            self.texts.clear()
            self.target = None


def job_owner(collection: str) -> str:
    """Whose queue a job of stored collection `collection` joins: its tenant's tag (the part after the
    dot; '' for the anonymous tenant's bare names). Caps and fair turns count jobs per owner."""
    return collection.partition(".")[2]


def documents_to_json(documents: tuple[DocumentTask, ...] | list[DocumentTask]) -> list[dict[str, Any]]:
    return [vars(d).copy() for d in documents]


def documents_from_json(items: list[dict[str, Any]]) -> tuple[DocumentTask, ...]:
    tasks = []
    for item in items:
        starts = item.get("page_starts")
        tasks.append(DocumentTask(**{**item, "page_starts": None if starts is None else tuple(starts)}))
    return tuple(tasks)
