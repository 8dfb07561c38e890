"""A file's format, judged by its content first (magic bytes, then sniffing), its name second.

Binary formats are recognised by their signature whatever the file is called: a PDF named `.txt` is
read as a PDF. Text is told apart by its content too (an HTML page is HTML under any name); only
among plain texts does the name decide (`.csv`/`.tsv` rows, `.md` markdown, anything else text).
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from pathlib import PurePath

from retrieval.errors import InvalidDocument

# signatures of common formats we do not read, to name them in the refusal
_KNOWN_BINARY = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\x1f\x8b": "a gzip archive",
    b"\x7fELF": "an executable",
    b"\xd0\xcf\x11\xe0": "a legacy Office (OLE) file: save it as .docx",
    b"{\\rtf": "an RTF file",
    b"7z\xbc\xaf": "a 7-zip archive",
    b"Rar!": "a RAR archive",
}
_HTML_START = re.compile(
    rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>]|head[\s>]|body[\s>])", re.I | re.S
)
_TEXT_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
SUPPORTED = "PDF, DOCX, HTML, CSV, Markdown or plain text (UTF-8)"


def _zip_kind(name: str, data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, ValueError, OSError):
        raise InvalidDocument(f"file {name!r} is a corrupt ZIP or Office file", 422) from None
    if "word/document.xml" in names:
        return "docx"
    if "xl/workbook.xml" in names:
        what = "an Excel workbook: export it as CSV"
    elif "ppt/presentation.xml" in names:
        what = "a PowerPoint file: export it as PDF"
    else:
        what = "a ZIP archive"
    raise InvalidDocument(f"file {name!r} is {what}; supported: {SUPPORTED}", 415)


def detect(name: str, data: bytes) -> str:
    """One of "pdf", "docx", "html", "csv", "markdown", "text"; InvalidDocument (415) otherwise."""
    head = data[:1024]
    if b"%PDF-" in head:
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(name, data)
    for magic, what in _KNOWN_BINARY.items():
        if head.startswith(magic):
            raise InvalidDocument(f"file {name!r} is {what}; supported: {SUPPORTED}", 415)
    sniff = head
    for bom in _TEXT_BOMS:
        if head.startswith(bom):
            sniff = head.decode("utf-16" if bom != codecs.BOM_UTF8 else "utf-8-sig", "ignore").encode()
            break
    suffix = PurePath(name).suffix.lower()
    if _HTML_START.match(sniff) or (suffix in (".html", ".htm", ".xhtml") and b"<" in sniff):
        return "html"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".md", ".markdown"):
        return "markdown"
    return "text"
