"""Candidates from retrieval hits carry their prompt pieces' token counts and warm flags."""

from __future__ import annotations

import uuid

import pytest

from engine.blend.options import BlendOptions
from engine.torch_engine import TorchEngine
from retrieval.records import RetrievedChunk
from retrieval.selection.candidate import Candidate
from retrieval.selection.warmth import candidates_from_hits, mark_warm

TEXTS = [
    "Ottawa is the capital city of Canada, on the south bank of the Ottawa River.",
    "Canberra is the capital city of Australia.",
    "Wellington is the capital city of New Zealand.",
]


def hit(i: int, text: str) -> RetrievedChunk:
    return RetrievedChunk("capitals", i, f"doc{i}", "capitals.txt", 0, 0, len(text), text, 0.5, [])


def test_hits_become_candidates_with_warm_flags(engine: TorchEngine) -> None:
    salt = f"t-{uuid.uuid4().hex}"
    opts = BlendOptions(mode="reuse")
    stored = engine.build_prompt("What is the capital of Canada?", TEXTS[:2], None)
    engine.blender.write_back(stored, engine.blender.prefill(stored, opts, len(stored) + 1, salt), opts, salt)
    hits = [hit(i, t) for i, t in enumerate(TEXTS)]
    prompt = engine.build_prompt("Which capitals lie on a river?", [h.text for h in hits], None)
    cands = candidates_from_hits(hits, prompt, engine.chunk_kv, salt)
    assert [c.warm for c in cands] == [True, True, False]
    assert [c.n_tokens for c in cands] == [len(p.ids) for p in prompt.pieces[1:-1]]
    assert cands[0].id == "capitals/0" and cands[0].token_ids == prompt.pieces[1].ids
    assert [c.warm for c in candidates_from_hits(hits, prompt, None, salt)] == [False] * 3
    plain = [Candidate(str(i), t, 0) for i, t in enumerate(TEXTS)]
    assert [c.warm for c in mark_warm(plain, prompt, engine.chunk_kv, salt)] == [True, True, False]
    with pytest.raises(ValueError, match="document pieces"):
        candidates_from_hits(hits[:2], prompt, engine.chunk_kv, salt)
