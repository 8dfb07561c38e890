"""Redis tier against a real server that is killed, restarted, frozen or slow."""

from __future__ import annotations

import multiprocessing
import threading
import time

import redis
import torch

from cache.codec import decode, encode
from cache.entry import ChunkEntry
from cache.redis_tier import RedisTier
from tests.cache.conftest import RedisServer, make_entry, same

FORK = multiprocessing.get_context("fork")


def fast_tier(server: RedisServer, **kw: object) -> RedisTier:
    opts: dict[str, object] = {"part_bytes": 4096, "timeout_s": 0.3, "backoff_s": 0.1}
    opts.update(kw)
    return RedisTier(server.url, **opts)  # type: ignore[arg-type]


def wait_until_healthy(tier: RedisTier, deadline_s: float = 5.0) -> None:
    end = time.monotonic() + deadline_s
    while not tier.ping():
        assert time.monotonic() < end, "the tier did not reconnect on its own"
        time.sleep(0.05)


def test_down_server_gives_misses_then_recovers(redis_server: RedisServer) -> None:
    tier = fast_tier(redis_server)
    entry = make_entry(1, tokens=64, dim=32)
    tier.put_many([entry])
    redis_server.stop()
    assert tier.get_many([entry.key]) == [None]
    tier.put_many([make_entry(2)])  # skipped, no exception
    assert tier.contains_many([entry.key]) == [False]
    s = tier.stats().tier("redis")
    assert s.errors >= 1 and s.skipped_writes >= 1
    redis_server.start()  # same port, empty (no persistence)
    wait_until_healthy(tier)
    assert tier.get_many([entry.key]) == [None]
    tier.put_many([entry])
    assert same(tier.get_many([entry.key])[0], entry)


def test_frozen_server_costs_one_timeout(redis_server: RedisServer) -> None:
    tier = fast_tier(redis_server, backoff_s=3.0)
    entry = make_entry(1)
    tier.put_many([entry])
    redis_server.freeze()
    try:
        start = time.monotonic()
        assert tier.get_many([entry.key]) == [None]
        # One 0.3 s timeout, not a hang; loose because the machine is shared.
        assert time.monotonic() - start < 10
        assert tier.get_many([entry.key]) == [None]  # within the backoff: not even tried
        assert tier.stats().tier("redis").errors == 1  # a try would have counted a second error
    finally:
        redis_server.resume()
    wait_until_healthy(tier, deadline_s=30)
    assert same(tier.get_many([entry.key])[0], entry)


def test_slow_command_is_a_miss(redis_server: RedisServer) -> None:
    tier = fast_tier(redis_server)
    entry = make_entry(1)
    tier.put_many([entry])
    blocker = threading.Thread(target=lambda: redis_server.client().execute_command("DEBUG", "SLEEP", "1"))
    blocker.start()
    time.sleep(0.1)
    assert tier.get_many([entry.key]) == [None]
    blocker.join()
    assert tier.stats().tier("redis").errors == 1
    wait_until_healthy(tier)
    assert same(tier.get_many([entry.key])[0], entry)


def test_restart_during_requests(redis_server: RedisServer) -> None:
    tier = fast_tier(redis_server)
    entry = make_entry(1, tokens=256, dim=64)
    tier.put_many([entry])
    stop = threading.Event()
    failures: list[BaseException] = []
    results: list[bool] = []

    def read_loop() -> None:
        try:
            while not stop.is_set():
                got = tier.get_many([entry.key])[0]
                assert got is None or same(got, entry)
                results.append(got is not None)
        except BaseException as exc:
            failures.append(exc)

    reader = threading.Thread(target=read_loop)
    reader.start()
    time.sleep(0.2)
    redis_server.restart()
    wait_until_healthy(tier)
    tier.put_many([entry])
    time.sleep(0.2)
    stop.set()
    reader.join()
    assert not failures
    assert results[0] and results[-1] and not all(results)
    assert tier.stats().tier("redis").errors >= 1


def _hammer(url: str, key: str, blob: bytes, rounds: int) -> None:
    tier = RedisTier(url, part_bytes=4096, timeout_s=15.0)
    for _ in range(rounds):
        tier.write_blobs([(key, blob, 1.0)])
    assert tier.stats().tier("redis").errors == 0


def _variant(base: ChunkEntry, fill: float) -> ChunkEntry:
    k = torch.full_like(base.k, fill)
    return ChunkEntry(base.key, k, k.clone(), base.meta)


def test_two_processes_writing_one_key(redis_server: RedisServer) -> None:
    base = make_entry(1, tokens=128, dim=64)
    one, two = _variant(base, 1.0), _variant(base, 2.0)
    blobs = [bytes(encode(e)) for e in (one, two)]
    writers = [FORK.Process(target=_hammer, args=(redis_server.url, base.key, b, 40)) for b in blobs]
    for w in writers:
        w.start()
    # Generous timeouts: on a loaded machine a 2 s read can time out and degrade to a miss.
    reader = RedisTier(redis_server.url, part_bytes=4096, timeout_s=15.0)
    seen: set[float] = set()
    while any(w.is_alive() for w in writers) or not seen:
        blob = reader.read_blobs([base.key])[0]
        if blob is not None:
            entry = decode(blob, expected_key=base.key)  # raises if parts of two writes mixed
            assert same(entry, one) or same(entry, two)
            seen.add(float(entry.k[0, 0, 0, 0]))
    for w in writers:
        w.join(30)
        assert w.exitcode == 0
    assert reader.stats().tier("redis").errors == 0
    client = redis.Redis.from_url(redis_server.url)
    final = reader.get_many([base.key])[0]
    assert final is not None
    assert len(client.keys("rbkv:*")) == 1 + -(-len(encode(final)) // 4096)  # no orphaned parts
