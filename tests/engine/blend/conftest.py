from __future__ import annotations

import pytest

from engine.prompt import Prompt
from engine.torch_engine import TorchEngine
from tests.texts import rag_docs


@pytest.fixture(scope="session")
def rag_prompt(engine: TorchEngine) -> Prompt:
    """A multi-passage prompt, short enough for quick tests (4 passages cut to 90 words)."""
    question, docs = rag_docs(3, 4, 90)
    return engine.build_prompt(question, docs, None)
