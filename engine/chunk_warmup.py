"""Warming chunk caches ahead of questions: the base KV version of each text, stored through the store.

Ingestion calls this after a document's chunks are committed, so the first question that retrieves
them finds them warm. Each text is pieced exactly as a prompt would piece it (the system prefix,
then the text as a document piece), so the keys match what a later request looks up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.blend.blender import Blender
from engine.prompt import Prompt


@dataclass(frozen=True)
class WarmupReport:
    texts: int
    already_warm: int
    computed: int
    tokens: int
    seconds: float


def warm_chunks(
    blender: Blender,
    build_prompt: Callable[[str, list[str] | None, str | None], Prompt],
    texts: Sequence[str],
    salt: str = "",
    system: str | None = None,
    batch: int = 16,
    progress: Callable[[float], None] | None = None,
) -> WarmupReport:
    """Store the base version of every text's cache that the store does not hold yet.

    Texts are handled `batch` at a time (one store lookup and one write per batch), so a long
    document's caches start landing before all of it is computed.
    """
    started = time.perf_counter()
    warm = computed = tokens = 0
    texts = [t for t in texts if t.strip()]
    for first in range(0, len(texts), batch):
        prompt = build_prompt("", list(texts[first : first + batch]), system)
        lookups = blender.lookup(prompt, salt)[1:]  # the prefix piece is stored with the first chunk
        missing = [lk for lk in lookups if lk.base is None]
        warm += len(lookups) - len(missing)
        entries = blender.precompute(prompt, missing, salt)
        blender.cache.put_many(entries)
        computed += len(missing)
        tokens += sum(lk.end - lk.start for lk in missing)
        if progress is not None:
            progress(min(1.0, (first + batch) / len(texts)))
    return WarmupReport(len(texts), warm, computed, tokens, time.perf_counter() - started)
