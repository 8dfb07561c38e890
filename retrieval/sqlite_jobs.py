"""Ingestion jobs in one SQLite file of the data directory (the embedded store's half of the job rules).

The data directory belongs to one process (see sqlite_store), so leases only matter between that
process's worker and its own restarts: a job left running by a process that died is claimable again
as soon as the next process opens the file.

Fair turns: `job_turns` holds, per owner, the number of the claim that last served it (a counter
over all claims); a claim takes the oldest ready job of the owner with the lowest (none: 0).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from retrieval.errors import QueueFull
from retrieval.jobs import JobView, documents_from_json, documents_to_json, job_owner

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, collection TEXT NOT NULL, state TEXT NOT NULL, stage TEXT NOT NULL,
    progress REAL NOT NULL, documents TEXT NOT NULL, error TEXT, warnings TEXT NOT NULL,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL,
    worker TEXT, lease_until REAL, attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs(state, created_at);
CREATE TABLE IF NOT EXISTS job_turns (owner TEXT PRIMARY KEY, turn INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS job_texts (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, doc_id TEXT NOT NULL, text TEXT NOT NULL,
    PRIMARY KEY (job_id, doc_id));
"""
_COLUMNS = (
    "id, collection, state, stage, progress, documents, error, warnings, created_at, started_at, finished_at"
)
# jobs.job_owner in SQL: what follows the dot of the stored name, '' without one
_OWNER = (
    "CASE WHEN instr(collection, '.') > 0 THEN substr(collection, instr(collection, '.') + 1) ELSE '' END"
)
_UNFINISHED = f"SELECT count(*) FROM jobs WHERE state IN ('queued', 'running') AND {_OWNER} = ?"
_READY = (
    f"SELECT {_COLUMNS}, attempts, owner FROM (SELECT *, {_OWNER} AS owner FROM jobs "
    "WHERE state = 'queued' OR (state = 'running' AND lease_until < ?)) "
    "LEFT JOIN job_turns USING (owner) ORDER BY COALESCE(turn, 0), created_at, id LIMIT 1"
)
_SERVED = (
    "INSERT INTO job_turns (owner, turn) VALUES (?, (SELECT COALESCE(max(turn), 0) + 1 FROM job_turns)) "
    "ON CONFLICT (owner) DO UPDATE SET turn = excluded.turn"
)


def _view(row: sqlite3.Row | tuple[Any, ...]) -> JobView:
    r = tuple(row)
    return JobView(
        r[0], r[1], r[2], r[3], r[4], documents_from_json(json.loads(r[5])), r[6],
        tuple(json.loads(r[7])), r[8], r[9], r[10],
    )  # fmt: skip


def _values(job: JobView) -> tuple[Any, ...]:
    return (
        job.state, job.stage, job.progress, json.dumps(documents_to_json(job.documents)), job.error,
        json.dumps(list(job.warnings)), job.started_at, job.finished_at,
    )  # fmt: skip


class SqliteJobs:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        # this process holds the data dir: whatever ran before it is not running any more
        self._db.execute("UPDATE jobs SET lease_until = 0 WHERE state = 'running'")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, job: JobView, texts: dict[str, str], limit: int | None = None) -> None:
        row = (job.job_id, job.collection, *_values(job)[:6], job.created_at, job.started_at, job.finished_at)
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")  # the count and the insert as one: no other add in between
            try:
                if limit is not None:
                    (unfinished,) = db.execute(_UNFINISHED, (job_owner(job.collection),)).fetchone()
                    if unfinished >= limit:
                        raise QueueFull(unfinished, limit, 1)
                db.execute(f"INSERT INTO jobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                db.executemany(
                    "INSERT INTO job_texts VALUES (?, ?, ?)", [(job.job_id, *t) for t in texts.items()]
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def unfinished_count(self, owner: str) -> int:
        with self._lock:
            return int(self._db.execute(_UNFINISHED, (owner,)).fetchone()[0])

    def claim(self, worker: str, lease_s: float) -> tuple[JobView, dict[str, str], int] | None:
        now = time.time()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(_READY, (now,)).fetchone()
                if row is None:
                    db.execute("COMMIT")
                    return None
                db.execute(
                    "UPDATE jobs SET state = 'running', worker = ?, lease_until = ?, "
                    "attempts = attempts + 1, started_at = COALESCE(started_at, ?) WHERE id = ?",
                    (worker, now + lease_s, now, row[0]),
                )
                db.execute(_SERVED, (row[12],))
                texts = dict(db.execute("SELECT doc_id, text FROM job_texts WHERE job_id = ?", (row[0],)))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        view = replace(_view(row[:11]), state="running", started_at=row[9] or now)
        return view, texts, int(row[11]) + 1

    def save(self, job: JobView, worker: str, lease_s: float) -> bool:
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET state = ?, stage = ?, progress = ?, documents = ?, error = ?, warnings = ?, "
                "started_at = ?, finished_at = ?, lease_until = ? "
                "WHERE id = ? AND worker = ? AND state = 'running'",
                (*_values(job), time.time() + lease_s, job.job_id, worker),
            )
            return cur.rowcount == 1

    def finish(self, job: JobView, worker: str | None, history: int) -> bool:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    "UPDATE jobs SET state = ?, stage = ?, progress = ?, documents = ?, error = ?, "
                    "warnings = ?, started_at = ?, finished_at = ?, worker = NULL, lease_until = NULL "
                    "WHERE id = ? AND state IN ('queued', 'running') AND (? IS NULL OR worker = ?)",
                    (*_values(job), job.job_id, worker, worker),
                )
                if cur.rowcount == 1:
                    db.execute("DELETE FROM job_texts WHERE job_id = ?", (job.job_id,))
                    db.execute(
                        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE finished_at IS NOT NULL "
                        "ORDER BY finished_at DESC LIMIT -1 OFFSET ?)",
                        (history,),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return cur.rowcount == 1

    def release(self, job_id: str, worker: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET lease_until = 0, worker = NULL, attempts = max(attempts - 1, 0) "
                "WHERE id = ? AND worker = ? AND state = 'running'",
                (job_id, worker),
            )

    def fail_unfinished(self, collection: str, error: str) -> None:
        """Fail the collection's queued and running jobs (it was deleted)."""
        unfinished = self.unfinished(collection)
        now = time.time()
        for job in unfinished:
            failed = tuple(
                d
                if d.state in ("ingested", "unchanged", "failed")
                else type(d)(d.doc_id, d.name, "failed", 0, error)
                for d in job.documents
            )
            done = JobView(
                job.job_id, job.collection, "failed", "done", job.progress, failed, error,
                job.warnings, job.created_at, job.started_at, now,
            )  # fmt: skip
            self.finish(done, None, 1 << 30)

    def unfinished(self, collection: str) -> list[JobView]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE collection = ? AND state IN ('queued', 'running')",
                (collection,),
            ).fetchall()
        return [_view(r) for r in rows]

    def get(self, job_id: str) -> JobView | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _view(row)
