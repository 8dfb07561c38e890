"""Errors of the retrieval layer; each carries the HTTP status a gateway should answer with."""

from __future__ import annotations


class RetrievalError(Exception):
    status = 400
    kind = "invalid_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CollectionNotFound(RetrievalError):
    status = 404
    kind = "not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} does not exist")


class CollectionExists(RetrievalError):
    status = 409
    kind = "conflict"

    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} already exists")


class CollectionClosed(RetrievalError):
    """The collection was deleted (or the server is stopping) while work on it was pending."""

    status = 409
    kind = "conflict"

    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} was deleted or closed")


class DocumentNotFound(RetrievalError):
    status = 404
    kind = "not_found"

    def __init__(self, collection: str, doc_id: str) -> None:
        super().__init__(f"document {doc_id!r} does not exist in collection {collection!r}")


class DocumentExists(RetrievalError):
    status = 409
    kind = "conflict"

    def __init__(self, collection: str, doc_id: str) -> None:
        super().__init__(f"document {doc_id!r} is already in collection {collection!r}")


class JobNotFound(RetrievalError):
    status = 404
    kind = "not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} does not exist")


class QueueFull(RetrievalError):
    """The tenant already has as many ingestion jobs queued or running as it may: the upload is
    refused whole (nothing stored) and may be sent again once some of them finish."""

    status = 429
    kind = "queue_full"

    def __init__(self, unfinished: int, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"{unfinished} ingestion jobs of this tenant are queued or running, at most {limit} "
            "(RAGBLEND_RETRIEVAL_MAX_JOBS_PER_TENANT); retry once some have finished"
        )
        self.unfinished, self.limit, self.retry_after_s = unfinished, limit, retry_after_s


class InvalidRequest(RetrievalError):
    status = 422


class InvalidDocument(InvalidRequest):
    """Empty, binary, oversized or otherwise unusable input; `status` says which 4xx fits."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class ModelUnavailable(RetrievalError):
    """The language model a chunker needs is not loaded (or cannot serve this chunker)."""

    status = 503
    kind = "unavailable"


class StoreInUse(RuntimeError):
    """The embedded store's data directory is held by another process (SQLite serves one process)."""
