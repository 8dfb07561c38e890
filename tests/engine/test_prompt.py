from __future__ import annotations

import itertools

from engine.prompt import PromptBuilder
from engine.torch_engine import TorchEngine


def test_pieces_are_tokenized_separately_and_concatenated(engine: TorchEngine) -> None:
    builder = PromptBuilder(engine.tokenizer)
    docs = ["First document about rivers.", "Second document, about mountains."]
    prompt = builder.build("Which river?", docs, system="Be terse.")
    kinds = [p.kind for p in prompt.pieces]
    assert kinds == ["prefix", "document", "document", "query"]
    assert prompt.ids == [t for p in prompt.pieces for t in p.ids]
    assert len(prompt) == len(prompt.ids)
    assert "Be terse." in prompt.pieces[0].text
    spans = prompt.spans()
    assert spans[0][1] == 0 and spans[-1][2] == len(prompt)
    for (_, _, end), (_, start, _) in itertools.pairwise(spans):
        assert end == start


def test_document_tokens_do_not_depend_on_position(engine: TorchEngine) -> None:
    builder = PromptBuilder(engine.tokenizer)
    a = builder.build("q?", ["alpha text", "beta text"])
    b = builder.build("q?", ["beta text", "alpha text", "gamma"])
    assert a.pieces[1].ids == b.pieces[2].ids
    assert a.pieces[2].ids == b.pieces[1].ids


def test_prompt_follows_the_chat_template(engine: TorchEngine) -> None:
    builder = PromptBuilder(engine.tokenizer)
    prompt = builder.build("What is 2+2?", None, system="S")
    rendered = engine.tokenizer.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "What is 2+2?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert engine.tokenizer.decode(prompt.ids) == rendered
