"""With encryption on, the shared tiers hold no readable K/V, and a ciphertext that does not open
under this server's key (tampered, or from another secret) is a counted miss, never used."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch

from cache import StoreConfig, TieredStore
from cache.blob_layout import HEADER_SIZE, read_layout
from cache.checksum import digest
from cache.codec import CodecOptions, decode, encode
from cache.entry import ChunkEntry
from cache.entry_auth import EntryAuth
from cache.errors import CorruptEntry
from cache.redis_tier import RedisTier
from engine.blend.options import BlendOptions
from engine.config import EngineConfig
from engine.events import FinishEvent, TokenEvent
from engine.prompt import Prompt
from engine.sampling import SamplingParams
from engine.torch_engine import TorchEngine
from tests.cache.conftest import FINGERPRINT, RedisServer, make_entry, redis_server, same
from tests.texts import rag_docs

__all__ = ["redis_server"]  # the fixture, for this module

SECRET = b"replicas share this secret"


def store(server: RedisServer, secret: bytes = SECRET, **kw: object) -> TieredStore:
    config = StoreConfig(
        memory_bytes=0,
        redis_url=server.url,
        redis_part_bytes=4096,
        redis_timeout_s=5.0,
        model_fingerprint=FINGERPRINT,
        entry_secret=secret,
        encrypt_entries=True,
        **kw,  # type: ignore[arg-type]
    )
    return TieredStore(config)


def windows(entry: ChunkEntry) -> list[bytes]:
    """32-byte samples of every layer's K and V as stored (what a reader of Redis would look for)."""
    out = []
    for t in (entry.k, entry.v):
        for layer in t:
            raw = layer.contiguous().view(torch.uint8).reshape(-1).numpy().tobytes()
            out += [raw[i : i + 32] for i in range(0, len(raw) - 32, max(32, len(raw) // 4))]
    return out


def all_values(server: RedisServer) -> list[bytes]:
    client = server.client()
    values = (client.get(n) for n in client.keys("*") if client.type(n) == b"string")
    return [v for v in values if isinstance(v, bytes)]


def tampered(blob: bytes | bytearray) -> bytearray:
    """One ciphertext bit flipped, the payload checksum recomputed: what a writer without the key
    can do to a genuine entry."""
    out = bytearray(blob)
    layout = read_layout(out)
    out[layout.body + 7] ^= 0x01
    struct.pack_into("<I", out, HEADER_SIZE - 4, digest(memoryview(out)[layout.body :]))
    return out


@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_redis_holds_no_plaintext_k_or_v(redis_server: RedisServer, compression: str) -> None:
    entries = [make_entry(i, tokens=64, layers=6, dim=32) for i in range(3)]
    with store(redis_server, compression=compression) as s:
        s.put_many(entries)
        s.flush()
        values = all_values(redis_server)
        assert sum(len(v) for v in values) > sum(e.nbytes for e in entries)  # it is all in there
        for e in entries:
            assert not any(w in v for w in windows(e) for v in values)
        # yet another replica with the same secret reads them back, whole and layer by layer
        with store(redis_server) as reader:
            got = reader.get_many([e.key for e in entries])
            assert all(same(g, e) for g, e in zip(got, entries, strict=True))
            layered = reader.get_many_layered([e.key for e in entries]).entries(timeout=10)
            assert all(same(g, e) for g, e in zip(layered, entries, strict=True))
    # the control: without encryption the same bytes are in Redis in the clear
    plain = make_entry(50, tokens=64, layers=6, dim=32)
    tier = RedisTier(redis_server.url, namespace="plain")
    try:
        tier.put_many([plain])
        assert any(w in v for w in windows(plain) for v in all_values(redis_server))
    finally:
        tier.close()


def test_tampered_ciphertext_and_foreign_keys_are_counted_misses(redis_server: RedisServer) -> None:
    genuine = make_entry(7, tokens=64, layers=6, dim=32)
    with store(redis_server) as s:
        tier = s.tier("redis")
        assert isinstance(tier, RedisTier)
        tier.write_blobs([(genuine.key, tampered(encode(genuine, s.codec)), 1.0)])
        assert s.get_many([genuine.key]) == [None]
        assert s.get_many_layered([genuine.key]).entries(timeout=10) == [None]
        assert s.stats().tier("redis").unauthenticated >= 1
        s.put_many([genuine])
        s.flush()
        assert same(s.get_many([genuine.key])[0], genuine)
        with store(redis_server, b"another secret") as stranger:
            assert stranger.get_many([genuine.key]) == [None]
            assert stranger.stats().tier("redis").unauthenticated == 1


def test_the_codec_refuses_what_does_not_open() -> None:
    entry = make_entry(9, tokens=16)
    auth = EntryAuth(SECRET)
    sealed = encode(entry, CodecOptions(auth=auth, encrypt=True))
    assert same(decode(sealed, auth=auth), entry)
    for blob, reader in ((sealed, None), (sealed, EntryAuth(b"guess")), (tampered(sealed), auth)):
        with pytest.raises(CorruptEntry) as err:
            decode(blob, auth=reader)
        assert err.value.reason == "mac"
    with pytest.raises(ValueError, match="secret"):
        CodecOptions(encrypt=True)
    with pytest.raises(ValueError, match="entry_secret"):
        StoreConfig(encrypt_entries=True)


PARAMS = SamplingParams(max_tokens=12)
REUSE = BlendOptions(mode="reuse")


def answer(engine: TorchEngine, prompt: Prompt) -> tuple[list[int], int]:
    events = list(engine.generate_unbatched(prompt, PARAMS, blend=REUSE))
    final = events[-1]
    assert isinstance(final, FinishEvent)
    tokens = [e.token_id for e in events if isinstance(e, TokenEvent) and e.token_id >= 0]
    return tokens, int(final.extra_usage["cached_tokens"])


def test_tampered_encrypted_entries_never_change_the_answer(
    model_dir: Path, redis_server: RedisServer
) -> None:
    config = StoreConfig(
        memory_bytes=0,
        redis_url=redis_server.url,
        redis_timeout_s=5.0,
        entry_secret=SECRET,
        encrypt_entries=True,
    )
    s = TieredStore(config)
    engine = TorchEngine(EngineConfig(model_dir=model_dir, dtype="float32", num_threads=2), store=s)
    try:
        question, docs = rag_docs(2, 2, 60)
        prompt = engine.build_prompt(question, docs, None)
        cold, cached = answer(engine, prompt)  # the full prefill's answer
        assert cached == 0
        s.flush()
        tokens, cached = answer(engine, prompt)
        assert cached > 0, "the genuine encrypted entries are used"
        tier = s.tier("redis")
        assert isinstance(tier, RedisTier)
        names = [n.decode() if isinstance(n, bytes) else n for n in redis_server.client().keys("rbkv:{*}")]
        keys = [n.split("{")[1].rstrip("}") for n in names]
        assert len(keys) >= 2
        blobs = tier.read_blobs(keys)
        tier.write_blobs([(k, tampered(b), 1.0) for k, b in zip(keys, blobs, strict=True) if b is not None])
        tokens, cached = answer(engine, prompt)
        assert cached == 0, "no tampered entry was used"
        assert tokens == cold
        assert s.stats().tier("redis").unauthenticated >= len(keys)
    finally:
        s.close()
