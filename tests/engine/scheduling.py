"""Helpers for the scheduler tests: schedulers over the session engine, runs alone and in a batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.blend.options import BlendOptions
from engine.config import SchedulerConfig
from engine.event_sink import ThreadSink
from engine.events import FinishEvent, GenerationEvent, TokenEvent
from engine.prompt import Prompt
from engine.sampling import SamplingParams
from engine.scheduler import Scheduler
from engine.torch_engine import TorchEngine
from tests.texts import rag_docs


@dataclass
class Outcome:
    tokens: list[int]
    text: str
    final: FinishEvent


def outcome(events: list[GenerationEvent]) -> Outcome:
    final = events[-1]
    assert isinstance(final, FinishEvent), f"last event is {final!r}"
    assert sum(isinstance(e, FinishEvent) for e in events) == 1
    tokens = [e.token_id for e in events if isinstance(e, TokenEvent) and e.token_id >= 0]
    return Outcome(tokens, "".join(e.text for e in events if isinstance(e, TokenEvent)), final)


def make_scheduler(engine: TorchEngine, **cfg: Any) -> Scheduler:
    """A scheduler of its own over the session engine's model, tokenizer and chunk cache."""
    return Scheduler(
        engine.model, engine.tokenizer, engine.eos_ids, engine.chunk_cache, SchedulerConfig(**cfg)
    )


def alone(
    engine: TorchEngine,
    prompt: Prompt,
    params: SamplingParams,
    blend: BlendOptions | None = None,
    salt: str = "",
) -> Outcome:
    """The request run by itself on the engine's unbatched path (the reference)."""
    return outcome(list(engine.generate_unbatched(prompt, params, blend=blend, salt=salt)))


def submit(
    scheduler: Scheduler,
    prompt: Prompt,
    params: SamplingParams,
    blend: BlendOptions | None = None,
    salt: str = "",
) -> tuple[int, ThreadSink]:
    sink = ThreadSink()
    return scheduler.submit(prompt, params, sink, blend=blend, salt=salt), sink


def drain(sink: ThreadSink) -> Outcome:
    return outcome(list(sink.events()))


def suite_docs(example: int, count: int, words: int) -> tuple[str, list[str]]:
    """A question and `count` passages about it (tests/texts.py), each cut to `words` words."""
    return rag_docs(example, count, words)
