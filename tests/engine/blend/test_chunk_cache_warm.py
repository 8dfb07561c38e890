"""ChunkCache.warm_many agrees with what Blender.write_back stored and Blender.lookup finds."""

from __future__ import annotations

import uuid

from cache.quota import meta_tenant, tenant_tag
from engine.blend.options import BlendOptions
from engine.torch_engine import TorchEngine

DOCS = [
    "Lake Baikal in Siberia is the deepest lake on Earth, about 1,642 metres at its deepest point.",
    "The Amazon rainforest covers much of the Amazon basin of South America.",
    "The Sahara is the largest hot desert in the world.",
]
NEW_DOC = "Venus is the second planet from the Sun and the hottest in the Solar System."


def write_back(engine: TorchEngine, docs: list[str], salt: str) -> None:
    opts = BlendOptions(mode="reuse")
    prompt = engine.build_prompt("Which lake is the deepest?", docs, None)
    result = engine.blender.prefill(prompt, opts, len(prompt) + 1, salt)
    engine.blender.write_back(prompt, result, opts, salt)


def pieces(engine: TorchEngine, docs: list[str], system: str | None = None) -> tuple[tuple[int, ...], list]:
    prompt = engine.build_prompt("Another question entirely?", docs, system)
    return prompt.pieces[0].ids, [p.ids for p in prompt.pieces[1:-1]]


def test_warm_check_matches_write_back_and_lookup(engine: TorchEngine) -> None:
    salt = f"tenant-{uuid.uuid4().hex}"
    prefix, ids = pieces(engine, [*DOCS, NEW_DOC])
    assert engine.chunk_cache.warm_many(ids, prefix, salt) == [False] * 4  # nothing stored yet
    write_back(engine, DOCS, salt)
    # a different question and order: the documents' base caches do not depend on either
    prefix, ids = pieces(engine, [NEW_DOC, DOCS[2], DOCS[0], DOCS[1]])
    warm = engine.chunk_cache.warm_many(ids, prefix, salt)
    assert warm == [False, True, True, True]
    prompt = engine.build_prompt("Another question entirely?", [NEW_DOC, DOCS[2], DOCS[0], DOCS[1]], None)
    found = [lk.base is not None for lk in engine.blender.lookup(prompt, salt)[1:]]
    assert found == warm  # what the blender would reuse is exactly what the warm-check reported


def test_warm_check_is_per_tenant_and_per_prefix(engine: TorchEngine) -> None:
    salt = f"tenant-{uuid.uuid4().hex}"
    write_back(engine, DOCS, salt)
    prefix, ids = pieces(engine, DOCS)
    assert engine.chunk_cache.warm_many(ids, prefix, salt) == [True] * 3
    assert engine.chunk_cache.warm_many(ids, prefix, salt + "-other") == [False] * 3
    other_prefix, same_ids = pieces(engine, DOCS, system="You answer in French.")
    assert same_ids == ids
    assert engine.chunk_cache.warm_many(ids, other_prefix, salt) == [False] * 3
    assert engine.chunk_cache.warm_many([], prefix, salt) == []


def test_stored_entries_name_their_tenant_for_the_quotas(engine: TorchEngine) -> None:
    salt = f"tenant-{uuid.uuid4().hex}"
    write_back(engine, DOCS, salt)
    prompt = engine.build_prompt("Which lake is the deepest?", DOCS, None)
    keys = [lk.base_key for lk in engine.blender.lookup(prompt, salt)[1:]]
    entries = engine.chunk_cache.store.get_many(keys)
    assert entries and all(e is not None and meta_tenant(e.meta) == tenant_tag(salt) for e in entries)
    assert tenant_tag(salt) != tenant_tag(salt + "-other")
