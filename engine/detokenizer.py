"""Turning generated token ids into text deltas, with stop strings that never leak into the output."""

from __future__ import annotations

from typing import Any, Protocol


class Decoder(Protocol):
    def decode(self, token_ids: Any, skip_special_tokens: bool = ..., **kwargs: Any) -> Any: ...


class IncrementalDetokenizer:
    """Emits text as soon as it is stable: a multi-byte character split over tokens waits for its end.

    Each step decodes only a short window of recent ids, so a long answer costs no quadratic decoding.
    """

    def __init__(self, tokenizer: Decoder) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix_offset : self.read_offset], skip_special_tokens=True)
        after = decode(self.ids[self.prefix_offset :], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return after[len(before) :]
        return ""


class StopMatcher:
    """Holds back text that could be the start of a stop string; cuts the text at the first stop string."""

    def __init__(self, stop: tuple[str, ...]) -> None:
        self.stop = tuple(s for s in stop if s)
        self.longest = max((len(s) for s in self.stop), default=0)
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def feed(self, delta: str) -> str:
        """Add generated text; return what may be shown now. Sets `stopped` when a stop string appears."""
        if not self.stop:
            self.text += delta
            self.emitted = len(self.text)
            return delta
        search_from = max(0, len(self.text) - self.longest)
        self.text += delta
        hits = [i for i in (self.text.find(s, search_from) for s in self.stop) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.stopped = True
            return self.flush()
        hold = self._partial_suffix()
        safe_end = len(self.text) - hold
        out = self.text[self.emitted : safe_end] if safe_end > self.emitted else ""
        self.emitted = max(self.emitted, safe_end)
        return out

    def flush(self) -> str:
        """Everything not yet shown (at the end of generation)."""
        out = self.text[self.emitted :]
        self.emitted = len(self.text)
        return out

    def _partial_suffix(self) -> int:
        tail = self.text[-self.longest :]
        for n in range(min(len(tail), self.longest - 1), 0, -1):
            if any(s.startswith(tail[-n:]) for s in self.stop):
                return n
        return 0
