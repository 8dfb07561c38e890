"""`echo` on /v1/completions: the prompt comes back before the generated text, as vLLM's server does.

With `max_tokens: 0` that is scoring (the route's own path). With a generation, every choice's text
is the prompt's text followed by what was generated; with `logprobs`, the prompt's tokens come first
in the choice's log-probabilities (the first token's `null`, as in scoring, the prompt scored under
the request's blend), then the generated ones, `text_offset` counting on across both. A stream
sends the prompt (and its log-probabilities) as each choice's first chunk.

The prompt's text is the concatenation of its tokens' texts (the documents' pieces included when
there are any), so the offsets of the prompt's tokens and of the generated ones line up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from engine.base import Engine, PromptTooLong, ScoringUnsupported
from engine.blend.options import BlendOptions
from engine.logprobs import TokenLogprob
from engine.prompt import Prompt
from engine.scoring import ScoredPrompt
from server.errors import ApiError
from server.openai_logprobs import TextLogprobs, TokenTexts


async def score_prompt(
    engine: Engine, prompt: Prompt, blend: BlendOptions | None, salt: str, top: int, timeout_s: float
) -> ScoredPrompt:
    """The prompt's own log-probabilities off the event loop: 504 past the timeout, 400 where the
    backend cannot score it."""
    try:
        async with asyncio.timeout(timeout_s):
            return await run_in_threadpool(engine.score, prompt, blend, salt, top)
    except TimeoutError:
        raise ApiError(504, "scoring exceeded the request timeout", "timeout") from None
    except (ScoringUnsupported, PromptTooLong) as exc:
        raise ApiError(400, str(exc), "unsupported_parameter") from exc


@dataclass(frozen=True)
class Echo:
    """The prompt as every choice repeats it; `logprobs` set when the request asked for them."""

    text: str
    ids: list[int]
    logprobs: list[TokenLogprob | None] | None

    @staticmethod
    async def of(
        engine: Engine,
        prompt: Prompt,
        texts: TokenTexts,
        scored: tuple[BlendOptions | None, str, int, float] | None,
    ) -> Echo:
        """`scored` (blend, salt, top alternatives, timeout) when log-probabilities are asked for."""
        ids = list(prompt.ids)
        lps = None
        if scored is not None:
            blend, salt, top, timeout_s = scored
            lps = (await score_prompt(engine, prompt, blend, salt, top, timeout_s)).logprobs
        return Echo("".join(texts.of(ids)), ids, lps)

    def block(self, offsets: TextLogprobs) -> dict[str, Any] | None:
        """The prompt's log-probabilities in the completions' shape, moving `offsets` past it."""
        if self.logprobs is None:
            offsets.offset += len(self.text)
            return None
        return offsets.block(self.ids, self.logprobs)


def joined(first: dict[str, Any] | None, then: dict[str, Any] | None) -> dict[str, Any] | None:
    """Two completions-shaped log-probability blocks as one (the prompt's, then the generated)."""
    if first is None or then is None:
        return then or first
    return {key: [*first[key], *then[key]] for key in first}
