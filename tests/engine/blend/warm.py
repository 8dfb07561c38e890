"""Shared set-up for blend tests."""

from __future__ import annotations

from engine.blend.options import BlendOptions
from engine.prompt import Prompt
from engine.torch_engine import TorchEngine


def warm(engine: TorchEngine, prompt: Prompt, salt: str) -> None:
    """Store base versions of every piece, as ingestion or an earlier request would."""
    opts = BlendOptions(mode="reuse")
    result = engine.blender.prefill(prompt, opts, len(prompt) + 1, salt)
    engine.blender.write_back(prompt, result, opts, salt)
