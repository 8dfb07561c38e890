"""docker/.env.example documents every setting, each with its real default, and nothing else."""

from __future__ import annotations

import re

import pytest

from server.settings import Settings
from tests.deploy.compose_env import COMPOSE_FILE, DOCKER

ENV_EXAMPLE = DOCKER / ".env.example"
_ENTRY = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")
# Values the example shows as compose sets them, not as the server defaults them.
COMPOSE_VALUES = {"host", "data_dir", "model", "redis_url"}


def documented() -> dict[str, str]:
    entries = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = _ENTRY.match(line.strip())
        if m:
            assert m.group(1) not in entries, f"{m.group(1)} is documented twice"
            entries[m.group(1)] = m.group(2)
    return entries


def setting_env_names() -> dict[str, str]:
    return {f"RAGBLEND_{name.upper()}": name for name in Settings.model_fields}


def test_every_setting_is_documented_and_nothing_else_is() -> None:
    names = {k for k in documented() if k.startswith("RAGBLEND_")}
    missing = sorted(setting_env_names().keys() - names)
    unknown = sorted(names - setting_env_names().keys())
    assert not missing, f"settings missing from docker/.env.example: {missing}"
    assert not unknown, f"docker/.env.example documents settings that do not exist: {unknown}"


def test_every_variable_the_compose_file_reads_is_documented() -> None:
    used = set(re.findall(r"\$\{([A-Za-z_]\w*)", COMPOSE_FILE.read_text()))
    assert used, "the compose file reads no variables?"
    assert used <= documented().keys(), sorted(used - documented().keys())


def test_documented_values_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uncommenting any line without editing it changes nothing (but for what compose sets)."""
    for key in list(setting_env_names()):
        monkeypatch.delenv(key, raising=False)
    defaults = Settings()
    names = setting_env_names()
    checked = 0
    for key, value in documented().items():
        if key not in names or value == "":
            continue
        monkeypatch.setenv(key, value)
        name = names[key]
        parsed = getattr(Settings(), name)
        monkeypatch.delenv(key)
        if name in COMPOSE_VALUES:
            continue
        assert parsed == getattr(defaults, name), (
            f"{key}={value} is not the default {getattr(defaults, name)!r}"
        )
        checked += 1
    assert checked >= 25


def test_unset_entries_are_settings_that_default_to_none() -> None:
    names = setting_env_names()
    defaults = Settings()
    for key, value in documented().items():
        if key in names and value == "":
            assert getattr(defaults, names[key]) is None, f"{key} is shown unset but has a default"
