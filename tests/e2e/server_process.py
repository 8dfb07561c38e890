"""Starting a real `ragblend serve` process on a free loopback port for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    base: str
    proc: subprocess.Popen[bytes]


@contextmanager
def running_server(
    env_overrides: dict[str, str], log_path: Path, ready_timeout: float = 180
) -> Iterator[str]:
    with server_process(env_overrides, log_path, ready_timeout) as server:
        yield server.base


@contextmanager
def server_process(
    env_overrides: dict[str, str], log_path: Path, ready_timeout: float = 180
) -> Iterator[ServerProcess]:
    """Like running_server, with the process at hand (a test may kill it; stopping a dead one is fine)."""
    port = free_port()
    env = {**os.environ, "RAGBLEND_PORT": str(port), "RAGBLEND_HOST": "127.0.0.1", **env_overrides}
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited early:\n{log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"server not ready in {ready_timeout} s:\n{log_path.read_text()[-3000:]}"
                    )
                time.sleep(0.3)
            yield ServerProcess(base, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, url, timeout=60, **kwargs)


def wait_for_job(base: str, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll an ingestion job through `base` until it succeeds or fails."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = call("GET", f"{base}/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still running: {job}")
