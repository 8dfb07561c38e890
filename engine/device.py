"""Which torch device the engine computes on: RAGBLEND_DEVICE = auto | cpu | cuda | cuda:N."""

from __future__ import annotations

import re

import torch

DEVICE_HELP = "auto, cpu, cuda or cuda:N"
_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def check_device_name(name: str) -> str:
    """`name` normalised (lower case, no spaces), or ValueError naming the accepted forms."""
    value = name.strip().lower()
    if not _PATTERN.match(value):
        raise ValueError(f"device {name!r}: expected {DEVICE_HELP}")
    return value


def resolve_device(name: str | torch.device) -> torch.device:
    """The device `name` asks for. `auto` is the first GPU when torch sees one, else the CPU; a GPU
    that is asked for by name but absent (or an index past the last one) is a ValueError, never a
    silent fall-back to the CPU."""
    if isinstance(name, torch.device):
        return name
    value = check_device_name(name)
    if value == "auto":
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    if value == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: no CUDA device is visible to torch")
    index = int(value.split(":")[1]) if ":" in value else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise ValueError(f"device {name!r}: only {count} CUDA device(s) are visible")
    return torch.device("cuda", index)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """A human name for reports: the GPU's product name, or 'cpu'."""
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    return "cpu"
