"""Fixtures for the chunk-KV store tests: a real redis-server per test, small entries."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import torch

from cache.entry import ChunkEntry, ChunkMeta
from cache.keys import chunk_key

FINGERPRINT = "test-model-v1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server process on a free port that a test may stop, restart or freeze."""

    def __init__(self, workdir: Path, cluster: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.cluster = cluster
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.cluster:
            return f"redis+cluster://127.0.0.1:{self.port}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--enable-debug-command",
            "local",
        ]
        if self.cluster:
            # The default bus port (port + 10000) may not exist for a high free port.
            args += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-port",
                str(free_port()),
            ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    pytest.fail(f"redis-server did not start on port {self.port}")
                time.sleep(0.02)
        if self.cluster:
            if b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                if time.monotonic() > deadline:
                    pytest.fail("single-node cluster did not become ok")
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.resume()
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server; fails (never skips) when redis-server is missing."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisServer]:
    """A real one-node Redis Cluster owning all 16384 slots."""
    server = RedisServer(tmp_path, cluster=True)
    server.start()
    yield server
    server.stop()


def make_entry(
    seed: int,
    tokens: int = 8,
    layers: int = 2,
    heads: int = 2,
    dim: int = 4,
    dtype: torch.dtype = torch.bfloat16,
    salt: str = "tenant-a",
    fingerprint: str = FINGERPRINT,
) -> ChunkEntry:
    """A small deterministic entry whose key is made by ``chunk_key``."""
    name = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}[dtype]
    gen = torch.Generator().manual_seed(seed)
    shape = (layers, heads, tokens, dim)
    k = torch.randn(shape, generator=gen).to(dtype)
    v = torch.randn(shape, generator=gen).to(dtype)
    token_ids = [(seed * 7919 + i) % 49152 for i in range(tokens)]
    meta = ChunkMeta(
        token_count=tokens,
        dtype=name,
        model_fingerprint=fingerprint,
        prefix_id="sys-v1",
        num_layers=layers,
        num_kv_heads=heads,
        head_dim=dim,
        craft={"attn_mass": 0.5, "per_layer": [0.1] * layers},
        extra={"doc": f"d{seed}"},
    )
    return ChunkEntry(chunk_key(fingerprint, "sys-v1", token_ids, salt, name), k, v, meta)


def same(a: ChunkEntry | None, b: ChunkEntry) -> bool:
    """Whether ``a`` is an entry equal to ``b`` (key, metadata and tensors)."""
    return (
        a is not None
        and a.key == b.key
        and a.meta == b.meta
        and torch.equal(a.k, b.k)
        and torch.equal(a.v, b.v)
    )
