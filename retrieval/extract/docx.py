"""DOCX (Word): paragraphs and tables in document order through python-docx; a table row becomes one
line of its cells separated by " | "."""

from __future__ import annotations

import io
import zipfile

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from retrieval.errors import InvalidDocument
from retrieval.extract.base import Extracted, ExtractLimits


def _lines(document: docx.document.Document) -> list[str]:
    lines: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            lines.append(block.text)
        elif isinstance(block, Table):
            for row in block.rows:
                cells = [c.text.strip() for c in row.cells]
                lines.append(" | ".join(c for i, c in enumerate(cells) if c and c not in cells[:i]))
    return lines


def extract_docx(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    try:
        document = docx.Document(io.BytesIO(data))
        lines = _lines(document)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise InvalidDocument(f"file {name!r} is not a readable DOCX file: {exc}", 422) from None
    except Exception as exc:  # lxml and python-docx raise many kinds on damaged parts
        raise InvalidDocument(f"file {name!r} is a damaged DOCX file ({type(exc).__name__})", 422) from None
    text = "\n".join(line.strip() for line in lines if line.strip())
    return Extracted(text, "docx")
