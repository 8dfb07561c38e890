"""Bodies of POST /tokenize and /detokenize, shaped like vLLM's server (token-budgeting clients and
`vllm bench serve` count with them)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from server.openai_schemas import ChatMessageIn


class TokenizeRequest(BaseModel):
    """Either `prompt` (raw text) or `messages` (rendered with the chat template, as chat completions
    would send them without documents)."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr | None = None
    prompt: StrictStr | None = None
    messages: list[ChatMessageIn] | None = Field(None, min_length=1)
    add_special_tokens: bool | None = Field(
        None, description="prompt: add BOS where the tokenizer does (default true); messages: ignored"
    )
    add_generation_prompt: bool = Field(True, description="messages only; only true is supported")
    return_token_strs: bool = False

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt or messages")
        return self


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: StrictStr | None = None
    tokens: list[Annotated[StrictInt, Field(ge=0, lt=1 << 31)]] = Field(max_length=1_000_000)


class DetokenizeResponse(BaseModel):
    prompt: str
