"""The "auto" dtype is chosen once per machine and data dir, so chunk-cache keys stay stable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import dtype_probe
from engine.dtype_probe import remembered_dtype


def test_the_first_choice_is_stored_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dtype-choice.json"
    answers = iter(["bfloat16", "float32"])
    monkeypatch.setattr(dtype_probe, "fastest_dtype", lambda: next(answers))
    assert remembered_dtype("auto", path) == "bfloat16"
    assert remembered_dtype("auto", path) == "bfloat16"  # a second probe would have said float32
    assert json.loads(path.read_text())["dtype"] == "bfloat16"
    assert remembered_dtype("float32", path) == "float32"  # an explicit dtype is never overridden


def test_another_machine_or_a_broken_file_probes_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "dtype-choice.json"
    monkeypatch.setattr(dtype_probe, "fastest_dtype", lambda: "float32")
    path.write_text(json.dumps({"signature": "another cpu", "dtype": "bfloat16"}))
    assert remembered_dtype("auto", path) == "float32"
    path.write_text("{not json")
    assert remembered_dtype("auto", path) == "float32"
    assert json.loads(path.read_text())["dtype"] == "float32"
