from __future__ import annotations

import struct

import pytest
import torch

from cache.codec import HEADER_SIZE, CodecOptions, decode, encode, read_header
from cache.errors import CorruptEntry, UnsupportedVersion, WrongModel
from cache.quant import relative_error
from tests.cache.conftest import FINGERPRINT, make_entry, same

ALL_OPTIONS = [CodecOptions(c, q) for c in ("none", "lz4", "zstd") for q in (False, True)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
def test_lossless_round_trip(dtype: torch.dtype, compression: str) -> None:
    entry = make_entry(1, dtype=dtype)
    blob = encode(entry, CodecOptions(compression))  # type: ignore[arg-type]
    assert read_header(blob)[3] == len(blob)
    out = decode(bytes(blob), expected_key=entry.key, expected_fingerprint=FINGERPRINT)
    assert same(out, entry)
    assert out.meta.craft == {"attn_mass": 0.5, "per_layer": [0.1, 0.1]}


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_int8_quantisation_is_small_and_close(compression: str) -> None:
    entry = make_entry(2, tokens=64, dim=64)
    plain = encode(entry)
    quant = encode(entry, CodecOptions(compression, quantize=True))  # type: ignore[arg-type]
    assert len(quant) < 0.6 * len(plain)
    out = decode(quant, expected_key=entry.key)
    assert out.k.dtype == torch.bfloat16 and out.k.shape == entry.k.shape
    assert relative_error(entry.k, out.k) < 0.02
    assert relative_error(entry.v, out.v) < 0.02


def test_uncompressed_decode_shares_memory() -> None:
    entry = make_entry(3)
    blob = encode(entry)
    out = decode(blob)
    base = torch.frombuffer(blob, dtype=torch.uint8).data_ptr()
    assert base <= out.k.data_ptr() < base + len(blob)
    assert base <= out.v.data_ptr() < base + len(blob)


@pytest.mark.parametrize("options", ALL_OPTIONS)
def test_every_truncation_is_detected(options: CodecOptions) -> None:
    blob = bytes(encode(make_entry(4), options))
    for cut in [0, 1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 5, len(blob) // 2, len(blob) - 1]:
        with pytest.raises(CorruptEntry):
            decode(blob[:cut])
    with pytest.raises(CorruptEntry):
        decode(blob + b"\0")


@pytest.mark.parametrize("options", ALL_OPTIONS)
def test_every_flipped_byte_is_detected(options: CodecOptions) -> None:
    blob = bytes(encode(make_entry(5), options))
    for pos in range(0, len(blob), max(1, len(blob) // 97)):
        damaged = bytearray(blob)
        damaged[pos] ^= 0x40
        with pytest.raises(CorruptEntry):
            decode(damaged)


def test_foreign_version_and_magic() -> None:
    blob = encode(make_entry(6))
    future = bytearray(blob)
    struct.pack_into("<H", future, 4, 99)
    with pytest.raises(UnsupportedVersion):
        decode(future)
    with pytest.raises(CorruptEntry, match="magic"):
        decode(b"\x80\x04\x95" + bytes(blob[3:]))  # a pickle stream is just foreign bytes
    with pytest.raises(CorruptEntry):
        decode(b"")


def test_wrong_model_or_key_is_rejected() -> None:
    entry = make_entry(7)
    blob = encode(entry)
    with pytest.raises(WrongModel, match="fingerprint"):
        decode(blob, expected_fingerprint="other-model")
    with pytest.raises(WrongModel, match="key"):
        decode(blob, expected_key=make_entry(8).key)
    assert issubclass(WrongModel, CorruptEntry)


def test_malformed_entries_are_refused_on_encode() -> None:
    entry = make_entry(9)
    bad = type(entry)(entry.key, entry.k[:, :, :3], entry.v, entry.meta)
    with pytest.raises(ValueError):
        encode(bad)
    with pytest.raises(ValueError):
        encode(type(entry)(entry.key, entry.k.float(), entry.v, entry.meta))


def _forge(blob: bytes, raw_len: int, payload: bytes) -> bytes:
    """A copy of `blob` that claims `raw_len` raw bytes and carries `payload`, with every checksum
    recomputed: what someone who can write to a shared tier could store."""
    import json
    import zlib

    from cache.blob_layout import HEADER, META_CRC_SPAN, body_offset
    from cache.checksum import digest

    magic, version, flags, meta_len, _, _, _ = HEADER.unpack_from(blob, 0)
    info = json.loads(blob[HEADER_SIZE : HEADER_SIZE + meta_len])
    info["raw_len"] = raw_len
    meta = json.dumps(info, separators=(",", ":")).encode()
    body = body_offset(len(meta))
    out = bytearray(body + len(payload))
    HEADER.pack_into(out, 0, magic, version, flags, len(meta), len(payload), 0, 0)
    out[HEADER_SIZE : HEADER_SIZE + len(meta)] = meta
    out[body:] = payload
    meta_crc = zlib.crc32(meta, zlib.crc32(bytes(out[:META_CRC_SPAN])))
    struct.pack_into("<II", out, HEADER_SIZE - 8, meta_crc, digest(memoryview(out)[body:]))
    return bytes(out)


def _peak_bytes(fn: object) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(CorruptEntry):
            fn()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_a_decompression_bomb_is_refused_in_bounded_memory(compression: str) -> None:
    import lz4.frame
    import zstandard

    entry = make_entry(6)
    blob = bytes(encode(entry, CodecOptions(compression)))  # type: ignore[arg-type]
    raw_len = read_header(encode(entry))[2]
    bomb = b"\0" * (256 << 20)
    packed = lz4.frame.compress(bomb) if compression == "lz4" else zstandard.compress(bomb)
    assert len(packed) < 2 << 20
    forged = _forge(blob, raw_len, packed)  # honest size, 256 MiB inside
    assert _peak_bytes(lambda: decode(forged)) < 16 << 20


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_a_claimed_size_is_never_allocated_up_front(compression: str) -> None:
    from cache.codec import MAX_RAW_BYTES

    entry = make_entry(7)
    blob = bytes(encode(entry, CodecOptions(compression)))  # type: ignore[arg-type]
    payload_len = read_header(blob)[2]
    payload = blob[len(blob) - payload_len :]
    big = _forge(blob, 768 << 20, payload)  # under the limit: refused once the payload runs out
    assert _peak_bytes(lambda: decode(big)) < 16 << 20
    huge = _forge(blob, MAX_RAW_BYTES + 1, payload)
    with pytest.raises(CorruptEntry, match="limit"):
        decode(huge)
