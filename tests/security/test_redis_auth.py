"""The shared tier behind a password, an ACL user and TLS: the store and the gateway's shared limits
honour `redis://:pw@`, `redis://user:pw@` and `rediss://` URLs against a real redis-server; a wrong
password degrades to misses (recomputation), never to a failed request."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cache import StoreConfig, TieredStore
from cache.redis_conn import RedisConnection
from server.shared_limits import SharedRateLimiter
from tests.cache.conftest import FINGERPRINT, free_port, make_entry, same

PASSWORD = "s3cret-pass"
USER, USER_PASSWORD = "ragblend", "user-pass"


def wait_up(client: redis.Redis, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            return
        except redis.AuthenticationError:
            return  # up, and refusing us: what a password does
        except redis.RedisError:
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("redis-server did not start")
            time.sleep(0.05)


def start(args: list[str], workdir: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    base = [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    return subprocess.Popen([*base, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture()
def guarded(tmp_path: Path) -> Iterator[int]:
    """A redis-server with a default-user password and an ACL user limited to key commands."""
    port = free_port()
    acl = f"user {USER} on >{USER_PASSWORD} ~* &* +@all -@admin -@dangerous"
    acl_file = tmp_path / "users.acl"
    acl_file.write_text(f"user default on >{PASSWORD} ~* &* +@all\n{acl}\n")
    proc = start(["--port", str(port), "--aclfile", str(acl_file)], tmp_path)
    wait_up(redis.Redis(port=port, socket_timeout=1), proc)
    yield port
    proc.kill()
    proc.wait()


def store(url: str, disk: Path | None = None) -> TieredStore:
    return TieredStore(
        StoreConfig(
            memory_bytes=0,
            redis_url=url,
            redis_part_bytes=4096,  # large entries in parts: the raw streaming reader's path too
            redis_timeout_s=2.0,
            disk_dir=None if disk is None else str(disk),
            model_fingerprint=FINGERPRINT,
            entry_secret=b"replicas share this secret",
        )
    )


@pytest.mark.parametrize("who", ["password", "acl-user"])
def test_store_round_trips_behind_a_password(guarded: int, who: str) -> None:
    url = (
        f"redis://:{PASSWORD}@127.0.0.1:{guarded}/0"
        if who == "password"
        else f"redis://{USER}:{USER_PASSWORD}@127.0.0.1:{guarded}/0"
    )
    small, big = make_entry(1), make_entry(2, tokens=64, layers=6, dim=32)
    with store(url) as writer:
        writer.put_many([small, big])
        writer.flush()
    with store(url) as reader:
        got = reader.get_many([small.key, big.key])
        assert same(got[0], small) and same(got[1], big)
        streamed = reader.get_many_layered([big.key]).entries(timeout=10)
        assert same(streamed[0], big)
    limiter = SharedRateLimiter(RedisConnection(url, timeout_s=2.0))
    assert [limiter.check("k", 2) for _ in range(3)][2] >= 1  # the count lives in Redis


def test_a_wrong_password_is_a_miss_not_an_error(guarded: int) -> None:
    entry = make_entry(3, tokens=64, layers=6, dim=32)
    with store(f"redis://:{PASSWORD}@127.0.0.1:{guarded}/0") as writer:
        writer.put_many([entry])
        writer.flush()
    raw = redis.Redis(port=guarded, password=PASSWORD)
    stored = raw.dbsize()
    assert stored >= 1
    for url in (f"redis://:wrong@127.0.0.1:{guarded}/0", f"redis://127.0.0.1:{guarded}/0"):
        with store(url) as stranger:
            assert stranger.get_many([entry.key]) == [None]
            assert stranger.get_many_layered([entry.key]).entries(timeout=10) == [None]
            stranger.put_many([make_entry(4)])  # refused by Redis, dropped quietly
            stranger.flush()
            assert stranger.stats().tier("redis").errors >= 1
    assert raw.dbsize() == stored  # the strangers wrote nothing


def tls_certificate(workdir: Path) -> tuple[Path, Path]:
    key, cert = workdir / "redis.key", workdir / "redis.crt"
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


def test_store_over_tls_with_a_password(tmp_path: Path) -> None:
    key, cert = tls_certificate(tmp_path)
    port = free_port()
    tls = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    tls += ["--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no", "--requirepass", PASSWORD]
    proc = start(tls, tmp_path)
    try:
        probe = redis.Redis(
            host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(cert), password=PASSWORD, socket_timeout=1
        )
        wait_up(probe, proc)
        assert probe.ping()
        url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={cert}"
        big = make_entry(5, tokens=64, layers=6, dim=32)
        with store(url) as writer:
            writer.put_many([big])
            writer.flush()
        with store(url) as reader:
            assert same(reader.get_many([big.key])[0], big)
            assert same(reader.get_many_layered([big.key]).entries(timeout=10)[0], big)
        # plain TCP to a TLS port, or TLS without trusting the certificate: misses, never errors
        for wrong in (f"redis://:{PASSWORD}@127.0.0.1:{port}/0", f"rediss://:{PASSWORD}@127.0.0.1:{port}/0"):
            with store(wrong) as stranger:
                assert stranger.get_many([big.key]) == [None]
    finally:
        proc.kill()
        proc.wait()
