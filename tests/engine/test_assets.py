from __future__ import annotations

from pathlib import Path

import pytest

from engine import assets


def test_embedded_model_is_reused_without_conversion(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_: object) -> None:
        raise AssertionError("must not convert again")

    monkeypatch.setattr(assets, "convert_gguf", fail)
    data_dir = model_dir.parent.parent
    assert assets.resolve_model(assets.EMBEDDED_MODEL, data_dir) == model_dir
    assert (model_dir / "config.json").is_file()
    assert "quantization_config" not in (model_dir / "config.json").read_text()


def test_failed_conversion_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    def crash(*_: object, **__: object) -> None:
        raise RuntimeError("simulated crash during conversion")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", crash)
    target = tmp_path / "models" / "m"
    with pytest.raises(RuntimeError, match="simulated crash"):
        assets.convert_gguf(assets.find_embedded_gguf(), target)
    assert not target.exists()
    assert list((tmp_path / "models").iterdir()) == []


def test_local_directory_must_hold_a_model(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        assets.resolve_model(str(tmp_path), tmp_path)
