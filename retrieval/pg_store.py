"""The shared collection store: Postgres with pgvector (RAGBLEND_DATABASE_URL), for any number of
gateway replicas. Collections, documents, chunks and vectors are rows (pg_collection.py); jobs too.

Jobs: `claim_job` takes a queued job, or a running one whose lease ran out, with
`FOR UPDATE SKIP LOCKED`, so replicas claiming at once never take the same job and never wait on each
other. Leases are timed by the database's clock, so replicas' clocks need not agree. Among ready jobs
it takes the oldest of the owner (tenant tag) whose last claim is the oldest: `ragblend_job_turns`
keeps each owner's last claim number from one sequence. Replicas claiming at the same instant may
both serve one owner once before the turns they record take effect. A per-owner cap on `add_job` is
counted under a transaction-scoped advisory lock on the owner, so replicas adding at once never
exceed it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pgvector.psycopg import register_vector
from psycopg import Connection, sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from retrieval.collection_store import CollectionStore, StoredCollection
from retrieval.config import CollectionConfig
from retrieval.errors import CollectionExists, CollectionNotFound, QueueFull
from retrieval.jobs import DocumentTask, JobView, documents_from_json, documents_to_json, job_owner
from retrieval.pg_collection import PgCollection
from retrieval.pg_schema import create_index, create_schema, index_name

log = logging.getLogger(__name__)

_COLLECTION = "SELECT id, name, config, embedder, dim, created_at FROM ragblend_collections"
_JOB = (
    "SELECT id, collection, state, stage, progress, documents, error, warnings, created_at, started_at, "
    "finished_at FROM ragblend_jobs"
)
# jobs.job_owner in SQL: what follows the dot of the stored name ('' without one)
_OWNER = "split_part(collection, '.', 2)"
_UNFINISHED = f"SELECT count(*) FROM ragblend_jobs WHERE state IN ('queued', 'running') AND {_OWNER} = %s"
# a lock class of its own, beside the schema's lock, for counting one owner's jobs
_QUEUE_LOCK = 7_300_190
_READY = (
    "SELECT j.id, split_part(j.collection, '.', 2) FROM ragblend_jobs j "
    "LEFT JOIN ragblend_job_turns t ON t.owner = split_part(j.collection, '.', 2) "
    "WHERE j.state = 'queued' OR (j.state = 'running' AND j.lease_until < now()) "
    "ORDER BY COALESCE(t.turn, 0), j.created_at, j.id LIMIT 1 FOR UPDATE OF j SKIP LOCKED"
)
_SET_STATE = (
    "state = %s, stage = %s, progress = %s, documents = %s, error = %s, warnings = %s, started_at = %s, "
    "finished_at = %s"
)


def _view(r: tuple[Any, ...]) -> JobView:
    docs = r[5] if isinstance(r[5], list) else json.loads(r[5])
    return JobView(r[0], r[1], r[2], r[3], r[4], documents_from_json(docs), r[6], tuple(r[7]), *r[8:11])


def _state(job: JobView) -> tuple[Any, ...]:
    return (
        job.state, job.stage, job.progress, Jsonb(documents_to_json(job.documents)), job.error,
        Jsonb(list(job.warnings)), job.started_at, job.finished_at,
    )  # fmt: skip


class PostgresCollectionStore(CollectionStore):
    def __init__(self, url: str, pool_size: int = 8) -> None:
        with Connection.connect(url, autocommit=True) as conn:
            create_schema(conn)  # the extension first: the pool's connections register its type
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            configure=register_vector,
            open=True,
            name="ragblend-collections",
        )
        self._pool.wait(timeout=30)

    def close(self) -> None:
        self._pool.close()

    # --- collections ----------------------------------------------------------------------------
    def create(self, name: str, config: CollectionConfig, embedder: str, dim: int) -> StoredCollection:
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "INSERT INTO ragblend_collections (name, config, embedder, dim, created_at) "
                "VALUES (%s, %s, %s, %s, extract(epoch FROM clock_timestamp())) "
                "ON CONFLICT (name) DO NOTHING "
                "RETURNING id, name, config, embedder, dim, created_at",
                (name, Jsonb(config.model_dump(mode="json")), embedder, dim),
            ).fetchone()
            if row is None:
                raise CollectionExists(name)
            create_index(conn, int(row[0]), dim, config.index.hnsw_m)
        return PgCollection(self._pool, row)

    def open(self, name: str) -> StoredCollection:
        with self._pool.connection() as conn:
            row = conn.execute(_COLLECTION + " WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise CollectionNotFound(name)
        return PgCollection(self._pool, row)

    def names(self) -> list[str]:
        with self._pool.connection() as conn:
            return [r[0] for r in conn.execute("SELECT name FROM ragblend_collections ORDER BY name")]

    def delete(self, name: str) -> None:
        error = f"collection {name!r} was deleted"
        with self._pool.connection() as conn:
            with conn.transaction():
                row = conn.execute(
                    "DELETE FROM ragblend_collections WHERE name = %s RETURNING id", (name,)
                ).fetchone()
                if row is None:
                    raise CollectionNotFound(name)
                jobs = conn.execute(
                    _JOB + " WHERE collection = %s AND state IN ('queued', 'running') FOR UPDATE", (name,)
                ).fetchall()
                for job in map(_view, jobs):
                    docs = tuple(
                        d
                        if d.state in ("ingested", "unchanged", "failed")
                        else DocumentTask(d.doc_id, d.name, "failed", 0, error)
                        for d in job.documents
                    )
                    conn.execute(
                        "UPDATE ragblend_jobs SET state = 'failed', stage = 'done', documents = %s, "
                        "error = %s, "
                        "finished_at = extract(epoch FROM clock_timestamp()), worker = NULL WHERE id = %s",
                        (Jsonb(documents_to_json(docs)), error, job.job_id),
                    )
                    conn.execute("DELETE FROM ragblend_job_texts WHERE job_id = %s", (job.job_id,))
            # outside the transaction: dropping an index concurrently blocks no reader or writer
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(index_name(int(row[0]))))

    # --- jobs -----------------------------------------------------------------------------------
    def add_job(self, job: JobView, texts: dict[str, str], limit: int | None = None) -> None:
        owner = job_owner(job.collection)
        with self._pool.connection() as conn, conn.transaction():
            if limit is not None:
                conn.execute("SELECT pg_advisory_xact_lock(%s::integer, hashtext(%s))", (_QUEUE_LOCK, owner))
                (unfinished,) = conn.execute(_UNFINISHED, (owner,)).fetchone() or (0,)
                if unfinished >= limit:
                    raise QueueFull(unfinished, limit, 1)
            conn.execute(
                "INSERT INTO ragblend_jobs (id, collection, " + _SET_STATE.replace(" = %s", "")
                + ", created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (job.job_id, job.collection, *_state(job), job.created_at),
            )  # fmt: skip
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO ragblend_job_texts VALUES (%s, %s, %s)",
                    [(job.job_id, doc_id, text) for doc_id, text in texts.items()],
                )

    def unfinished_jobs(self, owner: str) -> int:
        with self._pool.connection() as conn:
            row = conn.execute(_UNFINISHED, (owner,)).fetchone()
        return 0 if row is None else int(row[0])

    def claim_job(self, worker: str, lease_s: float) -> tuple[JobView, dict[str, str], int] | None:
        with self._pool.connection() as conn, conn.transaction():
            ready = conn.execute(_READY).fetchone()
            if ready is None:
                return None
            row = conn.execute(
                "UPDATE ragblend_jobs SET state = 'running', worker = %s, "
                "lease_until = now() + make_interval(secs => %s), attempts = attempts + 1, "
                "started_at = COALESCE(started_at, extract(epoch FROM clock_timestamp())) WHERE id = %s "
                "RETURNING id, collection, state, stage, progress, documents, error, warnings, created_at, "
                "started_at, finished_at, attempts",
                (worker, lease_s, ready[0]),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "INSERT INTO ragblend_job_turns (owner, turn) VALUES (%s, nextval('ragblend_job_turn')) "
                "ON CONFLICT (owner) DO UPDATE SET turn = excluded.turn",
                (ready[1],),
            )
            texts = conn.execute(
                "SELECT doc_id, text FROM ragblend_job_texts WHERE job_id = %s", (row[0],)
            ).fetchall()
        return _view(row[:11]), dict(texts), int(row[11])

    def save_job(self, job: JobView, worker: str, lease_s: float) -> bool:
        with self._pool.connection() as conn:
            cur = conn.execute(
                "UPDATE ragblend_jobs SET "
                + _SET_STATE
                + ", lease_until = now() + make_interval(secs => %s) "
                "WHERE id = %s AND worker = %s AND state = 'running'",
                (*_state(job), lease_s, job.job_id, worker),
            )
            return cur.rowcount == 1

    def finish_job(self, job: JobView, worker: str | None, history: int) -> bool:
        with self._pool.connection() as conn, conn.transaction():
            cur = conn.execute(
                "UPDATE ragblend_jobs SET " + _SET_STATE + ", worker = NULL, lease_until = NULL "
                "WHERE id = %s AND state IN ('queued', 'running') AND (%s::text IS NULL OR worker = %s)",
                (*_state(job), job.job_id, worker, worker),
            )
            if cur.rowcount != 1:
                return False
            conn.execute("DELETE FROM ragblend_job_texts WHERE job_id = %s", (job.job_id,))
            conn.execute(
                "DELETE FROM ragblend_jobs WHERE id IN (SELECT id FROM ragblend_jobs "
                "WHERE finished_at IS NOT NULL ORDER BY finished_at DESC OFFSET %s)",
                (history,),
            )
        return True

    def release_job(self, job_id: str, worker: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "UPDATE ragblend_jobs SET lease_until = now() - interval '1 second', worker = NULL, "
                "attempts = greatest(attempts - 1, 0) WHERE id = %s AND worker = %s AND state = 'running'",
                (job_id, worker),
            )

    def job(self, job_id: str) -> JobView | None:
        with self._pool.connection() as conn:
            row = conn.execute(_JOB + " WHERE id = %s", (job_id,)).fetchone()
        return None if row is None else _view(row)
