"""Reading the documents of an ingestion request: a JSON body or a multipart upload of text files."""

from __future__ import annotations

from pathlib import PurePath

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from retrieval.documents import decode_upload
from retrieval.errors import InvalidDocument
from server.errors import ApiError
from server.retrieval_schemas import AddDocumentsRequest
from server.settings import Settings


def _describe(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ())) or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid value')}")
    return "; ".join(parts)


async def _from_json(request: Request) -> list[tuple[str, str]]:
    try:
        body = AddDocumentsRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise ApiError(422, _describe(exc)) from None
    return body.pairs()


async def _from_multipart(request: Request, settings: Settings) -> list[tuple[str, str]]:
    limit = settings.retrieval_max_documents_per_request
    try:
        form = await request.form(max_files=limit, max_fields=limit)
    except (MultiPartException, HTTPException) as exc:
        detail = getattr(exc, "message", None) or getattr(exc, "detail", "")
        raise ApiError(400, f"malformed multipart body: {detail}") from None
    files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
    if not files:
        raise ApiError(422, "no files in the multipart body: upload .txt or .md files (field 'files')")
    docs = []
    for upload in files:
        name = PurePath(upload.filename or "").name
        data = await upload.read()
        docs.append((name, decode_upload(name, data, settings.retrieval_max_document_chars)))
    return docs


async def read_documents(request: Request, settings: Settings) -> list[tuple[str, str]]:
    """(name, text) pairs; uploads are decoded and checked here, JSON texts by the manager."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "multipart/form-data":
            docs = await _from_multipart(request, settings)
        elif content_type in ("application/json", ""):
            docs = await _from_json(request)
        else:
            raise ApiError(
                415, f"unsupported content type {content_type!r}: send JSON or multipart/form-data"
            )
    except InvalidDocument as exc:
        raise ApiError(exc.status, exc.message, exc.kind) from None
    return docs
