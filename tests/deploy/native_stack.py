"""docker-compose's services run natively: redis-server and the gateway on loopback.

Each service runs the command and environment that compose would give its container (the image's
ENV, then the service's `environment:`), with only what a container network changes translated:
service host names become 127.0.0.1, ports become free ones, container paths become directories
of the test, and the prepared embedded model stands where the image keeps it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.deploy.compose_env import (
    DOCKER,
    image_env,
    interpolate,
    load_compose,
    service_command,
    service_environment,
)

# The CPU image converts the embedded model to this path at build time (`ragblend prepare` with
# RAGBLEND_DATA_DIR=/opt/ragblend).
IMAGE_MODEL_DIR = "/opt/ragblend/models/smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NativeStack:
    tmp: Path
    model_dir: Path
    redis_port: int = 0
    redis_password: str = ""  # what compose's redis requires (--requirepass)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[IO[str]] = field(default_factory=list)

    def start_redis(self) -> None:
        service = load_compose()["services"]["redis"]
        command = service_command(service, {})
        binary = shutil.which(command[0])
        if binary is None:
            pytest.fail(f"{command[0]} is not installed (apt-get install redis-server)")
        self.redis_port = free_port()
        self.redis_password = command[command.index("--requirepass") + 1]
        # Later options win in redis-server: a container's network becomes loopback and a free port.
        args = [binary, *command[1:], "--port", str(self.redis_port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.tmp)]
        self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.wait_redis_healthy(service["healthcheck"]["test"])

    def wait_redis_healthy(self, test: list[str]) -> None:
        """Run compose's healthcheck command (CMD form) against the native port until it passes."""
        assert test[0] == "CMD"
        cli = shutil.which(test[1])
        if cli is None:
            pytest.fail(f"{test[1]} is not installed")
        deadline = time.monotonic() + 15
        while True:
            args = [interpolate(arg, {}) for arg in test[2:]]
            done = subprocess.run([cli, "-p", str(self.redis_port), *args], capture_output=True, text=True)
            if done.returncode == 0 and "PONG" in done.stdout:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"redis healthcheck never passed: {done.stdout} {done.stderr}")
            time.sleep(0.1)

    def gateway_env(self, data_dir: Path, port: int) -> dict[str, str]:
        """The CPU gateway's container environment, translated to this machine."""
        service = load_compose()["services"]["gateway"]
        env = image_env(DOCKER / "Dockerfile.cpu")
        env.update(service_environment(service, {}))
        assert env["RAGBLEND_DATA_DIR"] == "/data" and env["RAGBLEND_MODEL"] == IMAGE_MODEL_DIR
        env["RAGBLEND_DATA_DIR"] = str(data_dir)
        env["RAGBLEND_MODEL"] = str(self.model_dir)
        assert env["RAGBLEND_HOST"] == "0.0.0.0"
        env["RAGBLEND_HOST"] = "127.0.0.1"
        env["RAGBLEND_PORT"] = str(port)
        assert env["RAGBLEND_REDIS_URL"].startswith("redis://:ragblend@redis:6379/")
        env["RAGBLEND_REDIS_URL"] = env["RAGBLEND_REDIS_URL"].replace(
            "@redis:6379", f"@127.0.0.1:{self.redis_port}"
        )
        return env

    def start_gateway(
        self, name: str, extra_env: dict[str, str] | None = None, ready_timeout_s: float = 300
    ) -> str:
        """Start one gateway replica with its own data dir (its compose volumes); returns its URL.
        `extra_env` adds settings on top of compose's, as a .env file would."""
        service = load_compose()["services"]["gateway"]
        command = service_command(service, {})
        assert command[0] == "ragblend", command
        data_dir = self.tmp / name
        for volume in service["volumes"]:
            target = volume.split(":")[1]
            if target.startswith("/data/"):
                (data_dir / target.removeprefix("/data/")).mkdir(parents=True, exist_ok=True)
        port = free_port()
        # The test's own RAGBLEND_* variables must not leak in: only what compose would set.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAGBLEND_")}
        env.update(self.gateway_env(data_dir, port))
        env.update(extra_env or {})
        log = (self.tmp / f"{name}.log").open("w")
        self.logs.append(log)
        entry = str(Path(sys.executable).parent / command[0])
        self.procs.append(
            subprocess.Popen([entry, *command[1:]], env=env, stdout=log, stderr=subprocess.STDOUT)
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if self.procs[-1].poll() is not None:
                pytest.fail(f"{name} exited:\n{(self.tmp / f'{name}.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    return base
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} not ready in {ready_timeout_s} s")
            time.sleep(0.3)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        for log in self.logs:
            log.close()
        self.logs.clear()
