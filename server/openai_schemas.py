"""Request bodies of the OpenAI-compatible endpoints, with ragblend's RAG options as extra fields.

Unknown fields are refused (400 naming them), as OpenAI does; accepted fields that ragblend does
not implement are refused when set to anything but their neutral value (see `unsupported`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from engine.logprobs import MAX_TOP_LOGPROBS
from engine.sampling import SEED_MAX, SEED_MIN
from retrieval.config import RetrievalMode
from server.bounds import MAX_TOKENS_BOUND, TOP_K_BOUND
from server.retrieval_schemas import FILTER_HELP, RETRIEVAL_HELP
from server.schemas import BlendRequest

MAX_N = 16  # sequences per request


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: StrictStr


class FunctionCallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    arguments: StrictStr


class ToolCallIn(BaseModel):
    """An earlier assistant turn's tool call, as the client sends it back."""

    model_config = ConfigDict(extra="forbid")

    id: StrictStr
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: StrictStr | None = None

    def uses_tools(self) -> bool:
        return self.role == "tool" or bool(self.tool_calls)

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: FunctionIn


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
    n: int = Field(1, ge=1, le=MAX_N, description="sequences to sample for the prompt")
    user: StrictStr | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    # vLLM's extra sampling fields, which its clients (`vllm bench serve`) send at their neutral values
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    min_tokens: int = Field(0, ge=0, le=MAX_TOKENS_BOUND)
    ignore_eos: bool = Field(False, description="decode past end-of-sequence tokens up to max_tokens")

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def unsupported(self) -> str | None:
        """The first field set to a value ragblend cannot honour, with why."""
        if self.presence_penalty or self.frequency_penalty or self.repetition_penalty != 1.0:
            return "presence_penalty / frequency_penalty / repetition_penalty: penalties are not supported"
        if self.min_tokens:
            return "min_tokens: only 0 is supported"
        if self.stream_options is not None and not self.stream:
            return "stream_options: only allowed with stream: true"
        return None


class ChatCompletionRequest(_Sampling):
    """POST /v1/chat/completions. RAG options: `documents` inline, or `collection` + `top_k`
    (and `selection`) to retrieve them; `blend` chooses how their cached K/V are reused."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS_BOUND)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    documents: list[StrictStr] | None = None
    collection: StrictStr | None = None
    top_k: int | None = Field(None, gt=0, le=TOP_K_BOUND)
    selection: dict[str, Any] | None = None
    blend: BlendRequest | None = None
    filter: dict[str, Any] | None = Field(None, description=FILTER_HELP)
    retrieval: RetrievalMode | None = Field(None, description=RETRIEVAL_HELP)
    tools: list[ToolIn] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    def offered_tools(self) -> list[dict[str, Any]] | None:
        """The tools the model is offered: none with `tool_choice: none`."""
        if not self.tools or self.tool_choice == "none":
            return None
        return [t.model_dump(exclude_none=True) for t in self.tools]

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def unsupported(self) -> str | None:
        if self.top_logprobs is not None and not self.logprobs:
            return "top_logprobs: only allowed with logprobs: true"
        if self.tool_choice is not None and self.tool_choice not in ("none", "auto"):
            return "tool_choice: only 'auto' and 'none' are supported (a call cannot be forced)"
        if self.tool_choice is not None and not self.tools:
            return "tool_choice: only allowed with tools"
        return super().unsupported()

    def logprob_count(self) -> int | None:
        """Alternatives per token when log-probabilities are asked for, else None."""
        return (self.top_logprobs or 0) if self.logprobs else None

    def wants_rag(self) -> bool:
        return any(
            v is not None for v in (self.documents, self.collection, self.top_k, self.filter, self.retrieval)
        )


class CompletionRequest(_Sampling):
    """POST /v1/completions: raw text continuation of `prompt` (no chat template). Extra fields:
    `documents` go before it as cached pieces (after the model's RAG system turn), `blend` chooses
    how they are reused. `echo` with `max_tokens: 0` scores the prompt instead of continuing it; with
    a generation the prompt comes back before it (server/openai_echo.py)."""

    prompt: StrictStr | list[StrictStr]
    max_tokens: int | None = Field(None, ge=0, le=MAX_TOKENS_BOUND)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    suffix: StrictStr | None = None
    documents: list[StrictStr] | None = None
    blend: BlendRequest | None = None
    top_k: int = Field(-1, ge=-1, le=TOP_K_BOUND, description="vLLM's top-k sampling: only -1 or 0 (off)")

    @property
    def scoring(self) -> bool:
        return self.echo and self.max_tokens == 0

    def prompt_text(self) -> str | None:
        if isinstance(self.prompt, str):
            return self.prompt
        return self.prompt[0] if len(self.prompt) == 1 else None

    def unsupported(self) -> str | None:
        if not isinstance(self.prompt, str) and len(self.prompt) != 1:
            return "prompt: give one prompt (a string or a list of one string)"
        if self.max_tokens == 0 and not self.echo:
            return "max_tokens: 0 only with echo: true (scoring the prompt)"
        if self.scoring and self.n != 1:
            return "n: scoring the prompt (echo, max_tokens 0) gives one choice"
        if self.top_k not in (-1, 0):
            return "top_k: top-k sampling is not supported (only -1 or 0)"
        if self.suffix:
            return "suffix: not supported"
        return super().unsupported()
