"""RAGBLEND_DEVICE: checked when the settings are read, carried into the engine's config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from server.settings import Settings


def test_the_device_setting_reaches_the_engine_config(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGBLEND_DEVICE", "CPU")
    settings = Settings(data_dir=tmp_path, model=str(model_dir), dtype="float32")
    assert settings.device == "cpu" and settings.torch_device() == torch.device("cpu")
    assert settings.engine_config().device == "cpu"


def test_a_bad_device_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGBLEND_DEVICE", "gpu0")
    with pytest.raises(ValidationError, match="auto, cpu, cuda or cuda:N"):
        Settings(data_dir=tmp_path)


def test_a_missing_gpu_is_an_error_not_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    settings = Settings(data_dir=tmp_path, device="cuda:1")
    with pytest.raises(ValueError, match="no CUDA device"):
        settings.torch_device()
