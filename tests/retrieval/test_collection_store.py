"""SQLite store + FAISS index of one collection: persistence, deletion, and failures mid-document."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from retrieval.collection import Collection
from retrieval.config import CollectionConfig, IndexConfig, IndexKind
from retrieval.errors import DocumentNotFound
from retrieval.ingest import PreparedDocument
from retrieval.spans import tile
from retrieval.store import ChunkStore, NewChunk

DIM = 384
VERSION = f"all-MiniLM-L6-v2/{DIM}/chunk"


def make_doc(text: str, pieces: int, seed: int) -> PreparedDocument:
    rng = np.random.default_rng(seed)
    spans = tile([len(text) * i // pieces for i in range(1, pieces)], len(text))
    vectors = rng.normal(size=(len(spans), DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [
        NewChunk(i, s.start, s.end, s.text(text), [i, i + 1], "test", VERSION, vectors[i], vectors[i])
        for i, s in enumerate(spans)
    ]
    return PreparedDocument(text, 10, "test", chunks)


def new_collection(folder: Path, kind: IndexKind = "flat") -> Collection:
    cfg = CollectionConfig(index=IndexConfig(kind=kind))
    return Collection.create("c", folder, cfg, "all-MiniLM-L6-v2", DIM, now=1.0)


def top(col: Collection, vector: np.ndarray, k: int = 3) -> list[tuple[str, int]]:
    return [(c.doc_id, c.seq) for c, _, _ in col.search(vector, k)]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_persistence_and_delete(tmp_path: Path, kind: IndexKind) -> None:
    col = new_collection(tmp_path / "c", kind)
    a, b = make_doc("alpha " * 30, 3, 1), make_doc("beta " * 40, 4, 2)
    stored_a = col.add("a", "A", a)
    col.add("b", "B", b)
    assert [c.text for c in stored_a] == [c.text for c in a.chunks]
    assert stored_a[1].token_ids == [1, 2]
    assert top(col, b.chunks[2].index_vector)[0] == ("b", 2)
    before = top(col, a.chunks[0].index_vector, 7)
    col.close()
    assert (tmp_path / "c" / "index-2.faiss").is_file()

    col = Collection.open("c", tmp_path / "c")
    assert top(col, a.chunks[0].index_vector, 7) == before
    assert col.info().documents == 2 and col.info().chunks == 7
    assert col.delete_document("a") == 3
    assert len(col.index) == 4
    assert all(doc == "b" for doc, _ in top(col, a.chunks[0].index_vector, 7))
    with pytest.raises(DocumentNotFound):
        col.delete_document("a")
    col.add("c", "C", make_doc("gamma " * 10, 1, 3))
    assert min(c.chunk_id for c in col.document("c")[2]) > max(
        c.chunk_id for c in stored_a
    )  # ids never reused
    col.close()

    col = Collection.open("c", tmp_path / "c")
    assert [d.doc_id for d in col.documents()] == ["b", "c"]
    assert len(col.index) == 5
    info, text, chunks = col.document("b")
    assert text == "beta " * 40 and "".join(c.text for c in chunks) == text and info.n_chunks == 4
    col.close()


def test_failure_inside_a_document_leaves_the_previous_state(tmp_path: Path) -> None:
    col = new_collection(tmp_path / "c")
    a = make_doc("alpha " * 30, 3, 1)
    col.add("a", "A", a)
    before = (col.store.version, col.info().chunks, top(col, a.chunks[1].index_vector))

    def chunks_then_failure() -> Iterator[NewChunk]:
        yield from make_doc("beta " * 40, 4, 2).chunks[:2]
        raise RuntimeError("embedding died half-way")

    broken = make_doc("beta " * 40, 4, 2)
    # deliberately not a list: the chunks fail while the collection reads them
    broken.chunks = chunks_then_failure()  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="half-way"):
        col.add("b", "B", broken)
    assert (col.store.version, col.info().chunks, top(col, a.chunks[1].index_vector)) == before
    assert [d.doc_id for d in col.documents()] == ["a"]
    col.close()
    col = Collection.open("c", tmp_path / "c")
    assert (col.store.version, col.info().chunks, top(col, a.chunks[1].index_vector)) == before
    col.close()


def test_index_file_behind_the_store_is_rebuilt(tmp_path: Path) -> None:
    col = new_collection(tmp_path / "c")
    a, b = make_doc("alpha " * 30, 3, 1), make_doc("beta " * 40, 4, 2)
    col.add("a", "A", a)
    col.flush()
    col.add("b", "B", b)  # committed, but the process "dies" before the index is written
    assert sorted(p.name for p in (tmp_path / "c").glob("*.faiss")) == ["index-1.faiss"]
    reopened = Collection.open("c", tmp_path / "c")
    assert len(reopened.index) == 7 and top(reopened, b.chunks[3].index_vector)[0] == ("b", 3)
    reopened.close()
    col.close()
    (tmp_path / "c" / "index-2.faiss").write_bytes(b"garbage")
    col = Collection.open("c", tmp_path / "c")
    assert len(col.index) == 7
    col.close()


def test_process_killed_mid_transaction(tmp_path: Path) -> None:
    col = new_collection(tmp_path / "c")
    a = make_doc("alpha " * 30, 3, 1)
    col.add("a", "A", a)
    col.close()
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from retrieval.collection import Collection
        from retrieval.store import ChunkStore
        from tests.retrieval.test_collection_store import make_doc
        original, calls = ChunkStore._insert_chunk, []
        def dying(self, doc_id, chunk):
            calls.append(1)
            if len(calls) == 3:
                os._exit(17)  # no rollback, no cleanup: as if the power went out
            return original(self, doc_id, chunk)
        ChunkStore._insert_chunk = dying
        col = Collection.open("c", Path({str(tmp_path / "c")!r}))
        col.add("b", "B", make_doc("beta " * 40, 4, 2))
        """
    )
    assert subprocess.run([sys.executable, "-c", script], timeout=120).returncode == 17
    col = Collection.open("c", tmp_path / "c")
    assert [d.doc_id for d in col.documents()] == ["a"] and len(col.index) == 3
    assert top(col, a.chunks[2].index_vector)[0] == ("a", 2)
    col.close()


def test_store_round_trips_chunk_fields(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "s.db")
    assert store.get_meta("missing") is None and store.version == 0
    doc = make_doc("some text here", 2, 5)
    ids, removed = store.add_document("d", "D", doc.text, 3, "test", doc.chunks)
    assert removed == []
    got = store.chunks(ids)
    assert [got[i].text for i in ids] == [c.text for c in doc.chunks]
    assert got[ids[0]].embedding_version == VERSION and store.version == 1
    assert store.delete_document("nope") is None and store.version == 1
    store.close()
