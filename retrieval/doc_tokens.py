"""A document tokenized once, with each token tied to the character where its word begins."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from retrieval.spans import Span


@lru_cache(maxsize=1)
def _whitespace_codepoints() -> np.ndarray:
    return np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)


def _next_visible(text: str) -> np.ndarray:
    """next_visible[i] = first index >= i holding a non-whitespace character (len(text) if none)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    blank = np.isin(codes, _whitespace_codepoints())
    positions = np.where(blank, len(text), np.arange(len(text)))
    # a running minimum from the right gives, for each index, the nearest visible character ahead
    return np.append(np.minimum.accumulate(positions[::-1])[::-1], len(text))


@dataclass(frozen=True)
class DocumentTokens:
    """Token ids of a whole document and, per token, the character its visible text starts at.

    Byte-level tokenizers glue the space before a word to the word (" The"); anchoring tokens at
    their first visible character assigns such a token to the sentence it opens, not the one before.
    """

    ids: torch.Tensor  # int64 [n]
    anchors: np.ndarray  # int64 [n], non-decreasing character positions
    length: int  # characters in the document

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def unit_of_token(self, unit_starts: Sequence[int]) -> np.ndarray:
        """Index of the unit (sentence, chunk) each token falls in, given the units' start offsets."""
        idx = np.searchsorted(np.asarray(unit_starts), self.anchors, side="right") - 1
        return np.clip(idx, 0, len(unit_starts) - 1)

    def token_at(self, chars: Sequence[int] | np.ndarray) -> np.ndarray:
        """For each character position, the index of the first token anchored at or after it."""
        return np.searchsorted(self.anchors, np.asarray(chars), side="left")

    def counts(self, spans: Sequence[Span]) -> np.ndarray:
        """Tokens anchored inside each span (any spans, overlapping or not)."""
        if not spans:
            return np.zeros(0, dtype=np.int64)
        return self.token_at([s.end for s in spans]) - self.token_at([s.start for s in spans])

    def char_at(self, token: int) -> int:
        """Character where token `token` begins (the document's end past the last token)."""
        return self.length if token >= len(self) else int(self.anchors[token])


def tokenize_document(tokenizer: Any, text: str) -> DocumentTokens:
    """Tokenize `text` without special tokens, keeping character offsets (needs a fast tokenizer)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = torch.tensor(enc["input_ids"], dtype=torch.long)
    if len(ids) == 0:
        return DocumentTokens(ids, np.zeros(0, dtype=np.int64), len(text))
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    starts = offsets[:, 0]
    visible = _next_visible(text)[np.clip(starts, 0, len(text))]
    # keep the anchor inside the token (a token of only spaces stays where it is)
    anchors = np.where(visible < offsets[:, 1], visible, starts)
    # tokens of one multi-byte character can report offsets out of order; anchors must not decrease
    anchors = np.maximum.accumulate(anchors)
    return DocumentTokens(ids, anchors, len(text))
