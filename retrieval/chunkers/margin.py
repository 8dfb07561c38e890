"""Margin-sampling chunking (Meta-Chunking): ask the LM, sentence by sentence, "split or keep?".

For the current chunk and the next sentence the model reads the reference prompt (in its own chat
template) and we compare its next-token probabilities of "1" (split) and "2" (keep). The sentence
joins the chunk when P(keep) - P(split) exceeds a threshold that adapts to the running mean of the
last five margins, so the decision is relative to how this document reads.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
import torch

from retrieval.doc_tokens import DocumentTokens
from retrieval.lm import ChunkingLM
from retrieval.spans import Span, tile

PROMPT = (
    "This is a text chunking task. You are a text analysis expert. Please choose one of the following "
    "two options based on the logical structure and semantic content of the provided sentence:\n"
    '        1. Split "{s1} {s2}" into "{s1}" and "{s2}" two parts;\n'
    '        2. Keep "{s1} {s2}" unsplit in its original form;\n'
    "        Please answer 1 or 2."
)
HISTORY = 5  # margins averaged into the adaptive threshold
PROMPT_CHUNK_TOKENS = 192  # the prompt shows at most this many of the current chunk's last tokens


def render(tokenizer: Any, s1: str, s2: str) -> str:
    """The full prompt text: the user turn in the model's chat template, opening the answer."""
    query = PROMPT.format(s1=s1, s2=s2)
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": query}]
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return f"{query}\nAnswer: "


def answer_token_ids(tokenizer: Any) -> tuple[int, int]:
    """Ids of "1" and "2" as the model would write them right after the prompt.

    Verified by tokenizing the prompt with each answer appended: the answer must add exactly the
    one token we read, and that token must decode to the digit.
    """
    base = tokenizer(render(tokenizer, "A.", "B."), add_special_tokens=False)["input_ids"]
    ids = []
    for digit in ("1", "2"):
        full = tokenizer(render(tokenizer, "A.", "B.") + digit, add_special_tokens=False)["input_ids"]
        extra = full[len(base) :]
        if full[: len(base)] != base or len(extra) != 1 or tokenizer.decode(extra).strip() != digit:
            raise ValueError(f"the tokenizer does not write {digit!r} as one token after the prompt")
        ids.append(int(extra[0]))
    return ids[0], ids[1]


def _shared_prefix(a: list[int], b: list[int]) -> int:
    m = min(len(a), len(b))
    differ = np.flatnonzero(np.asarray(a[:m]) != np.asarray(b[:m]))
    return int(differ[0]) if len(differ) else m


class MarginScorer:
    """P(keep) - P(split) for a (current chunk, next sentence) pair.

    Consecutive prompts share a prefix (the template head, and after a "keep" the whole previous
    chunk plus sentence), so the KV cache of the previous prompt is kept and only the tokens after
    the shared prefix are run: a causal model's K/V for identical leading ids are identical.
    """

    def __init__(self, lm: ChunkingLM) -> None:
        self.lm = lm
        self.split_id, self.keep_id = answer_token_ids(lm.tokenizer)
        self._ids: list[int] = []
        self._kv: Any = None

    def margin(self, s1: str, s2: str) -> float:
        tok = self.lm.tokenizer
        ids = list(tok(render(tok, s1, s2), add_special_tokens=False)["input_ids"])[-self.lm.max_context :]
        reuse = min(_shared_prefix(ids, self._ids), len(ids) - 1)
        if self._kv is None or self._kv.capacity < len(ids):
            capacity = min(self.lm.max_context, max(1024, 2 * len(ids)))
            self._kv, reuse = self.lm.model.new_cache(capacity), 0
        self._kv.length = reuse  # rows past the shared prefix are overwritten
        logits = self.lm.model.forward(torch.tensor(ids[reuse:]), self._kv)
        self._ids = ids
        probs = torch.softmax(logits, dim=-1)
        return float(probs[self.keep_id] - probs[self.split_id])


def _tail(text: str, chunk: Span, tokens: DocumentTokens, keep: int) -> str:
    """The chunk's text, cut to roughly its last `keep` tokens to bound the prompt's length."""
    first, last = (int(t) for t in tokens.token_at([chunk.start, chunk.end]))
    start = chunk.start if last - first <= keep else tokens.char_at(last - keep)
    return text[start : chunk.end].strip()


def margin_spans(
    lm: ChunkingLM,
    text: str,
    sentences: Sequence[Span],
    tokens: DocumentTokens,
    max_tokens: int,
    breaks: Collection[int] = (),
    progress: Callable[[float], None] | None = None,
) -> list[Span]:
    """Chunks decided sentence by sentence; a sentence starting at one of `breaks` (a paragraph)
    or one that would push the chunk past `max_tokens` starts a new chunk without asking."""
    if len(sentences) < 2:
        return tile([], len(text))
    scorer = MarginScorer(lm)
    counts = tokens.counts(sentences)
    cuts: list[int] = []
    history: list[float] = []
    threshold = 0.0
    current, size = sentences[0], int(counts[0])
    for i in range(1, len(sentences)):
        sentence, n = sentences[i], int(counts[i])
        if size + n > max_tokens or sentence.start in breaks:
            keep = False  # decided by the structure or the cap; no need to ask
        else:
            m = scorer.margin(_tail(text, current, tokens, PROMPT_CHUNK_TOKENS), sentence.text(text).strip())
            history.append(m)
            keep = m > threshold
            if len(history) >= HISTORY:
                threshold = sum(history[-HISTORY:]) / HISTORY
        if keep:
            current, size = Span(current.start, sentence.end), size + n
        else:
            cuts.append(sentence.start)
            current, size = sentence, n
        if progress is not None:
            progress(i / (len(sentences) - 1))
    return tile(cuts, len(text))
