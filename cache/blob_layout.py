"""Reading the header and metadata of an encoded entry, possibly from a prefix of it.

Layout (little-endian)::

    magic "RBKV" | version u16 | flags u16 | meta_len u32 | payload_len u64
    | meta_crc u32 | payload_crc u32 | meta JSON | zero padding to 64 bytes | payload

``flags`` bits 0-1 give the payload compression (0 none, 1 lz4, 2 zstd); bit 2 says K/V are int8
with per-token-per-head scales; bit 3 says the entry is authenticated (``cache.entry_auth``): the
metadata then ends with a 16-byte nonce and a 16-byte tag over the first 20 header bytes and the
JSON, and the JSON's ``auth`` holds the tags of the payload and of each layer's K and V; bit 4 (with
bit 3) says the stored payload is encrypted (``EntrySigner.seal``: no layer checksums or tags then,
so such entries are read whole, never layer by layer).
``meta_crc`` (CRC-32) covers the first 20 header bytes and the metadata, the padding must be zero,
``payload_crc`` (``cache.checksum``) covers the stored payload. The JSON holds the key, the
ChunkMeta, the payload's sections (name, dtype, shape, offset after decompression) and, for raw
payloads, one checksum per layer over K[l] then V[l]: a reader that receives an entry in pieces
can verify and use each layer as soon as its bytes are in.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import torch

from cache.checksum import digest
from cache.entry import DTYPES, ChunkMeta
from cache.entry_auth import META, NONCE_SIZE, PAYLOAD, TAG_SIZE, EntryAuth, EntrySigner, layer_tag_index
from cache.errors import CorruptEntry, UnsupportedVersion, WrongModel

MAGIC = b"RBKV"
VERSION = 2  # 2: payload and layer checksums are XXH3 (cache.checksum) instead of CRC-32
HEADER = struct.Struct("<4sHHIQII")
HEADER_SIZE = HEADER.size
META_CRC_SPAN = 20  # magic .. payload_len
ALIGN = 64
COMPRESSION_CODES: dict[str, int] = {"none": 0, "lz4": 1, "zstd": 2}
CODE_NAMES = {v: k for k, v in COMPRESSION_CODES.items()}
FLAG_INT8 = 4
FLAG_AUTH = 8
FLAG_SEALED = 16
AUTH_TRAILER = NONCE_SIZE + TAG_SIZE
SECTION_DTYPES: dict[str, torch.dtype] = {**DTYPES, "int8": torch.int8}


def body_offset(meta_len: int) -> int:
    """Where the payload starts in a blob whose JSON has ``meta_len`` bytes."""
    return -(-(HEADER_SIZE + meta_len) // ALIGN) * ALIGN


@dataclass(frozen=True)
class Section:
    """One tensor of the (decompressed) payload."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int
    nbytes: int


@dataclass(frozen=True)
class BlobLayout:
    """Everything about an encoded entry except its payload bytes."""

    key: str
    meta: ChunkMeta
    flags: int
    body: int
    payload_len: int
    payload_crc: int
    raw_len: int
    sections: dict[str, Section]
    layer_crc: tuple[int, ...] | None
    signer: EntrySigner | None = None  # set when read under a key: the tags below were made with it
    payload_tag: bytes | None = None
    layer_tags: tuple[tuple[bytes, bytes], ...] | None = None

    @property
    def total(self) -> int:
        """Size of the whole blob."""
        return self.body + self.payload_len

    @property
    def compression(self) -> str:
        return CODE_NAMES.get(self.flags & 3, "?")

    @property
    def streamable(self) -> bool:
        """Whether layers can be verified and used one by one (raw payload)."""
        return self.layer_crc is not None and self.flags & ~FLAG_AUTH == 0

    def layer_spans(self, layer: int) -> list[tuple[int, int]]:
        """Byte ranges of K[layer] and V[layer] in the blob (raw payloads only)."""
        out = []
        for name in ("k", "v"):
            sec = self.sections[name]
            per = sec.nbytes // self.meta.num_layers
            start = self.body + sec.offset + layer * per
            out.append((start, start + per))
        return out

    def layer_ok(self, blob: Any, layer: int) -> bool:
        """Whether the bytes of ``layer`` in ``blob`` match their stored CRC."""
        if self.layer_crc is None:
            return False
        mv = memoryview(blob).cast("B")
        spans = [mv[a:b] for a, b in self.layer_spans(layer)]
        if digest(*spans) != self.layer_crc[layer]:
            return False
        if self.signer is None:
            return True
        if self.layer_tags is None:
            return False
        return all(
            self.signer.check(layer_tag_index(layer, part), span, self.layer_tags[layer][part])
            for part, span in enumerate(spans)
        )

    def payload_ok(self, stored: Any) -> bool:
        """Whether the stored payload bears its tag (always true when read without a key)."""
        if self.signer is None:
            return True
        return self.payload_tag is not None and self.signer.check(PAYLOAD, stored, self.payload_tag)


def read_layout(
    blob: Any,
    expected_key: str | None = None,
    expected_fingerprint: str | None = None,
    auth: EntryAuth | None = None,
) -> BlobLayout:
    """Parse and verify the header and JSON of ``blob``, which may hold only a prefix of
    the entry (at least up to the payload). Raises CorruptEntry or a subclass. Under ``auth``
    an entry without a valid tag is CorruptEntry("mac"), before its JSON is even parsed."""
    mv = memoryview(blob).cast("B")
    if mv.nbytes < HEADER_SIZE:
        raise CorruptEntry("truncated", f"{mv.nbytes} bytes")
    magic, version, flags, meta_len, payload_len, meta_crc, payload_crc = HEADER.unpack_from(mv, 0)
    if magic != MAGIC:
        raise CorruptEntry("magic", repr(bytes(magic)))
    if version != VERSION:
        raise UnsupportedVersion("version", f"version {version}, this code reads {VERSION}")
    body = body_offset(meta_len)
    if mv.nbytes < body:
        raise CorruptEntry("truncated", f"{mv.nbytes} bytes, metadata ends at {body}")
    meta_bytes = mv[HEADER_SIZE : HEADER_SIZE + meta_len]
    if zlib.crc32(meta_bytes, zlib.crc32(mv[:META_CRC_SPAN])) != meta_crc:
        raise CorruptEntry("checksum", "metadata")
    if any(mv[HEADER_SIZE + meta_len : body]):
        raise CorruptEntry("checksum", "padding")
    if flags & ~(3 | FLAG_INT8 | FLAG_AUTH | FLAG_SEALED) or (flags & 3) not in CODE_NAMES:
        raise CorruptEntry("flags", str(flags))
    if flags & FLAG_SEALED and not flags & FLAG_AUTH:
        raise CorruptEntry("flags", "an encrypted entry must be authenticated")
    signer = None
    if flags & FLAG_AUTH:
        if meta_len < AUTH_TRAILER:
            raise CorruptEntry("metadata", "authentication trailer missing")
        json_bytes = meta_bytes[: meta_len - AUTH_TRAILER]
        nonce = bytes(meta_bytes[meta_len - AUTH_TRAILER : meta_len - TAG_SIZE])
        tag = bytes(meta_bytes[meta_len - TAG_SIZE :])
        if auth is not None:
            signer = auth.signer(nonce)
            if not signer.check(META, bytes(mv[:META_CRC_SPAN]) + bytes(json_bytes), tag):
                raise CorruptEntry("mac", "metadata tag does not match this server's key")
    elif auth is not None:
        raise CorruptEntry("mac", "entry is not authenticated")
    else:
        json_bytes = meta_bytes
    try:
        info = json.loads(bytes(json_bytes))
        meta = ChunkMeta.from_json(info["meta"])
        raw_len = int(info["raw_len"])
        sections = {}
        for sec in info["sections"]:
            dtype = SECTION_DTYPES[str(sec["dtype"])]
            shape = tuple(int(s) for s in sec["shape"])
            count = 1
            for s in shape:
                count *= s
            sections[str(sec["name"])] = Section(dtype, shape, int(sec["offset"]), count * dtype.itemsize)
        crcs = info.get("layer_crc")
        layer_crc = tuple(int(c) for c in crcs) if crcs is not None else None
        payload_tag = layer_tags = None
        if signer is not None:
            tags = info["auth"]
            payload_tag = bytes.fromhex(str(tags["payload"]))
            if tags.get("layers") is not None:
                layer_tags = tuple((bytes.fromhex(str(k)), bytes.fromhex(str(v))) for k, v in tags["layers"])
        layout = BlobLayout(
            str(info["key"]),
            meta,
            flags,
            body,
            payload_len,
            payload_crc,
            raw_len,
            sections,
            layer_crc,
            signer,
            payload_tag,
            layer_tags,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptEntry("metadata", str(exc)) from exc
    for name, sec in layout.sections.items():
        if sec.offset < 0 or sec.offset + sec.nbytes > raw_len or min(sec.shape, default=1) < 0:
            raise CorruptEntry("metadata", f"section {name} out of bounds")
    if layer_crc is not None and len(layer_crc) != meta.num_layers:
        raise CorruptEntry("metadata", "layer checksums do not match the layer count")
    if layer_tags is not None and len(layer_tags) != meta.num_layers:
        raise CorruptEntry("metadata", "layer tags do not match the layer count")
    if expected_key is not None and layout.key != expected_key:
        raise WrongModel("key", f"stored under another key ({layout.key[:16]}...)")
    if expected_fingerprint is not None and meta.model_fingerprint != expected_fingerprint:
        raise WrongModel("fingerprint", meta.model_fingerprint)
    return layout


def view_sections(layout: BlobLayout, payload: Any) -> dict[str, torch.Tensor]:
    """Tensors viewing the (decompressed) payload; no copy."""
    out: dict[str, torch.Tensor] = {}
    for name, sec in layout.sections.items():
        count = sec.nbytes // sec.dtype.itemsize
        if count:
            flat = torch.frombuffer(payload, dtype=sec.dtype, count=count, offset=sec.offset)
        else:
            flat = torch.empty(0, dtype=sec.dtype)
        out[name] = flat.view(sec.shape)
    return out
