"""Chat prompts from messages: the same pieces as single-question prompts where they overlap."""

from __future__ import annotations

import pytest

from engine.chat_prompt import ChatMessage, ChatPromptError, chat_builder_for, raw_prompt
from engine.torch_engine import TorchEngine

DOCS = ["Paris is the capital of France.", "Rome is the capital of Italy."]


def test_one_user_message_matches_the_question_prompt(engine: TorchEngine) -> None:
    chat = chat_builder_for(engine.prompts)
    for docs in (None, DOCS):
        built = chat.build([ChatMessage("user", "What is the capital of France?")], docs)
        assert built.ids == engine.build_prompt("What is the capital of France?", docs, None).ids


def test_documents_are_their_own_pieces_with_shared_tokens(engine: TorchEngine) -> None:
    messages = [
        ChatMessage("system", "Be terse."),
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello."),
        ChatMessage("user", "Capital of Italy?"),
    ]
    prompt = chat_builder_for(engine.prompts).build(messages, DOCS)
    kinds = [p.kind for p in prompt.pieces]
    assert kinds == ["prefix", "document", "document", "query"]
    assert [p.ids for p in prompt.pieces[1:3]] == [engine.prompts.document(d).ids for d in DOCS]
    head = prompt.pieces[0].text
    assert "Be terse." in head and "Hello." in head and "Capital of Italy?" not in head
    assert prompt.pieces[-1].text.startswith("Question: Capital of Italy?")


def test_conversation_must_end_with_a_user_message(engine: TorchEngine) -> None:
    chat = chat_builder_for(engine.prompts)
    with pytest.raises(ChatPromptError, match="last message"):
        chat.build([ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello")])
    with pytest.raises(ChatPromptError, match="at least one"):
        chat.build([])


def test_raw_prompt_is_the_plain_encoding(engine: TorchEngine) -> None:
    prompt = raw_prompt(engine.prompts, "Once upon a time")
    assert prompt.ids == engine.tokenizer("Once upon a time", add_special_tokens=True).input_ids
    with pytest.raises(ChatPromptError):
        raw_prompt(engine.prompts, "")
