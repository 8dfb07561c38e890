"""PDF through PDFium (pypdfium2): the text layer page by page, each page's start offset kept.

A page without a text layer (a scan) is rendered and read by OCR when tesseract is installed and
OCR is on; a PDF with no text at all and no OCR fails with "no text layer". Encrypted files (that
need a password to open), damaged files and files over the page limit fail with a message naming
the file.
"""

from __future__ import annotations

import threading
from typing import Any

import pypdfium2 as pdfium

from retrieval.errors import InvalidDocument
from retrieval.extract import ocr
from retrieval.extract.base import Extracted, ExtractLimits, clean, join_pages

OCR_DPI = 300
# PDFium is not thread-safe: one call into it at a time in this process (uploads are read on the
# server's thread pool, so two PDFs can arrive together)
_PDFIUM = threading.Lock()


def _open(name: str, data: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        reason = str(exc)
        if "password" in reason.lower() or "security" in reason.lower():
            raise InvalidDocument(f"file {name!r} is an encrypted PDF (it needs a password)", 422) from None
        raise InvalidDocument(f"file {name!r} is not a readable PDF ({reason})", 422) from None


def _page_text(pdf: pdfium.PdfDocument, i: int) -> str:
    page = pdf[i]
    try:
        textpage = page.get_textpage()
        try:
            return clean(textpage.get_text_bounded()).strip()
        finally:
            textpage.close()
    finally:
        page.close()


def _render(pdf: pdfium.PdfDocument, i: int) -> Any:
    page = pdf[i]
    try:
        return page.render(scale=OCR_DPI / 72, grayscale=True).to_pil()
    finally:
        page.close()


def _read(name: str, data: bytes, limits: ExtractLimits) -> tuple[list[str], dict[int, Any]]:
    """Each page's text layer, and an image of each page without one that OCR should read."""
    pdf = _open(name, data)
    try:
        n = len(pdf)
        if n == 0:
            raise InvalidDocument(f"file {name!r} is a PDF without pages", 422)
        if n > limits.max_pages:
            raise InvalidDocument(f"file {name!r}: {n} pages, the limit is {limits.max_pages}", 413)
        try:
            pages = [_page_text(pdf, i) for i in range(n)]
        except pdfium.PdfiumError as exc:
            raise InvalidDocument(f"file {name!r} is a damaged PDF ({exc})", 422) from None
        blank = [i for i, text in enumerate(pages) if not text]
        if blank and limits.ocr and ocr.available():
            if len(blank) > limits.max_ocr_pages:
                raise InvalidDocument(
                    f"file {name!r}: {len(blank)} pages without a text layer need OCR, the limit is "
                    f"{limits.max_ocr_pages}",
                    413,
                )
            return pages, {i: _render(pdf, i) for i in blank}
        if len(blank) == n:
            how = "install tesseract-ocr to read it by OCR" if limits.ocr else "OCR is off"
            raise InvalidDocument(f"file {name!r}: no text layer (a scanned PDF?); {how}", 422)
        return pages, {}
    finally:
        pdf.close()


def extract_pdf(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    with _PDFIUM:
        pages, scans = _read(name, data, limits)
    for i, image in scans.items():  # outside the lock: OCR is a process of its own
        pages[i] = clean(ocr.ocr_image(name, i + 1, image, limits.ocr_timeout_s)).strip()
    text, starts = join_pages(pages)
    return Extracted(text, "pdf", starts)
