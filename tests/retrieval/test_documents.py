"""What may become a document: empty, binary and oversized texts are refused by name (files: test_extract)."""

from __future__ import annotations

import pytest

from retrieval.documents import check_text
from retrieval.errors import InvalidDocument


def test_check_text() -> None:
    assert check_text("a", "hello\tworld\n", 100) == "hello\tworld\n"
    cases = [("", 422, "empty"), ("  \n ", 422, "empty"), ("x" * 101, 413, "limit is 100"),
             ("bin\x00ary", 415, "binary"), ("\x01\x02\x03abc", 415, "control")]  # fmt: skip
    for text, status, words in cases:
        with pytest.raises(InvalidDocument, match=words) as err:
            check_text("notes.txt", text, 100)
        assert err.value.status == status and "notes.txt" in err.value.message
