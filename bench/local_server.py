"""A `ragblend serve` process on a free loopback port, for benchmarks that bring their own server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.common import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_server(settings_env: dict[str, str], ready_timeout_s: float = 300) -> Iterator[str]:
    """Start the server with `settings_env` (RAGBLEND_* values) over a fresh data dir; yields its URL.

    The server's log goes to a file in the temporary data dir and is printed if start-up fails.
    """
    with tempfile.TemporaryDirectory(prefix="ragblend-load-") as tmp:
        port = free_port()
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "RAGBLEND_DATA_DIR": tmp,
            **settings_env,
            "RAGBLEND_HOST": "127.0.0.1",
            "RAGBLEND_PORT": str(port),
        }
        log_path = Path(tmp) / "server.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "server.cli", "serve"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            base = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + ready_timeout_s
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"server exited:\n{log_path.read_text()[-3000:]}")
                    try:
                        if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"server not ready in {ready_timeout_s} s")
                    time.sleep(0.5)
                yield base
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
