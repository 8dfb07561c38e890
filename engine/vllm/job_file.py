"""The files that carry jobs to vLLM's worker and results back (engine/vllm/worker_blend.py writes
jobs, engine/vllm/worker_jobs.py reads them), without pickle: a file in the handoff directory must
not be able to run code in either process.

A file is an 8-byte magic, the length of a JSON header (little-endian u64), the header, then every
chunk cache it carries as one entry of the store's codec (cache/codec.py), back to back. The header
holds the plain values (prompt pieces, lookups, options, token ids) and, where a chunk cache goes, its
index among the entries. Each entry is keyed by that index, so entries out of place are refused, and
the codec's checksum covers every byte of K/V.

Jobs are read memory-mapped (copy-on-write, so torch can view the pages; they are only read): the
blend uses the K/V in place. Results are read into one buffer per entry, because their caches go into
the store and a mapping would keep the file's (tmpfs) pages alive.
"""

from __future__ import annotations

import dataclasses
import io
import json
import mmap
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cache.codec import HEADER_SIZE, decode, encode_parts, read_header
from cache.entry import ChunkEntry, ChunkMeta, dtype_name
from cache.errors import CorruptEntry
from engine.blend.blender import PieceLookup
from engine.blend.options import BlendOptions
from engine.blend.precompute import ChunkKV
from engine.prompt import PieceKind, Prompt, PromptPiece

MAGIC = b"RBJOB\x00\x01\x00"
_LENGTH = struct.Struct("<Q")
MAX_HEADER_BYTES = 64 << 20  # token ids and texts of one prompt: far below this
_PIECE_KINDS: tuple[PieceKind, ...] = ("prefix", "document", "query")


class JobFileError(ValueError):
    """A job or result file that is not exactly what this module writes."""


def write(path: str | Path, header: dict[str, Any], chunks: Sequence[ChunkKV]) -> None:
    """Write `header` (JSON-able; it refers to `chunks` by index) and `chunks` to `path`."""
    head = json.dumps(header, separators=(",", ":")).encode()
    with open(path, "wb") as f:
        f.write(MAGIC + _LENGTH.pack(len(head)) + head)
        for i, chunk in enumerate(chunks):
            for part in encode_parts(_entry(i, chunk)):
                f.write(part)


def read(path: str | Path, *, mapped: bool) -> tuple[dict[str, Any], list[ChunkKV]]:
    """The header and chunk caches of the file at `path`; JobFileError for anything else."""
    with open(path, "rb") as f:
        header, start = _read_header(f)
        if mapped:
            size = f.seek(0, 2)
            if size == start:
                return header, []
            view = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY))
            blobs = list(_mapped_blobs(view, start))
        else:
            f.seek(start)
            blobs = list(_read_blobs(f))
    return header, [_chunk(i, blob) for i, blob in enumerate(blobs)]


def _read_header(f: io.BufferedReader) -> tuple[dict[str, Any], int]:
    lead = f.read(len(MAGIC) + _LENGTH.size)
    if len(lead) != len(MAGIC) + _LENGTH.size or lead[: len(MAGIC)] != MAGIC:
        raise JobFileError("not a job file (bad magic)")
    (length,) = _LENGTH.unpack_from(lead, len(MAGIC))
    if length > MAX_HEADER_BYTES:
        raise JobFileError(f"header of {length} bytes, the limit is {MAX_HEADER_BYTES}")
    raw = f.read(length)
    if len(raw) != length:
        raise JobFileError("truncated header")
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise JobFileError(f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise JobFileError("header is not an object")
    return header, len(lead) + length


def _mapped_blobs(view: memoryview, pos: int) -> Any:
    while pos < view.nbytes:
        if view.nbytes - pos < HEADER_SIZE:
            raise JobFileError("truncated entry")
        total = read_header(view[pos:])[3]
        if total > view.nbytes - pos:
            raise JobFileError("truncated entry")
        yield view[pos : pos + total]
        pos += total


def _read_blobs(f: io.BufferedReader) -> Any:
    size = os.fstat(f.fileno()).st_size
    while head := f.read(HEADER_SIZE):
        total = read_header(head)[3] if len(head) == HEADER_SIZE else size + 1
        if total > size - f.tell() + HEADER_SIZE:  # never allocate what the file cannot hold
            raise JobFileError("truncated entry")
        blob = bytearray(total)
        blob[:HEADER_SIZE] = head
        if f.readinto(memoryview(blob)[HEADER_SIZE:]) != len(blob) - HEADER_SIZE:
            raise JobFileError("truncated entry")
        yield blob


def _entry(i: int, chunk: ChunkKV) -> ChunkEntry:
    layers, heads, tokens, dim = chunk.k.shape
    meta = ChunkMeta(
        tokens, dtype_name(chunk.k.dtype), "job", "", layers, heads, dim, chunk.craft, {"start": chunk.start}
    )
    return ChunkEntry(f"job:{i}", chunk.k, chunk.v, meta)


def _chunk(i: int, blob: Any) -> ChunkKV:
    try:
        entry = decode(blob, expected_key=f"job:{i}", expected_fingerprint="job")
    except CorruptEntry as exc:
        raise JobFileError(f"chunk cache {i}: {exc}") from exc
    start = entry.meta.extra.get("start")
    if not isinstance(start, int):
        raise JobFileError(f"chunk cache {i} has no start position")
    return ChunkKV(entry.k, entry.v, start, entry.meta.craft)


class Encoder:
    """Builds a header: plain values as JSON, chunk caches as indices into `chunks`."""

    def __init__(self) -> None:
        self.chunks: list[ChunkKV] = []

    def chunk(self, kv: ChunkKV | None) -> int | None:
        if kv is None:
            return None
        self.chunks.append(kv)
        return len(self.chunks) - 1

    @staticmethod
    def prompt(prompt: Prompt) -> list[dict[str, Any]]:
        return [{"kind": p.kind, "ids": list(p.ids), "text": p.text} for p in prompt.pieces]

    def lookup(self, lk: PieceLookup) -> dict[str, Any]:
        fields = {"index": lk.index, "start": lk.start, "end": lk.end}
        keys = {"exact_key": lk.exact_key, "base_key": lk.base_key}
        return {**fields, **keys, "exact": self.chunk(lk.exact), "base": self.chunk(lk.base)}

    @staticmethod
    def options(opts: BlendOptions) -> dict[str, Any]:
        return dataclasses.asdict(opts)


class Decoder:
    """The inverse of Encoder, checking every type; JobFileError on anything malformed."""

    def __init__(self, chunks: list[ChunkKV]) -> None:
        self.chunks = chunks

    def chunk(self, index: Any) -> ChunkKV | None:
        if index is None:
            return None
        if not isinstance(index, int) or not 0 <= index < len(self.chunks):
            raise JobFileError(f"no chunk cache {index!r} in the file")
        return self.chunks[index]

    @staticmethod
    def ids(value: Any) -> list[int]:
        if not isinstance(value, list) or not all(isinstance(t, int) for t in value):
            raise JobFileError("token ids must be a list of integers")
        return value

    def prompt(self, value: Any) -> Prompt:
        if not isinstance(value, list):
            raise JobFileError("a prompt must be a list of pieces")
        pieces = []
        for piece in value:
            kind, text = _field(piece, "kind", str), _field(piece, "text", str)
            if kind not in _PIECE_KINDS:
                raise JobFileError(f"unknown piece kind {kind!r}")
            pieces.append(PromptPiece(kind, tuple(self.ids(piece.get("ids"))), text))
        return Prompt(tuple(pieces))

    def lookup(self, value: Any) -> PieceLookup:
        index, start, end = (_field(value, name, int) for name in ("index", "start", "end"))
        exact_key, base_key = _field(value, "exact_key", str), _field(value, "base_key", str)
        exact, base = self.chunk(value.get("exact")), self.chunk(value.get("base"))
        return PieceLookup(index, start, end, exact_key, base_key, exact, base)

    @staticmethod
    def options(value: Any) -> BlendOptions:
        if not isinstance(value, dict):
            raise JobFileError("blend options must be an object")
        defaults = dataclasses.asdict(BlendOptions())
        if set(value) - set(defaults):
            raise JobFileError(f"unknown blend options {sorted(set(value) - set(defaults))}")

        def cast(name: str, v: Any) -> Any:
            default = defaults[name]
            if default is None:  # an optional number (None: the mode's default)
                return None if v is None else float(v)
            return type(default)(v)

        try:
            return BlendOptions(**{name: cast(name, v) for name, v in value.items()})
        except (TypeError, ValueError) as exc:
            raise JobFileError(f"bad blend options: {exc}") from exc


def _field(value: Any, name: str, kind: type) -> Any:
    got = value.get(name) if isinstance(value, dict) else None
    if not isinstance(got, kind) or (kind is int and isinstance(got, bool)):
        raise JobFileError(f"field {name!r} must be {kind.__name__}")
    return got
