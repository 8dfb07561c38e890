"""What an OpenAI-style request answers from: its RAG extras checked and resolved into documents."""

from __future__ import annotations

from pydantic import ValidationError

from retrieval.selection import SelectionConfig
from server.errors import ApiError
from server.openai_schemas import ChatCompletionRequest
from server.rag_context import RagContext, resolve_context
from server.services import Services
from server.settings import Settings


def check_documents(documents: list[str] | None, settings: Settings) -> None:
    docs = documents or []
    if len(docs) > settings.max_documents:
        raise ApiError(422, f"documents: {len(docs)} given, at most {settings.max_documents} allowed")
    for i, doc in enumerate(docs):
        if not doc.strip():
            raise ApiError(422, f"documents.{i}: a document must not be empty")
        if len(doc) > settings.max_document_chars:
            raise ApiError(
                422, f"documents.{i}: {len(doc)} characters, the limit is {settings.max_document_chars}"
            )


def check_sampling(max_tokens: int | None, stops: list[str], settings: Settings) -> int:
    """The effective max_tokens; 400 naming the cap when a request asks for more."""
    effective = max_tokens or min(settings.default_max_tokens, settings.max_tokens_limit)
    if effective > settings.max_tokens_limit:
        raise ApiError(
            400, f"max_tokens: {effective} is above this server's cap of {settings.max_tokens_limit}"
        )
    if len(stops) > settings.max_stop_strings or any(not s for s in stops):
        raise ApiError(422, f"stop: give 1 to {settings.max_stop_strings} non-empty strings")
    return effective


async def chat_context(
    services: Services, body: ChatCompletionRequest, query: str, salt: str = ""
) -> RagContext:
    """Inline `documents`, or the `top_k` chunks of `collection` retrieved for the last user message;
    with `selection`, chosen among them (see server/rag_context.py)."""
    if not body.wants_rag():
        return RagContext(None)
    selection = None
    if body.selection is not None:
        try:
            selection = SelectionConfig.model_validate(body.selection)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in ("selection", *first["loc"]))
            raise ApiError(422, f"{where}: {first['msg']}") from None
    check_documents(body.documents, services.settings)
    engine = services.engine
    default = engine.default_blend if engine is not None else None
    blend = body.blend.options(default) if body.blend is not None else None
    return await resolve_context(
        services, query, body.documents, body.collection, body.top_k, selection, blend, salt,
        filter=body.filter, retrieval=body.retrieval,
    )  # fmt: skip
