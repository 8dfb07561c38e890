"""The embedded collection store: a folder per collection (SQLite + FAISS, see collection.py) under
one root, and the ingestion jobs in `jobs.db` beside them. For one process only.

Each process would hold its own FAISS index and see no other's writes, so the root is locked
(`flock` on `.lock`, released by the kernel when the process dies) and a second process is refused
with StoreInUse instead of sharing it silently. Processes that share collections use Postgres.

A new collection is built in a hidden folder and renamed into place, and a deleted one is renamed away
before it is removed, so a crash never leaves half a collection; leftovers of either are removed on
open (safe: nobody else can be building one here).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

from retrieval.collection import Collection
from retrieval.collection_store import CollectionStore, StoredCollection
from retrieval.config import CollectionConfig
from retrieval.errors import CollectionExists, CollectionNotFound, StoreInUse
from retrieval.jobs import JobView
from retrieval.sqlite_jobs import SqliteJobs

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
JOBS_FILE = "jobs.db"


def _lock(root: Path) -> int:
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreInUse(
            f"the collections in {root} are in use by another process (pid {holder}); the embedded "
            "SQLite store serves one process: give each process its own RAGBLEND_DATA_DIR, or set "
            "RAGBLEND_DATABASE_URL to a Postgres database to share collections between processes"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


class SqliteCollectionStore(CollectionStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = _lock(root)
        self._lock = threading.Lock()
        self._collections: dict[str, Collection] = {}
        self._jobs = SqliteJobs(root / JOBS_FILE)
        for folder in sorted(root.iterdir()):
            if folder.name.startswith(".") and folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)  # an unfinished create or delete
            elif folder.is_dir():
                try:
                    self._collections[folder.name] = Collection.open(folder.name, folder)
                except Exception:
                    log.exception("cannot open collection %s; skipped", folder.name)

    def close(self) -> None:
        with self._lock:
            for col in self._collections.values():
                col.close()
            self._collections.clear()
            self._jobs.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    # --- collections ----------------------------------------------------------------------------
    def create(self, name: str, config: CollectionConfig, embedder: str, dim: int) -> StoredCollection:
        with self._lock:
            if name in self._collections or (self.root / name).exists():
                raise CollectionExists(name)
            staging = self.root / f".creating-{uuid.uuid4().hex}"
            Collection.create(name, staging, config, embedder, dim, time.time()).close()
            staging.rename(self.root / name)
            col = Collection.open(name, self.root / name)
            self._collections[name] = col
        return col

    def open(self, name: str) -> StoredCollection:
        with self._lock:
            col = self._collections.get(name)
        if col is None:
            raise CollectionNotFound(name)
        return col

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._collections)

    def delete(self, name: str) -> None:
        with self._lock:
            col = self._collections.pop(name, None)
            if col is None:
                raise CollectionNotFound(name)
            col.close()
            trash = self.root / f".deleting-{uuid.uuid4().hex}"
            col.folder.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
        self._jobs.fail_unfinished(name, f"collection {name!r} was deleted")

    # --- jobs -----------------------------------------------------------------------------------
    def add_job(self, job: JobView, texts: dict[str, str], limit: int | None = None) -> None:
        self._jobs.add(job, texts, limit)

    def unfinished_jobs(self, owner: str) -> int:
        return self._jobs.unfinished_count(owner)

    def claim_job(self, worker: str, lease_s: float) -> tuple[JobView, dict[str, str], int] | None:
        return self._jobs.claim(worker, lease_s)

    def save_job(self, job: JobView, worker: str, lease_s: float) -> bool:
        return self._jobs.save(job, worker, lease_s)

    def finish_job(self, job: JobView, worker: str | None, history: int) -> bool:
        return self._jobs.finish(job, worker, history)

    def release_job(self, job_id: str, worker: str) -> None:
        self._jobs.release(job_id, worker)

    def job(self, job_id: str) -> JobView | None:
        return self._jobs.get(job_id)
