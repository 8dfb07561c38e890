"""Blended K/V handed from the process that blends to vLLM's worker process through a shared file.

The worker runs in another process, so the K/V cannot travel by reference. One file per request in a
tmpfs directory (/dev/shm where there is one) is written once by the blending side and mapped, without
a copy, by the worker: the only copies are the write into the file and vLLM's own write into its paged
cache. The file holds K then V, each [layers, tokens, kv_heads, head_dim] in the model's dtype (the
token-major order the paged-cache writers take); post-RoPE keys at the absolute prompt positions.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from engine.config import DTYPES
from engine.kv_cache import KVCache


@dataclass(frozen=True)
class HandoffSpec:
    """Where one request's K/V lie and their shape; travels as vLLM's `kv_transfer_params`."""

    path: str
    tokens: int
    layers: int
    kv_heads: int
    head_dim: int
    dtype: str

    @property
    def numel(self) -> int:
        return 2 * self.layers * self.tokens * self.kv_heads * self.head_dim

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPES[self.dtype].itemsize

    def to_params(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_params(cls, raw: object) -> HandoffSpec:
        """Parse `kv_transfer_params["ragblend"]`; raises ValueError when it is malformed."""
        if not isinstance(raw, dict):
            raise ValueError("handoff spec must be a dict")
        try:
            spec = cls(
                path=str(raw["path"]),
                tokens=int(raw["tokens"]),
                layers=int(raw["layers"]),
                kv_heads=int(raw["kv_heads"]),
                head_dim=int(raw["head_dim"]),
                dtype=str(raw["dtype"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed handoff spec: {exc}") from exc
        if spec.dtype not in DTYPES or min(spec.tokens, spec.layers, spec.kv_heads, spec.head_dim) < 1:
            raise ValueError(f"invalid handoff spec {raw!r}")
        return spec


def default_handoff_root() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


class HandoffDir:
    """A private directory of handoff files, removed with everything in it by `close`."""

    def __init__(self, root: str | None = None) -> None:
        base = Path(root) if root else default_handoff_root()
        base.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix="ragblend-kv-", dir=base))

    def write(self, kv: KVCache, tokens: int) -> HandoffSpec:
        """Rows [0, tokens) of every layer of `kv`, written atomically (a reader never sees half)."""
        return write_handoff(kv, tokens, self.path)

    def discard(self, spec: HandoffSpec | None) -> None:
        if spec is not None:
            Path(spec.path).unlink(missing_ok=True)

    def close(self) -> None:
        for f in self.path.glob("*"):
            f.unlink(missing_ok=True)
        self.path.rmdir()


def write_handoff(kv: KVCache, tokens: int, directory: Path) -> HandoffSpec:
    """Rows [0, tokens) of every layer of `kv` into a new file of `directory`, written atomically (a
    reader never sees half)."""
    k0 = kv.k[0]
    _, heads, _, dim = k0.shape
    dtype = next(name for name, dt in DTYPES.items() if dt == k0.dtype)
    final = directory / f"{uuid.uuid4().hex}.kv"
    spec = HandoffSpec(str(final), tokens, len(kv.k), heads, dim, dtype)
    tmp = final.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.truncate(spec.nbytes)
    buf = torch.from_file(str(tmp), shared=True, size=spec.numel, dtype=k0.dtype)
    view = buf.view(2, spec.layers, tokens, heads, dim)
    for i in range(spec.layers):
        view[0, i].copy_(kv.k[i][0, :, :tokens].transpose(0, 1))
        view[1, i].copy_(kv.v[i][0, :, :tokens].transpose(0, 1))
    del view, buf  # unmap before the rename publishes the file
    os.replace(tmp, final)
    return spec


def read_handoff(spec: HandoffSpec, allowed_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """K and V, each [layers, tokens, kv_heads, head_dim], mapped from the file (no copy).

    Raises FileNotFoundError when the file is gone and ValueError when its size or place is wrong.
    """
    path = Path(spec.path)
    if allowed_dir is not None and path.resolve().parent != Path(allowed_dir).resolve():
        raise ValueError(f"handoff file {path} is outside {allowed_dir}")
    size = path.stat().st_size
    if size != spec.nbytes:
        raise ValueError(f"handoff file {path} holds {size} bytes, expected {spec.nbytes}")
    buf = torch.from_file(str(path), shared=False, size=spec.numel, dtype=DTYPES[spec.dtype])
    kv = buf.view(2, spec.layers, spec.tokens, spec.kv_heads, spec.head_dim)
    return kv[0], kv[1]
