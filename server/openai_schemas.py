"""Request bodies of the OpenAI-compatible endpoints, with ragblend's RAG options as extra fields.

Unknown fields are refused (400 naming them), as OpenAI does; accepted fields that ragblend does
not implement are refused when set to anything but their neutral value (see `unsupported`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from engine.sampling import SEED_MAX, SEED_MIN
from retrieval.config import RetrievalMode
from server.bounds import MAX_TOKENS_BOUND, TOP_K_BOUND
from server.retrieval_schemas import FILTER_HELP, RETRIEVAL_HELP
from server.schemas import BlendRequest


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: StrictStr


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class _Sampling(BaseModel):
    """Fields both endpoints share."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr | None = None
    max_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS_BOUND)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX, description="64-bit sampling seed")
    stop: StrictStr | list[StrictStr] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=128)
    user: StrictStr | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def unsupported(self) -> str | None:
        """The first field set to a value ragblend cannot honour, with why."""
        if self.n != 1:
            return "n: only n=1 is supported"
        if self.presence_penalty or self.frequency_penalty:
            return "presence_penalty / frequency_penalty: penalties are not supported"
        if self.stream_options is not None and not self.stream:
            return "stream_options: only allowed with stream: true"
        return None


class ChatCompletionRequest(_Sampling):
    """POST /v1/chat/completions. RAG options: `documents` inline, or `collection` + `top_k`
    (and `selection`) to retrieve them; `blend` chooses how their cached K/V are reused."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS_BOUND)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    documents: list[StrictStr] | None = None
    collection: StrictStr | None = None
    top_k: int | None = Field(None, gt=0, le=TOP_K_BOUND)
    selection: dict[str, Any] | None = None
    blend: BlendRequest | None = None
    filter: dict[str, Any] | None = Field(None, description=FILTER_HELP)
    retrieval: RetrievalMode | None = Field(None, description=RETRIEVAL_HELP)

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def unsupported(self) -> str | None:
        if self.logprobs or self.top_logprobs:
            return "logprobs: log-probabilities are not supported"
        return super().unsupported()

    def wants_rag(self) -> bool:
        return any(
            v is not None for v in (self.documents, self.collection, self.top_k, self.filter, self.retrieval)
        )


class CompletionRequest(_Sampling):
    """POST /v1/completions: raw text continuation of `prompt` (no chat template, no documents)."""

    prompt: StrictStr | list[StrictStr]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=5)
    suffix: StrictStr | None = None

    def prompt_text(self) -> str | None:
        if isinstance(self.prompt, str):
            return self.prompt
        return self.prompt[0] if len(self.prompt) == 1 else None

    def unsupported(self) -> str | None:
        if not isinstance(self.prompt, str) and len(self.prompt) != 1:
            return "prompt: give one prompt (a string or a list of one string)"
        if self.echo:
            return "echo: not supported"
        if self.logprobs:
            return "logprobs: log-probabilities are not supported"
        if self.suffix:
            return "suffix: not supported"
        return super().unsupported()
