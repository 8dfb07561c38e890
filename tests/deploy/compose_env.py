"""Reading what a container would get: compose interpolation, compose environments, and the ENV of
a Dockerfile's final stage. Docker cannot run here, so tests replay these values natively."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"

# A default may hold one nested ${...} (compose interpolates defaults too).
_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?-)(?P<default>(?:[^${}]|\$\{[^}]*\})*))?\}"
    r"|\$(?P<bare>[A-Za-z_]\w*)"
)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` (unset or empty), `${NAME-default}` (unset), `$$`."""

    def value(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        found = env.get(name)
        if m.group("op") == ":-" and not found:
            return interpolate(m.group("default"), env)
        if m.group("op") == "-" and found is None:
            return interpolate(m.group("default"), env)
        return found or ""

    return _VARIABLE.sub(value, text)


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def service_command(service: dict[str, Any], env: dict[str, str]) -> list[str]:
    command = service["command"]
    assert isinstance(command, list), "commands are lists, so no shell re-splits arguments"
    return [interpolate(str(arg), env) for arg in command]


def service_environment(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    """The service's `environment:` (mapping or list form), interpolated."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: interpolate(str(v), env) for k, v in raw.items()}


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage(path: Path) -> list[tuple[str, str]]:
    instructions = dockerfile_instructions(path)
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def image_env(path: Path) -> dict[str, str]:
    """ENV of the final stage (`K=V` pairs); PATH is left out, it names the image's own venv."""
    env: dict[str, str] = {}
    for word, args in final_stage(path):
        if word == "ENV":
            for pair in shlex.split(args):
                key, _, val = pair.partition("=")
                env[key] = val
    env.pop("PATH", None)
    return env
