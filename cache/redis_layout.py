"""How one entry is laid out in Redis keys: main key, parts, manifest.

``ns:{key}`` holds the encoded entry itself when it fits in one part, else a manifest
``RBMF | version u8 | parts u32 | total u64 | part size u64 | write id``; ``ns:{key}:<write id>:<i>`` hold
the parts. The braces are a Cluster hash tag: every key of one entry is in one slot.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from cache.codec import HEADER_SIZE

_MANIFEST = struct.Struct("<4sBIQQ")
MANIFEST_MAGIC = b"RBMF"
_MAX_MANIFEST = 256


def main_key(namespace: str, key: str) -> str:
    """Name of the key holding the entry or its manifest."""
    return f"{namespace}:{{{key}}}"


def part_key(namespace: str, key: str, write_id: str, i: int) -> str:
    """Name of part ``i`` of the write ``write_id`` of ``key``."""
    return f"{namespace}:{{{key}}}:{write_id}:{i}"


def write_id(blob: memoryview) -> str:
    """Content-derived id of an encoded entry (its codec CRCs and length), so writers of
    different bytes never share part names and writers of equal bytes write equal parts."""
    crcs = struct.unpack_from("<II", blob, HEADER_SIZE - 8) if blob.nbytes >= HEADER_SIZE else (0, 0)
    return f"{crcs[0]:08x}{crcs[1]:08x}{blob.nbytes:x}"


class Manifest(NamedTuple):
    """Where the parts of a split entry are."""

    parts: int
    total: int
    part_size: int
    write_id: str

    def spans(self) -> list[tuple[int, int]]:
        """``(start, end)`` byte range of each part in the whole entry."""
        return [(p * self.part_size, min(self.total, (p + 1) * self.part_size)) for p in range(self.parts)]


def make_manifest(total: int, part_size: int, wid: str) -> bytes:
    """The manifest value of an entry of ``total`` bytes cut into ``part_size`` parts."""
    return _MANIFEST.pack(MANIFEST_MAGIC, 1, part_count(total, part_size), total, part_size) + wid.encode()


def is_manifest(value: Any) -> bool:
    """Whether a value read from a main key is a manifest (else it is a whole entry)."""
    return value is not None and bytes(memoryview(value)[:4]) == MANIFEST_MAGIC


def parse_manifest(value: Any) -> Manifest | None:
    """The manifest in ``value`` (any buffer), or None if it is not a (sane) one."""
    if not is_manifest(value) or len(value) <= _MANIFEST.size or len(value) > _MAX_MANIFEST:
        return None
    value = bytes(value)
    _, version, parts, total, part_size = _MANIFEST.unpack_from(value, 0)
    wid = value[_MANIFEST.size :].decode("ascii", "replace")
    if version != 1 or parts < 1 or part_size < 1 or not wid.isalnum():
        return None
    if (parts - 1) * part_size >= total or parts * part_size < total:
        return None
    return Manifest(parts, total, part_size, wid)


def part_count(nbytes: int, part_bytes: int) -> int:
    """Parts an entry of ``nbytes`` is split into (1 = stored whole, no manifest)."""
    return 1 if nbytes <= part_bytes else -(-nbytes // part_bytes)


def assemble(parts: list[Any], total: int) -> bytearray | None:
    """Join parts into one writable buffer; None if one is missing or sizes disagree."""
    if any(p is None for p in parts) or sum(len(p) for p in parts) != total:
        return None  # a part expired, was evicted or replaced: a miss
    out = bytearray(total)
    pos = 0
    for p in parts:
        out[pos : pos + len(p)] = p
        pos += len(p)
    return out
