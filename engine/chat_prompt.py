"""Multi-message chat prompts as separately tokenized pieces, for OpenAI-style `messages`.

The chat template is rendered once over the conversation with a sentinel in place of the last user
message and split there: everything before it (system turn, earlier turns, the opening of the last
user turn) is the prefix piece; documents follow as their own pieces, exactly as `PromptBuilder`
makes them, so their cached K/V are shared with /generate; the last user message, closed by the
template's tail and the assistant header, is the query piece.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from weakref import WeakKeyDictionary

from engine.prompt import DEFAULT_CHAT_SYSTEM, DEFAULT_RAG_SYSTEM, Prompt, PromptBuilder, PromptPiece

ChatRole = Literal["system", "user", "assistant", "tool"]

_LAST_USER = "\x00RAGBLEND_LAST_USER\x00"


class ChatPromptError(ValueError):
    """The conversation cannot be turned into a prompt (names what is wrong)."""


@dataclass(frozen=True)
class ChatMessage:
    role: ChatRole
    content: str
    # fields the template reads besides role and content (an assistant's `tool_calls`, a tool
    # result's `tool_call_id`)
    extra: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"role": self.role, "content": self.content, **(self.extra or {})}


class ChatPromptBuilder:
    """Builds prompts from a conversation with the model's chat template (or a plain fallback)."""

    def __init__(self, pieces: PromptBuilder) -> None:
        self.pieces = pieces
        self.tokenizer = pieces.tokenizer
        self._bos = self._bos_ids()

    def _bos_ids(self) -> tuple[int, ...]:
        # Same rule as the single-question prompts: add BOS only where the tokenizer would and the
        # template does not already write it.
        tok = self.tokenizer
        bos_id, bos_text = getattr(tok, "bos_token_id", None), getattr(tok, "bos_token", None)
        if bos_id is None or not bos_text:
            return ()
        head = self._render([ChatMessage("user", _LAST_USER)]).split(_LAST_USER, 1)[0]
        if head.startswith(bos_text):
            return ()
        probe = tok("x", add_special_tokens=True).input_ids
        return (bos_id,) if probe and probe[0] == bos_id else ()

    @property
    def accepts_tools(self) -> bool:
        """Whether the chat template renders `tools` at all (a template that never names them would
        drop them silently)."""
        template = getattr(self.tokenizer, "chat_template", None)
        return isinstance(template, str) and "tools" in template

    def _render(self, messages: list[ChatMessage], tools: list[dict[str, Any]] | None = None) -> str:
        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            return _plain_render(messages)
        dicts: list[dict[str, Any]] = [m.as_dict() for m in messages]
        extra: dict[str, Any] = {"tools": tools} if tools else {}
        try:
            rendered: str = tok.apply_chat_template(
                dicts, tokenize=False, add_generation_prompt=True, **extra
            )
            return rendered
        except Exception:
            # Templates without a system role (Mistral) reject one: fold it into the first user turn.
            return tok.apply_chat_template(
                _fold_system(dicts), tokenize=False, add_generation_prompt=True, **extra
            )

    def build(
        self,
        messages: list[ChatMessage],
        documents: list[str] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Prompt:
        """The prompt of `messages`; `tools` (OpenAI's function definitions) go to the template,
        which must accept them (`accepts_tools`). After a tool's result (the last message's role is
        `tool`) the whole conversation is one piece: there is no question to place documents before."""
        if not messages:
            raise ChatPromptError("messages: at least one message is required")
        if tools and not self.accepts_tools:
            raise ChatPromptError("tools: this model's chat template does not accept tools")
        if messages[-1].role == "tool" and not documents:
            conversation = list(messages)
            if not any(m.role == "system" for m in conversation):
                conversation.insert(0, ChatMessage("system", DEFAULT_CHAT_SYSTEM))
            text = self._render(conversation, tools)
            return Prompt((PromptPiece("prefix", self._bos + self.pieces.encode(text), text),))
        if messages[-1].role != "user":
            raise ChatPromptError(
                f"messages: the last message must have role 'user', not {messages[-1].role!r}"
            )
        docs = documents or []
        conversation = list(messages)
        if not any(m.role == "system" for m in conversation):
            default = DEFAULT_RAG_SYSTEM if docs else DEFAULT_CHAT_SYSTEM
            conversation.insert(0, ChatMessage("system", default))
        question = conversation[-1].content
        conversation[-1] = ChatMessage("user", _LAST_USER)
        rendered = self._render(conversation, tools)
        if rendered.count(_LAST_USER) != 1:
            raise ChatPromptError("messages: the chat template dropped or repeated the last user message")
        head, tail = rendered.split(_LAST_USER, 1)
        prefix = PromptPiece("prefix", self._bos + self.pieces.encode(head), head)
        query_text = (f"Question: {question}" if docs else question) + tail
        query = PromptPiece("query", self.pieces.encode(query_text), query_text)
        return Prompt((prefix, *[self.pieces.document(d) for d in docs], query))


def _fold_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system and rest:
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    return rest


def _plain_render(messages: list[ChatMessage]) -> str:
    """A readable layout for tokenizers that have no chat template."""
    lines = [f"{m.role.capitalize()}: {m.content}" for m in messages]
    return "\n\n".join(lines) + "\n\nAssistant:"


_BUILDERS: WeakKeyDictionary[PromptBuilder, ChatPromptBuilder] = WeakKeyDictionary()


def chat_builder_for(pieces: PromptBuilder) -> ChatPromptBuilder:
    """One chat builder per prompt builder (the template is rendered once to find its layout)."""
    builder = _BUILDERS.get(pieces)
    if builder is None:
        builder = _BUILDERS[pieces] = ChatPromptBuilder(pieces)
    return builder


def raw_prompt(pieces: PromptBuilder, text: str) -> Prompt:
    """A completion prompt: the text as the tokenizer encodes it alone (BOS included if it adds one)."""
    ids = tuple(pieces.tokenizer(text, add_special_tokens=True).input_ids)
    if not ids:
        raise ChatPromptError("prompt: the prompt must not be empty")
    return Prompt((PromptPiece("prefix", ids, text),))
