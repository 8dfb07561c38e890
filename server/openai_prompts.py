"""Prompts for the OpenAI-style routes, built off the event loop from the engine's tokenizer."""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool

from engine.base import Engine, PromptTooLong
from engine.chat_prompt import ChatMessage, ChatPromptError, chat_builder_for, raw_prompt
from engine.prompt import Prompt, PromptBuilder, PromptPiece
from server.errors import ApiError
from server.openai_schemas import ChatMessageIn


def chat_messages(messages: list[ChatMessageIn]) -> list[ChatMessage]:
    # OpenAI's newer 'developer' role is the system role of models that have no such distinction.
    return [ChatMessage("system" if m.role == "developer" else m.role, m.text(), _extra(m)) for m in messages]


def _extra(m: ChatMessageIn) -> dict[str, Any] | None:
    """Tool fields as chat templates read them (arguments as an object, as Hugging Face's do)."""
    extra: dict[str, Any] = {}
    if m.tool_calls:
        calls = []
        for call in m.tool_calls:
            try:
                arguments = json.loads(call.function.arguments)
            except ValueError:
                raise ApiError(
                    400, f"messages: tool call {call.id!r} has arguments that are not JSON"
                ) from None
            calls.append(
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": arguments},
                }
            )
        extra["tool_calls"] = calls
    if m.tool_call_id is not None:
        extra["tool_call_id"] = m.tool_call_id
    return extra or None


def check_tools(engine: Engine, tools: list[dict[str, Any]] | None, messages: list[ChatMessageIn]) -> None:
    """400 naming the reason when tools are offered (or tool turns sent) to a model whose chat
    template has no place for them."""
    if not tools and not any(m.uses_tools() for m in messages):
        return
    pieces = _builder(engine)
    if pieces is None:
        raise ApiError(400, f"tools: the {engine.name} engine takes no tools", "unsupported_parameter")
    if not chat_builder_for(pieces).accepts_tools:
        raise ApiError(
            400,
            f"tools: the chat template of {engine.model_name} does not accept tools (it never renders "
            "them), so this model cannot be offered tools or sent tool turns",
            "unsupported_parameter",
        )


def _builder(engine: Engine) -> PromptBuilder | None:
    pieces = getattr(engine, "prompts", None)
    return pieces if isinstance(pieces, PromptBuilder) else None


def engine_tokenizer(engine: Engine) -> Any:
    """The served model's tokenizer; 400 on an engine that does not expose one."""
    pieces = _builder(engine)
    if pieces is None:
        raise ApiError(400, f"the {engine.name} engine does not expose its tokenizer", "unsupported")
    return pieces.tokenizer


async def chat_prompt_ids(engine: Engine, messages: list[ChatMessage]) -> list[int]:
    """The token ids chat completions would send for `messages` without documents."""
    pieces = _builder(engine)
    if pieces is None:
        raise ApiError(400, f"the {engine.name} engine does not expose its tokenizer", "unsupported")
    try:
        prompt = await run_in_threadpool(chat_builder_for(pieces).build, messages, None)
    except ChatPromptError as exc:
        raise ApiError(400, str(exc)) from exc
    return prompt.ids


def _fits(engine: Engine, prompt: Prompt, max_tokens: int) -> Prompt:
    try:
        engine.check_fits(prompt, max_tokens)
    except PromptTooLong as exc:
        raise ApiError(400, str(exc), "context_length_exceeded") from exc
    return prompt


async def chat_prompt(
    engine: Engine,
    messages: list[ChatMessage],
    documents: list[str] | None,
    max_tokens: int,
    tools: list[dict[str, Any]] | None = None,
) -> Prompt:
    pieces = _builder(engine)
    try:
        if pieces is not None:
            builder = chat_builder_for(pieces)
            prompt = await run_in_threadpool(builder.build, messages, documents, tools)
        else:
            prompt = await _single_turn(engine, messages, documents)
    except ChatPromptError as exc:
        raise ApiError(400, str(exc)) from exc
    return _fits(engine, prompt, max_tokens)


async def _single_turn(engine: Engine, messages: list[ChatMessage], documents: list[str] | None) -> Prompt:
    """Engines without our prompt builder take one question and an optional system text."""
    turns = [m for m in messages if m.role != "system"]
    if len(turns) != 1 or turns[0].role != "user":
        raise ChatPromptError(f"messages: the {engine.name} engine takes one user message (and system ones)")
    system = "\n\n".join(m.content for m in messages if m.role == "system") or None
    return await run_in_threadpool(engine.build_prompt, turns[0].content, documents, system)


def _with_documents(pieces: PromptBuilder, text: str, documents: list[str]) -> Prompt:
    """The model's RAG system turn, each document as its own piece (cached K/V shared with /generate
    and chat), then `text` as it is: the caller writes the question's turn."""
    if not text:
        raise ChatPromptError("prompt: the prompt must not be empty")
    query = PromptPiece("query", pieces.encode(text), text)
    return Prompt((pieces.prefix(None, True), *[pieces.document(d) for d in documents], query))


async def completion_prompt(
    engine: Engine, text: str, max_tokens: int, documents: list[str] | None = None
) -> Prompt:
    pieces = _builder(engine)
    if pieces is None:
        raise ApiError(400, f"/v1/completions is not available on the {engine.name} engine", "unsupported")
    try:
        if documents:
            prompt = await run_in_threadpool(_with_documents, pieces, text, documents)
        else:
            prompt = await run_in_threadpool(raw_prompt, pieces, text)
    except ChatPromptError as exc:
        raise ApiError(400, str(exc)) from exc
    return _fits(engine, prompt, max_tokens)
