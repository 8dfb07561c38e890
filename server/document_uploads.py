"""Reading the documents of an ingestion request: a JSON body or a multipart upload of text files.

Each document comes with its metadata (metadata.py): in JSON, a `metadata` object beside its text;
in a multipart upload, one form field `metadata` holding a JSON object, given to every file."""

from __future__ import annotations

import json
from pathlib import PurePath

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from retrieval.documents import decode_upload
from retrieval.errors import InvalidRequest
from retrieval.metadata import Scalar, check_metadata
from server.errors import ApiError
from server.retrieval_schemas import AddDocumentsRequest
from server.settings import Settings


def _describe(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ())) or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid value')}")
    return "; ".join(parts)


Upload = tuple[str, str, dict[str, Scalar]]  # name, text, metadata


async def _from_json(request: Request) -> list[Upload]:
    try:
        body = AddDocumentsRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise ApiError(422, _describe(exc)) from None
    metadata = [check_metadata(m, where) for where, m in body.metadata_list()]
    return [(name, text, meta) for (name, text), meta in zip(body.pairs(), metadata, strict=True)]


def _form_metadata(raw: object) -> dict[str, Scalar]:
    if raw is None:
        return {}
    if not isinstance(raw, str):
        raise ApiError(422, "metadata: expected a form field holding a JSON object, not a file")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ApiError(422, f"metadata: not valid JSON ({exc})") from None
    return check_metadata(value, "metadata")


async def _from_multipart(request: Request, settings: Settings) -> list[Upload]:
    limit = settings.retrieval_max_documents_per_request
    try:
        form = await request.form(max_files=limit, max_fields=limit)
    except (MultiPartException, HTTPException) as exc:
        detail = getattr(exc, "message", None) or getattr(exc, "detail", "")
        raise ApiError(400, f"malformed multipart body: {detail}") from None
    metadata = _form_metadata(form.get("metadata"))
    files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
    if not files:
        raise ApiError(422, "no files in the multipart body: upload .txt or .md files (field 'files')")
    docs = []
    for upload in files:
        name = PurePath(upload.filename or "").name
        data = await upload.read()
        docs.append((name, decode_upload(name, data, settings.retrieval_max_document_chars), metadata))
    return docs


async def read_documents(request: Request, settings: Settings) -> list[Upload]:
    """(name, text, metadata) of each document; uploads are decoded and checked here, JSON texts by
    the manager; metadata is checked here (422 naming the field)."""
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
    except InvalidRequest as exc:  # InvalidDocument included
        raise ApiError(exc.status, exc.message, exc.kind) from None
    return docs
