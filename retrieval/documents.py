"""Checking what may become a document: text only, not empty, not too large, of a supported kind."""

from __future__ import annotations

import codecs
import unicodedata
from pathlib import PurePath

from retrieval.errors import InvalidDocument

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text")
# share of control characters (other than tab, newline, carriage return, form feed) that marks
# text as binary data decoded by accident
_MAX_CONTROL_SHARE = 0.01


def check_text(name: str, text: str, max_chars: int) -> str:
    """`text` if it can be a document; raises InvalidDocument (naming `name`) otherwise."""
    if len(text) > max_chars:
        raise InvalidDocument(f"document {name!r}: {len(text)} characters, the limit is {max_chars}", 413)
    if not text.strip():
        raise InvalidDocument(f"document {name!r} is empty")
    if "\x00" in text:
        raise InvalidDocument(f"document {name!r} looks binary (it contains NUL characters)", 415)
    sample = text[:100_000]
    controls = sum(1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f")
    if controls > _MAX_CONTROL_SHARE * len(sample):
        raise InvalidDocument(f"document {name!r} looks binary ({controls} control characters)", 415)
    return text


def decode_upload(filename: str, data: bytes, max_chars: int) -> str:
    """The text of an uploaded .txt/.md file (UTF-8, with or without BOM; UTF-16 with a BOM)."""
    suffix = PurePath(filename).suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        kinds = ", ".join(TEXT_SUFFIXES)
        raise InvalidDocument(f"file {filename!r}: unsupported type {suffix or '(none)'!r}; use {kinds}", 415)
    if len(data) > 4 * max_chars:  # no UTF-8 text of max_chars characters is longer than this
        raise InvalidDocument(f"file {filename!r}: {len(data)} bytes is over the document size limit", 413)
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidDocument(f"file {filename!r} is not UTF-8 text (byte {exc.start})", 415) from None
    return check_text(filename, text, max_chars)
