"""Encoding chunk entries to bytes and back. Never pickle: a shared Redis must not run code.

The byte layout is described in ``cache.blob_layout``. Uncompressed entries decode
without copying when the buffer is writable (bytearray, mmap): tensors are views of it.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import lz4.frame
import torch
import zstandard

from cache.blob_layout import (
    COMPRESSION_CODES,
    FLAG_AUTH,
    FLAG_INT8,
    FLAG_SEALED,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    META_CRC_SPAN,
    VERSION,
    BlobLayout,
    body_offset,
    read_layout,
    view_sections,
)
from cache.checksum import digest
from cache.config import Compression
from cache.entry import DTYPES, ChunkEntry
from cache.entry_auth import META, PAYLOAD, TAG_SIZE, EntryAuth, layer_tag_index, sealed_associated_data
from cache.errors import CorruptEntry
from cache.quant import QUANT_SCHEME, dequantize_int8, quantize_int8

__all__ = [
    "HEADER_SIZE",
    "MAX_RAW_BYTES",
    "CodecOptions",
    "decode",
    "encode",
    "encode_parts",
    "entry_view",
    "read_header",
]

# Decompression never trusts the size an entry claims: output grows a step at a time, up to the
# claimed size and never past MAX_RAW_BYTES, so a small forged entry cannot make us allocate gigabytes.
MAX_RAW_BYTES = 1 << 30
_STEP = 1 << 20


@dataclass(frozen=True)
class CodecOptions:
    """How ``encode`` stores K/V, and (``auth``) the key entries are tagged with and must bear;
    ``encrypt`` (needs ``auth``) stores the payload encrypted under that key."""

    compression: Compression = "none"
    quantize: bool = False
    zstd_level: int = 3
    auth: EntryAuth | None = None
    encrypt: bool = False

    def __post_init__(self) -> None:
        if self.encrypt and self.auth is None:
            raise ValueError("encrypting entries needs the entry secret (auth)")


def _raw_view(t: torch.Tensor) -> memoryview:
    return t.contiguous().view(torch.uint8).reshape(-1).numpy().data


def encode_parts(entry: ChunkEntry, options: CodecOptions | None = None) -> list[memoryview]:
    """``encode``'s blob as consecutive buffers, the uncompressed K/V as views of ``entry``'s own
    tensors (valid while they are unchanged): for a writer that streams the blob instead of
    building it. ValueError if its tensors disagree with its metadata."""
    opts = options or CodecOptions()
    entry.validate()
    if opts.quantize:
        kq, ks = quantize_int8(entry.k)
        vq, vs = quantize_int8(entry.v)
        tensors = [
            ("k", kq, "int8"),
            ("v", vq, "int8"),
            ("k_scale", ks, "float32"),
            ("v_scale", vs, "float32"),
        ]
    else:
        tensors = [("k", entry.k, entry.meta.dtype), ("v", entry.v, entry.meta.dtype)]
    sections = []
    views = []
    offset = 0
    for name, t, dname in tensors:
        view = _raw_view(t)
        sections.append({"name": name, "dtype": dname, "shape": list(t.shape), "offset": offset})
        views.append(view)
        offset += view.nbytes
    layer_crc = None
    signer = nonce = None
    if opts.auth is not None:
        nonce = opts.auth.new_nonce()
        signer = opts.auth.signer(nonce)
    layer_tags: list[list[str]] | None = None
    if not opts.quantize and opts.compression == "none" and not opts.encrypt:
        layers = entry.meta.num_layers
        k_view, v_view = views
        per = k_view.nbytes // max(layers, 1)
        spans = [(k_view[i * per : (i + 1) * per], v_view[i * per : (i + 1) * per]) for i in range(layers)]
        layer_crc = [digest(k, v) for k, v in spans]
        if signer is not None:
            layer_tags = [
                [signer.tag(layer_tag_index(i, 0), k).hex(), signer.tag(layer_tag_index(i, 1), v).hex()]
                for i, (k, v) in enumerate(spans)
            ]
    payload: Any = None
    payload_len = offset
    if opts.compression != "none":
        raw = b"".join(views)
        if opts.compression == "lz4":
            payload = lz4.frame.compress(raw)
        else:
            payload = zstandard.ZstdCompressor(level=opts.zstd_level).compress(raw)
        payload_len = len(payload)
    if opts.encrypt and signer is not None:
        plain = payload if payload is not None else b"".join(views)
        payload = signer.seal(plain, sealed_associated_data(entry.key, entry.meta.model_fingerprint))
        payload_len = len(payload)
    info: dict[str, Any] = {
        "key": entry.key,
        "meta": entry.meta.to_json(),
        "raw_len": offset,
        "quant": QUANT_SCHEME if opts.quantize else None,
        "sections": sections,
        "layer_crc": layer_crc,
    }
    if signer is not None:
        stored = payload if payload is not None else b"".join(views)
        info["auth"] = {"payload": signer.tag(PAYLOAD, stored).hex(), "layers": layer_tags}
    meta_json = json.dumps(info, separators=(",", ":")).encode()
    flags = COMPRESSION_CODES[opts.compression] | (FLAG_INT8 if opts.quantize else 0)
    flags |= FLAG_SEALED if opts.encrypt else 0
    if signer is not None and nonce is not None:
        flags |= FLAG_AUTH
        meta_len = len(meta_json) + len(nonce) + TAG_SIZE
        head = bytearray(HEADER_SIZE)
        HEADER.pack_into(head, 0, MAGIC, VERSION, flags, meta_len, payload_len, 0, 0)
        meta_json += nonce + signer.tag(META, bytes(head[:META_CRC_SPAN]) + meta_json)
    body = body_offset(len(meta_json))
    head = bytearray(body)
    HEADER.pack_into(head, 0, MAGIC, VERSION, flags, len(meta_json), payload_len, 0, 0)
    head[HEADER_SIZE : HEADER_SIZE + len(meta_json)] = meta_json
    stored_parts: list[Any] = views if payload is None else [memoryview(payload)]
    meta_crc = zlib.crc32(meta_json, zlib.crc32(memoryview(head)[:META_CRC_SPAN]))
    struct.pack_into("<II", head, HEADER_SIZE - 8, meta_crc, digest(*stored_parts))
    return [memoryview(head), *stored_parts]


def encode(entry: ChunkEntry, options: CodecOptions | None = None) -> bytearray:
    """Serialise ``entry``; ValueError if its tensors disagree with its metadata."""
    parts = encode_parts(entry, options)
    out = bytearray(sum(part.nbytes for part in parts))
    pos = 0
    for part in parts:
        out[pos : pos + part.nbytes] = part
        pos += part.nbytes
    return out


def read_header(blob: Any) -> tuple[int, int, int, int]:
    """``(flags, meta_len, payload_len, total_len)`` from the fixed header of ``blob``."""
    mv = memoryview(blob).cast("B")
    if mv.nbytes < HEADER_SIZE:
        raise CorruptEntry("truncated", f"{mv.nbytes} bytes")
    _, _, flags, meta_len, payload_len, _, _ = HEADER.unpack_from(mv, 0)
    return flags, meta_len, payload_len, body_offset(meta_len) + payload_len


def decode(
    blob: Any,
    expected_key: str | None = None,
    expected_fingerprint: str | None = None,
    auth: EntryAuth | None = None,
) -> ChunkEntry:
    """Rebuild an entry from ``blob`` (bytes, bytearray, memoryview or mmap).

    Raises CorruptEntry (or a subclass) for anything not exactly as ``encode`` wrote it,
    WrongModel if the stored key or model fingerprint is not the expected one, and, under
    ``auth``, CorruptEntry("mac") for an entry not tagged with that key.
    Immutable ``bytes`` are copied once (torch only views writable memory).
    """
    mv = memoryview(blob).cast("B")
    layout = read_layout(mv, expected_key, expected_fingerprint, auth)
    if mv.nbytes != layout.total:
        raise CorruptEntry("truncated", f"{mv.nbytes} bytes, header says {layout.total}")
    stored = mv[layout.body :]
    if digest(stored) != layout.payload_crc:
        raise CorruptEntry("checksum", "payload")
    if not layout.payload_ok(stored):
        raise CorruptEntry("mac", "payload tag does not match this server's key")
    if layout.flags & FLAG_SEALED:
        stored = _unseal(layout, stored)
    if layout.compression != "none" and layout.raw_len > MAX_RAW_BYTES:
        raise CorruptEntry("metadata", f"claims {layout.raw_len} raw bytes, the limit is {MAX_RAW_BYTES}")
    payload: Any
    try:
        if layout.compression == "lz4":
            payload = _unlz4(stored, layout.raw_len)
        elif layout.compression == "zstd":
            payload = _unzstd(stored, layout.raw_len)
        else:
            payload = bytearray(stored) if stored.readonly else stored
    except CorruptEntry:
        raise
    except Exception as exc:  # decompressors raise library-specific types
        raise CorruptEntry("decompress", str(exc)) from exc
    if len(payload) != layout.raw_len:
        raise CorruptEntry("truncated", f"payload {len(payload)} bytes, expected {layout.raw_len}")
    return _build(layout, payload)


def entry_view(layout: BlobLayout, blob: Any) -> ChunkEntry:
    """The entry of a raw (streamable) blob as views of ``blob``, which may still be
    arriving: only layers verified with ``layout.layer_ok`` may be read."""
    return _build(layout, memoryview(blob).cast("B")[layout.body :])


def _build(layout: BlobLayout, payload: Any) -> ChunkEntry:
    try:
        t = view_sections(layout, payload)
        if layout.flags & FLAG_INT8:
            dtype = DTYPES[layout.meta.dtype]
            k = dequantize_int8(t["k"], t["k_scale"], dtype)
            v = dequantize_int8(t["v"], t["v_scale"], dtype)
        else:
            k, v = t["k"], t["v"]
        entry = ChunkEntry(key=layout.key, k=k, v=v, meta=layout.meta)
        entry.validate()
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CorruptEntry("metadata", str(exc)) from exc
    return entry


def _unseal(layout: BlobLayout, stored: memoryview) -> memoryview:
    if layout.signer is None:
        raise CorruptEntry("mac", "entry is encrypted and was read without a key")
    plain = layout.signer.open(stored, sealed_associated_data(layout.key, layout.meta.model_fingerprint))
    if plain is None:
        raise CorruptEntry("mac", "payload does not decrypt under this server's key")
    return memoryview(plain)


def _unlz4(data: memoryview, raw_len: int) -> bytearray:
    out = bytearray()
    dec = lz4.frame.LZ4FrameDecompressor()
    pending: Any = data
    while not dec.eof:
        out += dec.decompress(pending, max_length=_STEP)
        pending = b""
        if len(out) > raw_len:
            raise CorruptEntry("truncated", f"lz4 payload gives more than the {raw_len} bytes claimed")
        if dec.needs_input and not dec.eof:
            raise CorruptEntry("truncated", f"lz4 payload ended after {len(out)} of {raw_len} bytes")
    if len(out) != raw_len:
        raise CorruptEntry("truncated", f"lz4 payload gave {len(out)} bytes, expected {raw_len}")
    return out


def _unzstd(data: memoryview, raw_len: int) -> bytearray:
    out = bytearray()
    with zstandard.ZstdDecompressor().stream_reader(data) as reader:
        while len(out) < raw_len:
            piece = reader.read(min(_STEP, raw_len - len(out)))
            if not piece:
                break
            out += piece
        if len(out) != raw_len or reader.read(1):
            raise CorruptEntry("truncated", f"zstd payload gave {len(out)} bytes, expected {raw_len}")
    return out
