"""Re-ingest by name and content hash, warm caches of unchanged chunks, and the retrieval modes,
through the collection manager with the real model and embedder, on both stores."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import partial

from engine.chunk_warmup import WarmupReport, warm_chunks
from engine.torch_engine import TorchEngine
from retrieval.collections import CollectionManager
from retrieval.config import ChunkerConfig, CollectionConfig
from retrieval.metadata import MetadataFilter
from retrieval.records import StoredChunk
from tests.retrieval.conftest import wait_for_job
from tests.texts import PASSAGES

PARAGRAPHS = CollectionConfig(chunker=ChunkerConfig(method="sentences", merge_target=120, max_tokens=256))


def paragraphs(*indices: int, words: int = 50) -> str:
    return "\n\n".join(" ".join(PASSAGES[i].text.split()[:words]) for i in indices)


wait = partial(wait_for_job, timeout=300)


def test_reingest_unchanged_is_a_noop_and_changed_replaces_keeping_caches_warm(
    manager: CollectionManager, engine: TorchEngine
) -> None:
    reports: list[WarmupReport] = []

    def warm(collection: str, chunks: Sequence[StoredChunk]) -> None:
        texts = [c.text for c in chunks]
        reports.append(
            warm_chunks(engine.blender, engine.build_prompt, texts, salt=f"reingest-{id(manager)}")
        )

    manager.on_chunks_ingested = warm
    manager.create("kb", PARAGRAPHS)
    v1 = paragraphs(0, 4, 8)
    first = wait(manager, manager.submit_documents("kb", [("notes.txt", v1)], [{"rev": 1}]).job_id)
    assert first.state == "succeeded" and first.documents[0].state == "ingested"
    doc_id = first.documents[0].doc_id
    _, _, chunks_v1 = manager.document("kb", doc_id)
    assert len(chunks_v1) >= 3 and reports[-1].computed == len(chunks_v1)

    # the same text and metadata again: nothing happens, the job says so, the document stays
    again = manager.submit_documents("kb", [("notes.txt", v1)], [{"rev": 1}])
    assert again.documents[0].state == "unchanged" and again.documents[0].doc_id == doc_id
    done = wait(manager, again.job_id)
    assert done.state == "succeeded" and done.documents[0].state == "unchanged"
    assert done.documents[0].chunks == len(chunks_v1) and len(reports) == 1
    assert [c.chunk_id for c in manager.document("kb", doc_id)[2]] == [c.chunk_id for c in chunks_v1]
    assert manager.info("kb").documents == 1

    # one paragraph changed: the document is replaced; the unchanged paragraphs' chunks have the
    # same text, hence the same content-addressed cache keys, and are found warm
    v2 = paragraphs(0, 4, 12)
    changed = wait(manager, manager.submit_documents("kb", [("notes.txt", v2)], [{"rev": 2}]).job_id)
    assert changed.state == "succeeded" and changed.documents[0].state == "ingested"
    new_id = changed.documents[0].doc_id
    assert new_id != doc_id and [d.doc_id for d in manager.documents("kb")] == [new_id]
    info, text, chunks_v2 = manager.document("kb", new_id)
    assert text == v2 and info.metadata == {"rev": 2}
    kept = {c.text for c in chunks_v1} & {c.text for c in chunks_v2}
    assert kept and len(kept) < len(chunks_v2)
    assert reports[-1].already_warm == len(kept) and reports[-1].computed == len(chunks_v2) - len(kept)
    assert min(c.chunk_id for c in chunks_v2) > max(c.chunk_id for c in chunks_v1)

    # only the metadata changed: also a replacement (the metadata is part of what is stored)
    meta_only = wait(manager, manager.submit_documents("kb", [("notes.txt", v2)], [{"rev": 3}]).job_id)
    assert meta_only.documents[0].state == "ingested"
    assert [d.metadata for d in manager.documents("kb")] == [{"rev": 3}]
    # unnamed documents are never matched by name: each is a new document
    for _ in range(2):
        wait(manager, manager.submit_documents("kb", [("", v1)]).job_id)
    assert manager.info("kb").documents == 3


def test_retrieval_modes_and_filters(manager: CollectionManager) -> None:
    manager.create("kb", PARAGRAPHS)
    docs = [(PASSAGES[i].title, paragraphs(i, words=80)) for i in range(6)]
    meta = [{"topic": "bridges" if i < 3 else "islands", "n": i} for i in range(6)]
    assert wait(manager, manager.submit_documents("kb", docs, meta).job_id).state == "succeeded"
    query = "When was the lighthouse on Maddock Island lit?"
    for mode in ("dense", "keyword", "hybrid"):
        hits = manager.retrieve("kb", query, 3, mode=mode)
        assert hits and hits[0].doc_name == "Maddock Island", mode
        assert hits[0].metadata == {"topic": "islands", "n": 4}
        assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
        f = MetadataFilter.parse({"topic": "bridges"})
        filtered = manager.retrieve("kb", query, 3, f, mode)
        assert all(h.metadata["topic"] == "bridges" for h in filtered), mode
        assert len(filtered) == (0 if mode == "keyword" else 3), mode  # no bridge text has these words
        ranged = manager.retrieve("kb", query, 10, MetadataFilter.parse({"n": {"gte": 1, "lt": 3}}), mode)
        assert {h.metadata["n"] for h in ranged} <= {1, 2}, mode
        assert manager.retrieve("kb", query, 3, MetadataFilter.parse({"nope": 1}), mode) == []
    # the collection's default mode is hybrid; a keyword-only question still finds its passage
    assert manager.info("kb").config.retrieval == "hybrid"
    assert "kettleby" in manager.retrieve("kb", "Kettleby", 2)[0].text.lower()
