"""Turning one document's text into chunks ready to store: split, chunk, tokenize, embed, situate.

Nothing here writes anything: a document is prepared completely in memory first, and only then
committed in one transaction, so a failure at any step leaves the collection untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from retrieval.chunkers.factory import chunk_spans
from retrieval.config import CollectionConfig
from retrieval.doc_tokens import tokenize_document
from retrieval.embedder import Embedder
from retrieval.lm import ChunkingLM
from retrieval.sentences import split_sentences
from retrieval.situated import index_vectors
from retrieval.store import NewChunk

Progress = Callable[[str, float], None]  # (stage, fraction of that stage)


@dataclass
class PreparedDocument:
    text: str
    n_tokens: int
    chunker: str
    chunks: list[NewChunk]
    seconds: dict[str, float] = field(default_factory=dict)
    page_starts: tuple[int, ...] | None = None  # a paged file's page offsets in `text`


def embedding_version(embedder: Embedder, cfg: CollectionConfig) -> str:
    return f"{embedder.name}/{embedder.dim}/{cfg.embedding.describe()}"


def prepare_document(
    text: str,
    cfg: CollectionConfig,
    lm: ChunkingLM,
    embedder: Embedder,
    progress: Progress | None = None,
    page_starts: tuple[int, ...] | None = None,
) -> PreparedDocument:
    report = progress or (lambda stage, fraction: None)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = seconds.get(stage, 0.0) + now - clock
        clock = now

    report("chunking", 0.0)
    sentences = split_sentences(text)
    tokens = tokenize_document(lm.tokenizer, text)
    spans = chunk_spans(cfg.chunker, lm, text, sentences, tokens, lambda f: report("chunking", f))
    texts = [s.text(text) for s in spans]
    token_ids = lm.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    lap("chunk")
    report("embedding", 0.0)
    vectors = embedder.embed(texts)
    indexed = index_vectors(cfg.embedding, texts, vectors, embedder.embed)
    lap("embed")
    label, version = cfg.chunker.describe(), embedding_version(embedder, cfg)
    chunks = [
        NewChunk(i, s.start, s.end, texts[i], token_ids[i], label, version, vectors[i], indexed[i])
        for i, s in enumerate(spans)
    ]
    return PreparedDocument(text, len(tokens), label, chunks, seconds, page_starts)
