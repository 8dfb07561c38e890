"""Sentence spans tile the text exactly, whatever the text looks like."""

from __future__ import annotations

import pytest

from retrieval.sentences import split_sentences
from retrieval.spans import Span, stitch, tile

TEXTS = [
    "Hello world.  This is Mr. Smith.\n\nNew paragraph here! And?   ",
    "   leading blanks. Then text.",
    "no punctuation at all " * 300,
    "x" * 5000,
    "Line one\r\nLine two.\r\n\r\nThird para: é, ü, 日本語のテキスト。 Emoji 🎉 here. Done",
    "\n\n\nA. B.\n\n\n",
    "single",
]


@pytest.mark.parametrize("text", TEXTS)
def test_sentences_join_back_to_the_text(text: str) -> None:
    spans = split_sentences(text, max_chars=500)
    assert "".join(s.text(text) for s in spans) == text
    assert all(len(s) > 0 and s.text(text).strip() for s in spans)
    assert all(len(s) <= 500 for s in spans)


def test_paragraph_breaks_and_sentences_are_boundaries() -> None:
    text = "First sentence here. Second one follows.\n\nA new paragraph starts"
    parts = [s.text(text) for s in split_sentences(text)]
    assert parts == ["First sentence here. ", "Second one follows.\n\n", "A new paragraph starts"]


def test_abbreviations_do_not_split() -> None:
    text = "Dr. Smith met Mr. Jones at 5 p.m. yesterday. They talked."
    assert len(split_sentences(text)) == 2


def test_empty_text_has_no_sentences() -> None:
    assert split_sentences("") == []


def test_tile_and_stitch() -> None:
    assert tile([3, 0, 3, 9, 12], 10) == [Span(0, 3), Span(3, 9), Span(9, 10)]
    assert tile([5], 10, start=4) == [Span(4, 5), Span(5, 10)]
    doc = "abcdefghij"
    assert stitch([Span(0, 6), Span(4, 10)], doc) == doc
    with pytest.raises(ValueError, match="gap"):
        stitch([Span(0, 3), Span(5, 10)], doc)
