"""RAGBLEND_DEVICE: which device the engine computes on, and the dtype 'auto' picks there."""

from __future__ import annotations

import pytest
import torch

from engine.device import check_device_name, resolve_device
from engine.dtype_probe import resolve_dtype


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", " CUDA:1 "])
def test_accepted_names(name: str) -> None:
    assert check_device_name(name) == name.strip().lower()


@pytest.mark.parametrize("name", ["", "gpu", "cuda:", "cuda:-1", "cuda:x", "mps", "cpu:0"])
def test_other_names_are_refused_naming_the_forms(name: str) -> None:
    with pytest.raises(ValueError, match="auto, cpu, cuda or cuda:N"):
        check_device_name(name)


def test_auto_and_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda", 0)


def test_a_gpu_asked_for_by_name_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never a silent fall-back to the CPU: a missing GPU, or an index past the last, is an error."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="only 2 CUDA device"):
        resolve_device("cuda:2")


def test_auto_dtype_is_bfloat16_on_a_gpu_and_explicit_dtypes_stay() -> None:
    assert resolve_dtype("auto", torch.device("cuda", 0)) == "bfloat16"
    assert resolve_dtype("float32", torch.device("cuda", 0)) == "float32"
    assert resolve_dtype("float16", torch.device("cpu")) == "float16"
