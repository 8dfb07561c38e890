"""Turning an uploaded file into a document's text: the format is detected from the content
(detect.py), then the format's extractor (one module each, in the registry below) reads it."""

from __future__ import annotations

from retrieval.documents import check_text
from retrieval.errors import InvalidDocument
from retrieval.extract.base import Extracted, ExtractLimits, Extractor
from retrieval.extract.csv_rows import extract_csv
from retrieval.extract.detect import detect
from retrieval.extract.docx import extract_docx
from retrieval.extract.html import extract_html
from retrieval.extract.pdf import extract_pdf
from retrieval.extract.text import extract_markdown, extract_text

EXTRACTORS: dict[str, Extractor] = {
    "text": extract_text,
    "markdown": extract_markdown,
    "csv": extract_csv,
    "html": extract_html,
    "docx": extract_docx,
    "pdf": extract_pdf,
}

__all__ = ["EXTRACTORS", "ExtractLimits", "Extracted", "extract_file"]


def extract_file(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    """The text of file `name` (and its page starts for a PDF); InvalidDocument naming the file when
    it cannot be read. The text is checked like any document's (documents.check_text)."""
    if len(data) > limits.max_bytes:
        raise InvalidDocument(f"file {name!r}: {len(data)} bytes, the limit is {limits.max_bytes}", 413)
    extracted = EXTRACTORS[detect(name, data)](name, data, limits)
    check_text(name, extracted.text, limits.max_chars)
    return extracted
