"""POST /v1/embeddings: vectors from the collections' embedding model, in OpenAI's shape.

RAG frameworks embed their queries and documents through the same server they generate with; these
are the very vectors a collection of this server is indexed with (L2-normalised float32). Like every
route it needs an API key when keys are configured and counts against the key's rate limit.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter

from server.deps import ServicesDep
from server.embedding_schemas import MAX_INPUTS, EmbeddingRequest
from server.errors import ApiError
from server.retrieval_service import call, get_collections

router = APIRouter(tags=["openai"])


def _check(body: EmbeddingRequest, max_chars: int) -> list[str]:
    texts = body.texts()
    if not 1 <= len(texts) <= MAX_INPUTS:
        raise ApiError(422, f"input: give 1 to {MAX_INPUTS} texts, not {len(texts)}")
    for i, text in enumerate(texts):
        where = "input" if isinstance(body.input, str) else f"input.{i}"
        if not text.strip():
            raise ApiError(422, f"{where}: a text to embed must not be empty")
        if len(text) > max_chars:
            raise ApiError(422, f"{where}: {len(text)} characters, the limit is {max_chars}")
    return texts


def _encoded(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":  # little-endian float32 bytes, as OpenAI's clients decode them
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, services: ServicesDep) -> dict[str, Any]:
    """Embed `input` (a text or a list); `model` may be omitted, the embedding model's name or the
    served model's id (clients configured with one model name for everything)."""
    texts = _check(body, services.settings.max_document_chars)
    manager = get_collections(services)
    embedder = await call(manager.embedder, "query")
    names = {embedder.name}
    if services.engine is not None:
        names.add(services.engine.model_name)
    if body.model is not None and body.model not in names:
        raise ApiError(
            404,
            f"model {body.model!r} does not embed here; this server embeds with {embedder.name!r}",
            "model_not_found",
        )
    if body.dimensions is not None and body.dimensions != embedder.dim:
        raise ApiError(422, f"dimensions: {embedder.name} gives {embedder.dim}-dimensional vectors only")
    vectors = await call(embedder.embed, texts)
    tokens = await call(embedder.count_tokens, texts)
    data = [
        {"object": "embedding", "index": i, "embedding": _encoded(v, body.encoding_format)}
        for i, v in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": embedder.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
