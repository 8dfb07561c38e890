"""Log-probabilities in OpenAI's two shapes: chat's `logprobs.content` list and the completions'
parallel lists (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`).

A token's text is its own decoding (a piece of a multi-byte character shows as U+FFFD, as in
vLLM); `bytes` are that text's UTF-8 bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.logprobs import TokenLogprob


class TokenTexts:
    """The text of single tokens, decoded in one tokenizer call per batch of ids and remembered."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._known: dict[int, str] = {}

    def of(self, ids: Sequence[int]) -> list[str]:
        new = sorted({i for i in ids if i not in self._known})
        if new:
            texts = self._tokenizer.batch_decode([[i] for i in new], skip_special_tokens=False)
            self._known.update(zip(new, texts, strict=True))
        return [self._known[i] for i in ids]


def _ids(lps: Sequence[TokenLogprob | None]) -> list[int]:
    return [t for lp in lps if lp is not None for t in (lp.token, *(i for i, _ in lp.top))]


def chat_logprobs(lps: Sequence[TokenLogprob], texts: TokenTexts) -> dict[str, Any]:
    """{"content": [{token, logprob, bytes, top_logprobs: [...]}, ...], "refusal": None}."""
    names = dict(zip(ids := _ids(lps), texts.of(ids), strict=True))

    def entry(token: int, logprob: float) -> dict[str, Any]:
        text = names[token]
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    content = [
        {**entry(lp.token, lp.logprob), "top_logprobs": [entry(t, v) for t, v in lp.top]} for lp in lps
    ]
    return {"content": content, "refusal": None}


class TextLogprobs:
    """The completions' shape, chunk after chunk: `text_offset` counts on from the previous chunk."""

    def __init__(self, texts: TokenTexts, offset: int = 0) -> None:
        self.texts, self.offset = texts, offset

    def block(self, tokens: Sequence[int], lps: Sequence[TokenLogprob | None]) -> dict[str, Any]:
        """`tokens[i]` scored by `lps[i]` (None where the token has no score, e.g. the first)."""
        names = dict(zip(ids := [*tokens, *_ids(lps)], self.texts.of(ids), strict=True))
        offsets = []
        for token in tokens:
            offsets.append(self.offset)
            self.offset += len(names[token])
        return {
            "tokens": [names[t] for t in tokens],
            "token_logprobs": [lp.logprob if lp is not None else None for lp in lps],
            "top_logprobs": [{names[t]: v for t, v in lp.top} if lp is not None else None for lp in lps],
            "text_offset": offsets,
        }
