"""Redis over TLS only (rediss://): the compose override and the kustomize overlay wire the same
certificates into Redis and the CA into the gateways, and a Redis started as the override says, with
certificates made by deploy/redis-tls-certs.sh, serves the store by the gateways' URL alone."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from server.settings import Settings
from tests.cache.conftest import free_port, make_entry, same
from tests.deploy.compose_env import DOCKER, ROOT, service_command, service_environment
from tests.deploy.kustomize_build import DEPLOY, build, find, gateway_container, load_docs
from tests.security.test_redis_auth import store, wait_up

TLS_COMPOSE = DOCKER / "docker-compose.tls.yml"
OVERLAY = DEPLOY / "overlays" / "redis-tls"
ENV = {"REDIS_PASSWORD": "tls-pass"}


def flag(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} given {args.count(name)} times"
    return args[args.index(name) + 1]


def tls_override() -> dict[str, Any]:
    doc = yaml.safe_load(TLS_COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of a compose service's bind mounts."""
    out = {}
    for spec in service.get("volumes", []):
        host, target, *_ = str(spec).split(":")
        out[target] = host
    return out


def test_compose_override_serves_tls_only_and_the_gateways_trust_its_ca() -> None:
    services = tls_override()["services"]
    command = service_command(services["redis"], ENV)
    assert command[0] == "redis-server"
    assert flag(command, "--port") == "0" and flag(command, "--tls-port") == "6379"
    assert flag(command, "--requirepass") == "tls-pass"
    tls_dir = mounts(services["redis"])
    assert tls_dir == {"/tls": "./redis-tls"}
    for name in ("--tls-cert-file", "--tls-key-file", "--tls-ca-cert-file"):
        assert flag(command, name).startswith("/tls/")
    health = [str(a) for a in services["redis"]["healthcheck"]["test"]]
    assert "--tls" in health and flag(health, "--cacert") == flag(command, "--tls-ca-cert-file")
    for gw in ("gateway", "gateway-gpu"):
        url = service_environment(services[gw], ENV)["RAGBLEND_REDIS_URL"]
        m = re.fullmatch(r"rediss://:([^@]+)@redis:6379/0\?ssl_ca_certs=(\S+)", url)
        assert m and m.group(1) == "tls-pass"
        ca = m.group(2)
        assert mounts(services[gw]) == {ca: "./redis-tls/ca.crt"}
        assert Settings(redis_url=url).redis_url == url
    assert "docker/redis-tls/" in (ROOT / ".gitignore").read_text().splitlines()  # keys stay out of git


def test_overlay_mounts_the_certificates_and_points_the_url_at_the_ca() -> None:
    docs = build(OVERLAY)
    sts = find(docs, "StatefulSet", "ragblend-redis")
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert flag(args, "--port") == "0" and flag(args, "--tls-port") == "6379"
    assert flag(args, "--requirepass") == "$(REDIS_PASSWORD)"
    assert flag(args, "--maxmemory-policy") == "allkeys-lru"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = {m["name"]: m for m in container["volumeMounts"]}["tls"]
    assert volumes["tls"]["secret"]["secretName"] == "ragblend-redis-tls" and mount["readOnly"]
    for name in ("--tls-cert-file", "--tls-key-file", "--tls-ca-cert-file"):
        assert Path(flag(args, name)).parent == Path(mount["mountPath"])
    probe = container["readinessProbe"]["exec"]["command"]
    assert "--tls" in probe and flag(probe, "--cacert") == flag(args, "--tls-ca-cert-file")
    assert {m["name"] for m in container["volumeMounts"]} >= {"scratch", "tls"}  # the base's stay

    gateway = gateway_container(docs)
    deployment = find(docs, "Deployment", "ragblend-gateway")
    gw_volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    ca_volume = gw_volumes["redis-ca"]["secret"]
    assert ca_volume["secretName"] == "ragblend-redis-tls"
    assert ca_volume["items"] == [{"key": "ca.crt", "path": "ca.crt"}]  # never the server's key
    ca_dir = {m["name"]: m for m in gateway["volumeMounts"]}["redis-ca"]["mountPath"]

    tls_secret, redis_secret = load_docs(OVERLAY / "redis-tls-secret.example.yaml")
    assert tls_secret["metadata"]["name"] == "ragblend-redis-tls"
    assert set(tls_secret["stringData"]) == {"ca.crt", "tls.crt", "tls.key"}
    data = redis_secret["stringData"]
    m = re.fullmatch(r"rediss://:([^@]+)@([^:/]+):(\d+)/0\?ssl_ca_certs=(\S+)", data["RAGBLEND_REDIS_URL"])
    assert m and m.group(1) == data["REDIS_PASSWORD"]
    assert m.group(2) == find(docs, "Service", "ragblend-redis")["metadata"]["name"]
    assert m.group(3) == flag(args, "--tls-port")
    assert m.group(4) == f"{ca_dir}/ca.crt"
    ref = {e["name"]: e for e in gateway["env"]}["RAGBLEND_REDIS_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": redis_secret["metadata"]["name"], "key": "RAGBLEND_REDIS_URL"}
    assert "redis-tls" not in str(yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())["resources"])


def test_a_redis_run_as_the_override_says_serves_the_store_over_tls(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    subprocess.run(["sh", str(DEPLOY / "redis-tls-certs.sh"), str(certs)], check=True, capture_output=True)
    assert {p.name for p in certs.iterdir()} == {"ca.crt", "tls.crt", "tls.key"}  # the CA key is not kept
    services = tls_override()["services"]
    port = free_port()
    command = [a.replace("/tls/", f"{certs}/") for a in service_command(services["redis"], ENV)]
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    args = [binary, *command[1:], "--tls-port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        probe = redis.Redis(
            host="localhost", port=port, ssl=True, ssl_ca_certs=str(certs / "ca.crt"), password="tls-pass"
        )
        wait_up(probe, proc)
        # the compose healthcheck passes against it
        health = [str(a) for a in services["redis"]["healthcheck"]["test"]][1:]
        health = [
            a.replace("/tls/", f"{certs}/").replace("${REDIS_PASSWORD:-ragblend}", "tls-pass") for a in health
        ]
        cli = shutil.which("redis-cli")
        assert cli is not None
        done = subprocess.run(
            [cli, "-h", "localhost", "-p", str(port), *health[1:]], capture_output=True, text=True
        )
        assert done.stdout.strip() == "PONG", done.stderr
        url = service_environment(services["gateway"], ENV)["RAGBLEND_REDIS_URL"]
        url = url.replace("@redis:6379", f"@localhost:{port}").replace("/tls/", f"{certs}/")
        entry = make_entry(11, tokens=64, layers=6, dim=32)
        with store(url) as writer:
            writer.put_many([entry])
            writer.flush()
        with store(url) as reader:
            assert same(reader.get_many([entry.key])[0], entry)
        # plain TCP to the TLS port, or TLS without the CA: misses, never errors
        plain = url.replace("rediss://", "redis://").split("?")[0]
        for wrong in (plain, url.split("?")[0]):
            with store(wrong) as stranger:
                assert stranger.get_many([entry.key]) == [None]
    finally:
        proc.kill()
        proc.wait()
