"""Metadata, filters, keyword search and replace-by-name, on both collection stores (SQLite + FAISS,
Postgres + pgvector) through the same tests; then the pieces that only one store has."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.collection_store import CollectionStore, StoredCollection
from retrieval.config import CollectionConfig, IndexConfig, IndexKind
from retrieval.errors import InvalidRequest
from retrieval.keywords import query_terms, reciprocal_rank_fusion
from retrieval.metadata import MetadataFilter, check_metadata
from retrieval.records import content_hash
from retrieval.store import SCHEMA, ChunkStore
from tests.retrieval.conftest import StoreFactory
from tests.retrieval.test_collection_store import DIM, VERSION, make_doc
from tests.texts import PASSAGES

EMBEDDER = "all-MiniLM-L6-v2"
LANGS = ("en", "fr", "de")


def meta_of(i: int) -> dict[str, Any]:
    return {"lang": LANGS[i % 3], "year": 1990 + i, "draft": i % 2 == 0, "code": str(1990 + i)}


@pytest.fixture()
def store(open_store: StoreFactory) -> Iterator[CollectionStore]:
    s = open_store()
    yield s
    s.close()


def filled(store: CollectionStore, kind: IndexKind = "flat") -> StoredCollection:
    """One document per test passage (3 chunks each, random unit vectors), metadata by meta_of."""
    col = store.create("kb", CollectionConfig(index=IndexConfig(kind=kind)), EMBEDDER, DIM)
    for i, p in enumerate(PASSAGES):
        col.add(f"d{i}", p.title, make_doc(f"{p.title}. {p.text}", 3, seed=i), meta_of(i))
    return col


FILTERS: list[dict[str, Any]] = [
    {"lang": "fr"},
    {"lang": {"in": ["de", "fr"]}},
    {"year": {"gte": 1995, "lt": 2001}},
    {"year": {"gt": 1999}, "lang": "en"},
    {"draft": True},
    {"draft": {"eq": False}, "year": {"lte": 1994}},
    {"year": 1996},
    {"year": 1996.0},
    {"code": "1996"},  # a string: matches the string field, not the number
    {"year": "1996"},  # a string never equals a number
    {"code": {"gte": 1990}},  # ranges match numbers only
    {"lang": {"in": []}},
    {"colour": "red"},  # a field no document has
    {"lang": True},
]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_dense_search_filters_inside_the_search(store: CollectionStore, kind: IndexKind) -> None:
    col = filled(store, kind)
    docs = {f"d{i}": meta_of(i) for i in range(len(PASSAGES))}
    vectors = {(d, c.seq): c.index_vector for d in docs for c in make_doc_chunks(d)}
    query = make_doc("q", 1, seed=99).chunks[0].index_vector
    for raw in FILTERS:
        f = MetadataFilter.parse(raw)
        assert f is not None
        allowed = [key for key in vectors if f.matches(docs[key[0]])]
        # the exact best 5 among the allowed chunks: filtering happened inside the search, since the
        # unfiltered best 5 hold other documents' chunks
        best = sorted(allowed, key=lambda key: -float(vectors[key] @ query))[:5]
        got = [(c.doc_id, c.seq) for c, _, _ in col.search(query, 5, f)]
        assert got == best, raw
    everything = [(c.doc_id, c.seq) for c, _, _ in col.search(query, 5)]
    assert len(everything) == 5
    assert [c.doc_id for c, _, _ in col.search(query, 5, MetadataFilter.parse({"colour": "red"}))] == []


def make_doc_chunks(doc_id: str) -> list[Any]:
    i = int(doc_id[1:])
    p = PASSAGES[i]
    return make_doc(f"{p.title}. {p.text}", 3, seed=i).chunks


def test_keyword_search_ranks_by_terms_stems_and_filters(store: CollectionStore) -> None:
    col = filled(store)
    hits = col.keyword_search("Where is the lighthouse on Maddock Island?", 5)
    assert hits and hits[0][1] == "Maddock Island"
    assert all(a[2] >= b[2] for a, b in itertools.pairwise(hits))
    lighthouse = col.keyword_search("lighthouse", 10)
    assert lighthouse and all("lighthouse" in c.text.lower() for c, _, _ in lighthouse)
    # stemming: "arches" in the text is found by "arch" and by "arched"
    for word in ("arch", "arched"):
        assert any(name == "Harrowgate Bridge" for _, name, _ in col.keyword_search(word, 5)), word
    # a filter applies to keyword search too: only matching documents, ranked among themselves
    f = MetadataFilter.parse({"lang": {"in": ["de"]}})
    filtered = col.keyword_search("Maddock Kettleby Dunmere", 10, f)
    assert filtered and all(col.metadata([c.doc_id])[c.doc_id]["lang"] == "de" for c, _, _ in filtered)
    assert col.keyword_search("zyzzyva", 5) == [] and col.keyword_search("?!", 5) == []
    assert col.keyword_search("Maddock", 5, MetadataFilter.parse({"colour": "red"})) == []


def test_metadata_hash_and_replacing_by_name(store: CollectionStore) -> None:
    col = store.create("kb", CollectionConfig(), EMBEDDER, DIM)
    old_text, new_text = PASSAGES[0].text, PASSAGES[0].text + " It was repainted in 2001."
    old = col.add("old", "bridge.txt", make_doc(old_text, 3, 1), {"lang": "en", "rev": 1})
    col.add("other", "other.txt", make_doc(PASSAGES[1].text, 2, 2), {"lang": "en"})
    [info] = col.named("bridge.txt")
    assert (info.doc_id, info.metadata, info.content_hash) == (
        "old",
        {"lang": "en", "rev": 1},
        content_hash(old_text),
    )
    assert col.document("old")[0].metadata == {"lang": "en", "rev": 1}
    assert {d.doc_id: d.metadata for d in col.documents()}["other"] == {"lang": "en"}

    new = col.add("new", "bridge.txt", make_doc(new_text, 4, 3), {"lang": "en", "rev": 2}, replace_named=True)
    assert [d.doc_id for d in col.named("bridge.txt")] == ["new"]
    assert sorted(d.doc_id for d in col.documents()) == ["new", "other"]
    assert col.chunk_count("old") is None and col.info().chunks == 4 + 2
    assert min(c.chunk_id for c in new) > max(c.chunk_id for c in old)
    # the old chunks left the vector index and the keyword index with their rows
    found = col.search(make_doc(old_text, 3, 1).chunks[0].index_vector, 10)
    assert all(c.doc_id != "old" for c, _, _ in found)
    assert all(c.doc_id != "old" for c, _, _ in col.keyword_search("Harrowgate bridge", 10))
    assert any(c.doc_id == "new" for c, _, _ in col.keyword_search("repainted", 10))
    assert col.metadata(["new", "gone"]) == {"new": {"lang": "en", "rev": 2}}


def test_metadata_and_filters_refuse_malformed_input() -> None:
    assert check_metadata({"lang": "en", "n": 3, "x": 1.5, "ok": True}) == {
        "lang": "en",
        "n": 3,
        "x": 1.5,
        "ok": True,
    }
    bad_metadata = [
        ([1, 2], "expected a JSON object"),
        ({"a": {"b": 1}}, "metadata.a"),
        ({"a": None}, "metadata.a"),
        ({"a b": 1}, "invalid field name"),
        ({"x": float("nan")}, "finite"),
    ]
    for raw, words in bad_metadata:
        with pytest.raises(InvalidRequest, match=words):
            check_metadata(raw)
    bad_filters = [
        ([1], "filter: expected a JSON object"),
        ({"year": {"between": [1, 2]}}, "filter.year.between: unknown operator"),
        ({"year": {"gte": "1990"}}, "filter.year.gte: a range bound must be a number"),
        ({"year": {"gte": True}}, "filter.year.gte"),
        ({"lang": {"in": "en"}}, "filter.lang.in: expected a list"),
        ({"lang": {}}, "filter.lang"),
        ({"lang": None}, "filter.lang"),
        ({"$where": 1}, "invalid field name"),
    ]
    for raw, words in bad_filters:
        with pytest.raises(InvalidRequest, match=words.replace("$", r"\$")):
            MetadataFilter.parse(raw)
    assert MetadataFilter.parse(None) is None


def test_query_terms_and_rank_fusion() -> None:
    assert query_terms("What is the Nile's length, in km?") == ["nile", "s", "length", "km"]
    assert query_terms("what is it") == ["what", "is", "it"]  # function words only: kept
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], 3)
    assert [item for item, _ in fused] == ["a", "c", "b"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_sqlite_files_from_before_metadata_are_migrated(tmp_path: Path) -> None:
    """A collection written before metadata, hashes and keyword search opens with all three."""
    path = tmp_path / "collection.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute("INSERT INTO documents VALUES ('d', 'old.txt', 'the lighthouse', 2, 'x', 1.0)")
    vector = np.zeros(DIM, dtype=np.float32).tobytes()
    db.execute(
        "INSERT INTO chunks (doc_id, seq, start, end, text, token_ids, n_tokens, chunker, embedding_version, "
        "chunk_vector, index_vector) VALUES ('d', 0, 0, 14, 'the lighthouse', ?, 2, 'x', ?, ?, ?)",
        (np.array([1, 2], dtype=np.int32).tobytes(), VERSION, vector, vector),
    )
    db.commit()
    db.close()
    store = ChunkStore(path)
    [info] = store.documents()
    assert (info.metadata, info.content_hash) == ({}, None)
    assert [i for i, _ in store.keyword_search(["lighthouses"], 5, None)] == [1]
    store.add_document("e", "new.txt", "a lamp", 1, "x", [], {"k": 1})
    assert json.loads(
        sqlite3.connect(path).execute("SELECT metadata FROM documents WHERE id = 'e'").fetchone()[0]
    ) == {"k": 1}
    store.close()
    ChunkStore(path).close()  # opening again changes nothing
