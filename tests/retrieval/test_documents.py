"""What may become a document: empty, binary, oversized and unsupported input are refused by name."""

from __future__ import annotations

import codecs

import pytest

from retrieval.documents import check_text, decode_upload
from retrieval.errors import InvalidDocument


def test_check_text() -> None:
    assert check_text("a", "hello\tworld\n", 100) == "hello\tworld\n"
    cases = [("", 422, "empty"), ("  \n ", 422, "empty"), ("x" * 101, 413, "limit is 100"),
             ("bin\x00ary", 415, "binary"), ("\x01\x02\x03abc", 415, "control")]  # fmt: skip
    for text, status, words in cases:
        with pytest.raises(InvalidDocument, match=words) as err:
            check_text("notes.txt", text, 100)
        assert err.value.status == status and "notes.txt" in err.value.message


def test_decode_upload() -> None:
    assert decode_upload("a.md", "héllo".encode(), 100) == "héllo"
    assert decode_upload("A.TXT", codecs.BOM_UTF8 + b"bom", 100) == "bom"
    assert decode_upload("u.txt", "wide".encode("utf-16"), 100) == "wide"
    for name, data, status, words in [
        ("x.pdf", b"%PDF-1.4", 415, "unsupported type '.pdf'"),
        ("noext", b"text", 415, "unsupported type"),
        ("bad.txt", b"caf\xe9 au lait", 415, "not UTF-8"),
        ("big.txt", b"a" * 500, 413, "limit"),
        ("zero.txt", b"", 422, "empty"),
    ]:
        with pytest.raises(InvalidDocument, match=words) as err:
            decode_upload(name, data, 100)
        assert err.value.status == status
