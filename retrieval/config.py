"""Per-collection settings: how documents are chunked, embedded and indexed.

A collection's config is fixed at creation and stored with it, so a restart (or another replica)
chunks and embeds new documents exactly as the earlier ones were.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

COLLECTION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# A stored name may carry its tenant's tag after a dot (the gateway adds it; clients never send it).
STORED_COLLECTION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}(\.[0-9a-f]{16})?$")

ChunkerKind = Literal["fixed", "sentences", "ppl", "margin"]
ContextMode = Literal["mean", "text"]
IndexKind = Literal["flat", "hnsw"]
# dense: embeddings (FAISS / pgvector); keyword: BM25-style full text; hybrid: both, fused by
# reciprocal rank (retrieval/keywords.py). The default is the benchmark's winner (docs/benchmarks.md).
RetrievalMode = Literal["dense", "keyword", "hybrid"]
DEFAULT_RETRIEVAL: RetrievalMode = "hybrid"


class ChunkerConfig(BaseModel):
    """How a document becomes chunks. Sizes are in tokens of the engine's tokenizer.

    fixed: token windows (the baseline). sentences: whole sentences packed up to merge_target, no
    LM. ppl, margin: Meta-Chunking's LM-driven meta-chunks, then packed up to merge_target.
    """

    model_config = ConfigDict(extra="forbid")

    method: ChunkerKind = "ppl"
    # fixed: token windows of `size` tokens, each overlapping the previous one by `overlap` tokens.
    size: int = Field(128, ge=8, le=4096)
    overlap: int = Field(16, ge=0)
    # ppl: split after a sentence whose mean NLL is a local minimum deeper than `theta` nats.
    theta: float = Field(0.0, ge=0.0, le=20.0)
    # ppl: longest context the LM sees at once; longer documents are scored in overlapping segments.
    ppl_context: int = Field(4096, ge=256)
    # pack meta-chunks (sentences, ppl, margin) greedily up to this many tokens; null: no merging.
    merge_target: int | None = Field(200, ge=8, le=4096)
    # all but fixed: blank lines always end a chunk; merging crosses one only to absorb a piece under
    # a quarter of merge_target (a heading joins its paragraph).
    respect_paragraphs: bool = True
    # no chunk grows beyond this (split at sentences, then at tokens), whatever the method.
    max_tokens: int = Field(512, ge=16, le=8192)

    @model_validator(mode="after")
    def _check(self) -> ChunkerConfig:
        if self.overlap >= self.size:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than size ({self.size})")
        if self.method == "fixed" and self.size > self.max_tokens:
            raise ValueError(f"size ({self.size}) exceeds max_tokens ({self.max_tokens})")
        if self.merge_target is not None and self.merge_target > self.max_tokens:
            raise ValueError(f"merge_target ({self.merge_target}) exceeds max_tokens ({self.max_tokens})")
        return self

    def describe(self) -> str:
        """A short stable label stored with each chunk (which chunker produced it)."""
        if self.method == "fixed":
            return f"fixed(size={self.size},overlap={self.overlap})"
        detail = {"ppl": f"theta={self.theta:g},", "margin": "adaptive,"}.get(self.method, "")
        merge = f"merge={self.merge_target}," if self.merge_target else ""
        paragraphs = "paragraphs," if self.respect_paragraphs else ""
        return f"{self.method}({detail}{merge}{paragraphs}max={self.max_tokens})"


class EmbeddingConfig(BaseModel):
    """Chunk vectors: the chunk's own embedding, plus `context_weight` x its context's embedding.

    Off by default: on the SQuAD benchmark (bench/results/retrieval.md) the best situated setting
    on the dev questions (mean of one neighbour each side, weight 0.1) did not carry over to the
    test questions (recall@5 0.941 vs 0.953 chunk-only with ppl+merge chunks). The defaults below
    are that tuned setting, for collections that turn it on."""

    model_config = ConfigDict(extra="forbid")

    situated: bool = False
    context_weight: float = Field(0.1, ge=0.0, le=4.0)
    # neighbours on each side that form the context window; null: the whole document.
    context_radius: int | None = Field(1, ge=1, le=64)
    # mean: the mean of the neighbours' own vectors (free); text: embed the window's text (costs a pass).
    context_mode: ContextMode = "mean"

    def describe(self) -> str:
        if not self.situated:
            return "chunk"
        radius = "doc" if self.context_radius is None else str(self.context_radius)
        return f"situated({self.context_mode},r={radius},w={self.context_weight:g})"


class IndexConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: IndexKind = "flat"
    hnsw_m: int = Field(32, ge=4, le=128)
    hnsw_ef_search: int = Field(64, ge=8, le=4096)


class CollectionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chunker: ChunkerConfig = Field(default_factory=ChunkerConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    retrieval: RetrievalMode = DEFAULT_RETRIEVAL


def check_collection_name(name: str, stored: bool = False) -> str:
    """Collection names double as directory names: lower-case letters, digits, '-' and '_' (and, for
    a `stored` name, an optional tenant tag after a dot)."""
    if not (STORED_COLLECTION_NAME if stored else COLLECTION_NAME).match(name):
        raise ValueError(
            f"invalid collection name {name!r}: use 1-64 characters from a-z, 0-9, '-' and '_', "
            "starting with a letter or digit"
        )
    return name
