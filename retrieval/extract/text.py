"""Plain text and Markdown: the file decoded as it is (UTF-8 with or without BOM, UTF-16 with a BOM)."""

from __future__ import annotations

import codecs

from retrieval.errors import InvalidDocument
from retrieval.extract.base import Extracted, ExtractLimits


def decode(name: str, data: bytes, limits: ExtractLimits) -> str:
    if len(data) > 4 * limits.max_chars:  # no UTF-8 text of max_chars characters is longer than this
        raise InvalidDocument(f"file {name!r}: {len(data)} bytes is over the document size limit", 413)
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidDocument(f"file {name!r} is not UTF-8 text (byte {exc.start})", 415) from None


def extract_text(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    return Extracted(decode(name, data, limits), "text")


def extract_markdown(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    return Extracted(decode(name, data, limits), "markdown")
