"""POST /tokenize and /detokenize: the served model's tokenizer, as vLLM's server exposes it."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from server.deps import EngineDep
from server.errors import ApiError
from server.openai_prompts import chat_messages, chat_prompt_ids, engine_tokenizer
from server.routes.models import served_model
from server.tokenize_schemas import DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse

router = APIRouter(tags=["tokenize"])


@router.post("/tokenize", response_model=TokenizeResponse)
async def tokenize(body: TokenizeRequest, engine: EngineDep) -> TokenizeResponse:
    """Token ids of `prompt`, or of `messages` exactly as /v1/chat/completions would prompt the model
    with them (its default system message included); `count` and the model's context length."""
    served_model(engine, body.model)
    tokenizer = engine_tokenizer(engine)
    if body.messages is not None:
        if not body.add_generation_prompt:
            raise ApiError(422, "add_generation_prompt: only true is supported")
        ids = await chat_prompt_ids(engine, chat_messages(body.messages))
    else:
        special = True if body.add_special_tokens is None else body.add_special_tokens
        text = body.prompt or ""
        ids = await run_in_threadpool(lambda: list(tokenizer(text, add_special_tokens=special).input_ids))
    strs = await run_in_threadpool(tokenizer.convert_ids_to_tokens, ids) if body.return_token_strs else None
    return TokenizeResponse(count=len(ids), max_model_len=engine.max_context, tokens=ids, token_strs=strs)


@router.post("/detokenize", response_model=DetokenizeResponse)
async def detokenize(body: DetokenizeRequest, engine: EngineDep) -> DetokenizeResponse:
    """The text of `tokens` (special tokens kept, as vLLM does)."""
    served_model(engine, body.model)
    tokenizer = engine_tokenizer(engine)
    vocab = len(tokenizer)
    bad = next((i for i, t in enumerate(body.tokens) if not 0 <= t < vocab), None)
    if bad is not None:
        raise ApiError(422, f"tokens.{bad}: {body.tokens[bad]} is not a token id (0..{vocab - 1})")
    text = await run_in_threadpool(tokenizer.decode, body.tokens)
    return DetokenizeResponse(prompt=text)
