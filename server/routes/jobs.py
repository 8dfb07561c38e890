"""/v1/jobs/{id}: the status of an ingestion job."""

from __future__ import annotations

from fastapi import APIRouter

from server.collection_scope import ScopeDep
from server.errors import ApiError
from server.retrieval_schemas import JobDocument, JobOut
from server.retrieval_service import CollectionsDep, call

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}", response_model=JobOut)
async def get_job(job_id: str, manager: CollectionsDep, scope: ScopeDep) -> JobOut:
    """State (queued, running, succeeded, failed), progress 0..1, and each document's outcome."""
    job = await call(manager.job, job_id)
    collection = scope.public(job.collection)
    if collection is None:  # another tenant's job is as absent as an unknown one
        raise ApiError(404, f"job {job_id!r} does not exist", "not_found")
    return JobOut(
        job_id=job.job_id,
        collection=collection,
        state=job.state,
        stage=job.stage,
        progress=job.progress,
        documents=[JobDocument(**vars(d)) for d in job.documents],
        error=job.error,
        warnings=list(job.warnings),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )
