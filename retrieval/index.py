"""The vector index: FAISS inner product (flat by default, HNSW on request) keyed by chunk id.

The SQLite store is the source of truth; this index is derived from it and can always be rebuilt
from the vectors stored there. Files are written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from retrieval.config import IndexConfig


class VectorIndex:
    def __init__(self, dim: int, cfg: IndexConfig, index: faiss.Index | None = None) -> None:
        self.dim = dim
        self.cfg = cfg
        self._index = index if index is not None else self._empty()
        self._apply_search_params()

    def _empty(self) -> faiss.Index:
        inner: Any
        if self.cfg.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, self.cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        else:
            inner = faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(inner)

    def _apply_search_params(self) -> None:
        if self.cfg.kind == "hnsw":
            wrapper: Any = faiss.downcast_index(self._index)
            hnsw: Any = faiss.downcast_index(wrapper.index)
            hnsw.hnsw.efSearch = self.cfg.hnsw_ef_search

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def supports_remove(self) -> bool:
        # HNSW graphs cannot drop nodes; the collection rebuilds them from the store instead
        return self.cfg.kind == "flat"

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        self._index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> int:
        if not self.supports_remove:
            raise NotImplementedError("this index kind cannot remove vectors; rebuild it")
        index: Any = self._index  # the Python wrapper accepts an id array
        return int(index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and chunk ids of the `k` best matches, best first (fewer if the index is smaller);
        with `allowed`, only among those ids (an id selector applied inside the search)."""
        k = min(k, len(self))
        if k <= 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        params: Any = None
        if allowed is not None:
            lib: Any = faiss  # the stubs lack the search-parameter classes
            selector = lib.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            if self.cfg.kind == "hnsw":
                # a selective filter leaves few allowed nodes on the graph's paths: widen the beam
                # in proportion, so the search still finds k of them
                widen = math.ceil(k * len(self) / max(1, len(allowed)))
                ef = min(max(self.cfg.hnsw_ef_search, k, widen), max(len(self), k))
                params = lib.SearchParametersHNSW(sel=selector, efSearch=ef)
            else:
                params = lib.SearchParameters(sel=selector)
            k = min(k, len(allowed))
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        scores, ids = self._index.search(query, k, params=params)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        faiss.write_index(self._index, str(tmp))
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, dim: int, cfg: IndexConfig) -> VectorIndex:
        index = faiss.read_index(str(path))
        if index.d != dim:
            raise ValueError(f"index {path} has dimension {index.d}, expected {dim}")
        return cls(dim, cfg, index)

    @classmethod
    def build(cls, dim: int, cfg: IndexConfig, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        index = cls(dim, cfg)
        index.add(ids, vectors)
        return index
