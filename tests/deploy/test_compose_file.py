"""docker-compose.yml passes the Compose Specification schema and sets up what the README says."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import jsonschema
import pytest

from server.settings import Settings
from tests.deploy.compose_env import (
    COMPOSE_FILE,
    DOCKER,
    interpolate,
    load_compose,
    service_command,
    service_environment,
)


def compose_schema() -> dict[str, Any]:
    """The Compose Specification schema as check-jsonschema vendors it (no network needed)."""
    text = (
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    return dict(json.loads(text))


def validate(doc: dict[str, Any]) -> None:
    schema = compose_schema()
    jsonschema.validators.validator_for(schema)(schema).validate(doc)


def test_compose_file_passes_the_compose_schema() -> None:
    validate(load_compose())


def test_the_schema_rejects_a_broken_compose_file() -> None:
    broken = copy.deepcopy(load_compose())
    broken["services"]["redis"]["helthcheck"] = broken["services"]["redis"].pop("healthcheck")
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET:-d}/${EMPTY:-d}/${UNSET:-d}", env) == "v/d/d"
    assert interpolate("${EMPTY-d}/${UNSET-d}/$SET/$$SET/${UNSET}", env) == "/d/v/$SET/"
    assert interpolate("${UNSET:-a${SET}b}/${SET:-${UNSET:-x}}/${UNSET:-${UNSET:-x}}", env) == "avb/v/x"


def test_redis_is_a_cache_without_persistence() -> None:
    redis = load_compose()["services"]["redis"]
    command = service_command(redis, {})
    assert command[0] == "redis-server"
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--appendonly") + 1] == "no"
    assert command[command.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert command[command.index("--maxmemory") + 1] == "2gb"
    assert service_command(redis, {"REDIS_MAXMEMORY": "512mb"})[command.index("--maxmemory") + 1] == "512mb"
    assert redis["healthcheck"]["test"][:2] == ["CMD", "redis-cli"]
    assert "volumes" not in redis, "nothing to persist"


@pytest.mark.parametrize(
    ("name", "dockerfile", "engine"),
    [("gateway", "Dockerfile.cpu", "torch"), ("gateway-gpu", "Dockerfile.cuda", "vllm")],
)
def test_gateways(name: str, dockerfile: str, engine: str) -> None:
    compose = load_compose()
    service = compose["services"][name]
    # the context is relative to the compose file, the Dockerfile to the context
    build = service["build"]
    assert (COMPOSE_FILE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKER / dockerfile
    env = service_environment(service, {})
    assert env["RAGBLEND_ENGINE"] == engine
    # the compose service, by its name, with the password it requires
    assert env["RAGBLEND_REDIS_URL"] == "redis://:ragblend@redis:6379/0"
    assert service_environment(service, {"REDIS_PASSWORD": "pw"})["RAGBLEND_REDIS_URL"] == (
        "redis://:pw@redis:6379/0"
    )
    assert env["RAGBLEND_DATA_DIR"] == "/data" and env["RAGBLEND_HOST"] == "0.0.0.0"
    fields = {f"RAGBLEND_{n.upper()}" for n in Settings.model_fields}
    assert set(env) <= fields
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    (port,) = service["ports"]
    assert interpolate(port, {}).split(":")[-1] == env["RAGBLEND_PORT"]
    targets = {}
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        assert source in compose["volumes"], f"{source} is not a declared volume"
        targets[target] = source
    assert {"/data/kv", "/data/collections", "/models"} <= targets.keys()
    assert service["env_file"] == [{"path": ".env", "required": False}]


def test_plain_up_starts_the_cpu_gateway_and_the_gpu_one_needs_its_profile() -> None:
    services = load_compose()["services"]
    assert "profiles" not in services["gateway"] and "profiles" not in services["redis"]
    gpu = services["gateway-gpu"]
    assert gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    gpu_port = interpolate(gpu["ports"][0], {}).split(":")[-2]
    cpu_port = interpolate(services["gateway"]["ports"][0], {}).split(":")[-2]
    assert gpu_port != cpu_port, "both gateways can run side by side"
    # separate collections: each process opens its collections once and would not see the other's
    gpu_sources = {v.split(":")[0] for v in gpu["volumes"]}
    cpu_sources = {v.split(":")[0] for v in services["gateway"]["volumes"]}
    assert not ({"collections", "kv-disk"} & gpu_sources & cpu_sources)


@pytest.mark.parametrize("name", ["gateway", "gateway-gpu"])
def test_gateways_are_published_on_loopback_unless_told_otherwise(name: str) -> None:
    (port,) = load_compose()["services"][name]["ports"]
    host, _, container = interpolate(port, {}).split(":")
    assert host == "127.0.0.1" and container == "8000"
    assert interpolate(port, {"GATEWAY_BIND": "0.0.0.0"}).split(":")[0] == "0.0.0.0"


def test_redis_requires_the_password_the_gateways_send() -> None:
    services = load_compose()["services"]
    env = {"REDIS_PASSWORD": "pw-from-env"}
    command = service_command(services["redis"], env)
    assert command[command.index("--requirepass") + 1] == "pw-from-env"
    check = [interpolate(arg, env) for arg in services["redis"]["healthcheck"]["test"]]
    assert check[check.index("-a") + 1] == "pw-from-env"
    assert "ports" not in services["redis"], "Redis is reached on the stack's network only"
    for name in ("gateway", "gateway-gpu"):
        url = service_environment(services[name], env)["RAGBLEND_REDIS_URL"]
        assert url == "redis://:pw-from-env@redis:6379/0"
