"""Loading safetensors checkpoints of Llama-family models and fingerprinting them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import safe_open


def checkpoint_files(model_dir: Path) -> list[Path]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {model_dir}")
    return files


def load_state_dict(
    model_dir: Path, dtype: torch.dtype, device: torch.device | None = None
) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint on `device` (the CPU by default), cast to `dtype`, with any
    leading `model.` prefix removed. On a GPU each tensor is read straight onto it."""
    tensors: dict[str, torch.Tensor] = {}
    where = str(device) if device is not None and device.type != "cpu" else "cpu"
    for path in checkpoint_files(model_dir):
        with safe_open(str(path), framework="pt", device=where) as f:
            for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                key = name.removeprefix("model.")
                tensors[key] = f.get_tensor(name).to(dtype).contiguous()
    return tensors


def model_fingerprint(model_dir: Path) -> str:
    """A short, stable id of the weights: config plus size and edges of every weight file.

    Hashing whole multi-GB files at every start would be slow; changing weights changes their bytes at
    the start (header with offsets) or the end of the file in practice, and config changes are caught too.
    """
    h = hashlib.blake2b(digest_size=12)
    h.update((model_dir / "config.json").read_bytes())
    for path in checkpoint_files(model_dir):
        size = path.stat().st_size
        h.update(f"{path.name}:{size}".encode())
        with path.open("rb") as f:
            h.update(f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            h.update(f.read(1 << 20))
    return h.hexdigest()
