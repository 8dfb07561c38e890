"""Building prompts as separately tokenized pieces: [prefix], one piece per document, [query]."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

PieceKind = Literal["prefix", "document", "query"]

_SYSTEM = "\x00RAGBLEND_SYSTEM\x00"
_USER = "\x00RAGBLEND_USER\x00"

DEFAULT_RAG_SYSTEM = (
    "You are a helpful assistant. Answer the question using the documents given before it. "
    "Be brief and precise."
)
DEFAULT_CHAT_SYSTEM = "You are a helpful assistant."


@dataclass(frozen=True)
class PromptPiece:
    kind: PieceKind
    ids: tuple[int, ...]
    text: str


@dataclass(frozen=True)
class Prompt:
    """A prompt as pieces; the model sees the concatenation of their ids, never a re-tokenized join."""

    pieces: tuple[PromptPiece, ...]

    @property
    def ids(self) -> list[int]:
        return [t for p in self.pieces for t in p.ids]

    def __len__(self) -> int:
        return sum(len(p.ids) for p in self.pieces)

    def spans(self) -> list[tuple[PieceKind, int, int]]:
        """(kind, start, end) token offsets of every piece."""
        out, pos = [], 0
        for p in self.pieces:
            out.append((p.kind, pos, pos + len(p.ids)))
            pos += len(p.ids)
        return out


class PromptBuilder:
    """Splits the model's chat template around the user message so each piece tokenizes on its own.

    The prefix holds the system turn and the opening of the user turn; documents follow as plain text
    pieces (their tokens do not depend on what comes before them, so their KV caches can be reused);
    the query piece closes the user turn and opens the assistant's.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._head, self._tail, self._system_in_template = self._split_template()
        self._bos = self._needs_bos()

    def _split_template(self) -> tuple[str, str, bool]:
        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            return f"{_SYSTEM}\n\n", "\n\nAnswer:", False
        messages = [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": _USER}]
        try:
            rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            system_in_template = True
        except Exception:  # templates without a system role (Mistral) reject one
            rendered = tok.apply_chat_template(
                [{"role": "user", "content": _USER}], tokenize=False, add_generation_prompt=True
            )
            system_in_template = False
        head, tail = rendered.split(_USER, 1)
        if not system_in_template:
            head = head + f"{_SYSTEM}\n\n"
        return head, tail, system_in_template

    def _needs_bos(self) -> list[int]:
        tok = self.tokenizer
        bos_id, bos_text = getattr(tok, "bos_token_id", None), getattr(tok, "bos_token", None)
        if bos_id is None or not bos_text or self._head.startswith(bos_text):
            return []
        probe = tok("x", add_special_tokens=True).input_ids
        return [bos_id] if probe and probe[0] == bos_id else []

    def encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False).input_ids)

    def prefix(self, system: str | None, with_documents: bool) -> PromptPiece:
        default = DEFAULT_RAG_SYSTEM if with_documents else DEFAULT_CHAT_SYSTEM
        text = self._head.replace(_SYSTEM, system if system is not None else default)
        return PromptPiece("prefix", tuple(self._bos) + self.encode(text), text)

    def document(self, text: str) -> PromptPiece:
        body = text.strip() + "\n\n"
        return PromptPiece("document", self.encode(body), body)

    def query(self, query: str, with_documents: bool) -> PromptPiece:
        text = (f"Question: {query}" if with_documents else query) + self._tail
        return PromptPiece("query", self.encode(text), text)

    def build(self, query: str, documents: list[str] | None = None, system: str | None = None) -> Prompt:
        docs = documents or []
        pieces = [self.prefix(system, bool(docs))]
        pieces += [self.document(d) for d in docs]
        pieces.append(self.query(query, bool(docs)))
        return Prompt(tuple(pieces))
