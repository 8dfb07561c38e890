from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.prompt import Prompt
from engine.torch_engine import TorchEngine

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "musique_dev.json"


@pytest.fixture(scope="session")
def rag_prompt(engine: TorchEngine) -> Prompt:
    """A real multi-passage prompt, short enough for quick tests (~4 passages cut to ~90 words)."""
    example = json.loads(DATA.read_text())[3]
    docs = [" ".join((c["title"] + ". " + c["text"]).split()[:90]) for c in example["ctxs"][:4]]
    return engine.build_prompt(example["question"], docs, None)
