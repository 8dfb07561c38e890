"""A request inside the batch scheduler, from submission to its last event."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from cache.entry import ChunkEntry
from engine.blend.blender import BlendResult
from engine.blend.options import BlendOptions
from engine.decode_state import DecodeState
from engine.event_sink import EventSink
from engine.preemptible import PreemptibleTask
from engine.prefill_work import Prefilled
from engine.prompt import Prompt
from engine.sampling import SamplingParams


@dataclass
class Sequence:
    id: int
    prompt: Prompt
    params: SamplingParams
    blend: BlendOptions | None
    salt: str
    sink: EventSink
    cancel: threading.Event
    state: DecodeState
    prefill: PreemptibleTask[Prefilled] | None = None
    write_back: PreemptibleTask[None] | None = None
    # A blended prefill starts (looks its pieces up) only once these earlier write-backs are stored.
    waits_for: frozenset[int] = frozenset()
    blend_result: BlendResult | None = None
    next_token: int = -1  # the last sampled token, fed to the next decode step
    entries: list[ChunkEntry] = field(default_factory=list)  # cold pieces' caches, stored after the answer
    # Tokens of prefill work still to do after reuse (estimated at submission; engine/prefill_cost.py).
    cost_left: int = 0
    last_slice: float = 0.0  # when its write-back last ran, for background aging
    # The other sequences of an `n` > 1 request, sharing this one's prefill (engine/forks.py): each
    # with its own state, sink and cancel; they join the batch with it when the prefill is done.
    forks: list[Sequence] = field(default_factory=list)

    @property
    def members(self) -> list[Sequence]:
        """This sequence and its forks, in the request's choice order."""
        return [self, *self.forks]

    @property
    def width(self) -> int:
        """The batch slots the request takes once prefilled: one per sequence."""
        return 1 + len(self.forks)

    def gave_up(self) -> bool:
        """Every sequence sharing the prefill was cancelled: nobody waits for it any more."""
        return all(m.cancel.is_set() for m in self.members)

    def cancel_all(self) -> None:
        for m in self.members:
            m.cancel.set()

    def priority(self, now: float, aging_tokens_per_s: float) -> float:
        """Shortest remaining prefill first; waiting earns credit so a long prompt is never starved."""
        return self.cost_left - aging_tokens_per_s * (now - self.state.started)

    @property
    def blended(self) -> bool:
        return self.blend is not None and self.blend.reuses

    def emit_finish(self) -> None:
        """The text's tail and the final event (the sink is ended separately, after any write-back)."""
        for event in self.state.finish():
            self.sink.put(event)
