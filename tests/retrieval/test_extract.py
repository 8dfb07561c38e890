"""Reading uploaded files into text (retrieval/extract): each format from a file the test builds, the
format told by content, page offsets of PDFs, OCR of scans, and the files that must fail by name."""

from __future__ import annotations

import codecs
import io
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from retrieval.errors import InvalidDocument
from retrieval.extract import ExtractLimits, extract_file
from retrieval.extract.base import join_pages
from retrieval.extract.pages import page_span
from tests.retrieval.sample_files import (
    CSV_TEXT,
    DOCX_TEXT,
    HTML_TEXT,
    NOISE,
    PDF_PAGES,
    SCAN_LINE,
    docx_bytes,
    encrypted_pdf_bytes,
    html_bytes,
    pdf_bytes,
    scanned_pdf_bytes,
)

LIMITS = ExtractLimits(max_chars=100_000)


def words(text: str) -> list[str]:
    return text.split()


def refused(name: str, data: bytes, status: int, phrase: str, limits: ExtractLimits = LIMITS) -> None:
    with pytest.raises(InvalidDocument) as err:
        extract_file(name, data, limits)
    assert err.value.status == status and name in err.value.message and phrase in err.value.message, (
        err.value.message
    )


def test_pdf_pages_and_their_offsets() -> None:
    got = extract_file("atlas.pdf", pdf_bytes(), LIMITS)
    assert got.format == "pdf" and got.pages == 3
    starts = got.page_starts or ()
    bounds = [*starts[1:], len(got.text)]
    for page, (start, end) in enumerate(zip(starts, bounds, strict=True)):
        # each page's text holds exactly that page's passage (line breaks may differ)
        assert words(got.text[start:end]) == words(PDF_PAGES[page]), page
    canal = got.text.index("Corvin canal")
    assert page_span(starts, canal, canal + 12) == (3, 3)
    assert page_span(starts, 0, len(got.text)) == (1, 3)


def test_page_offsets_skip_pages_without_text() -> None:
    text, starts = join_pages(["one", "", "three", ""])
    assert text == "one\n\nthree" and starts == (0, 5, 5, 10)
    assert page_span(starts, 5, 10) == (3, 3)  # never the empty page 2
    assert page_span(None, 0, 4) is None


def test_type_is_detected_from_content_not_the_name() -> None:
    assert extract_file("report.txt", pdf_bytes(), LIMITS).format == "pdf"
    assert extract_file("notes", docx_bytes(), LIMITS).format == "docx"
    assert extract_file("page.dat", html_bytes(), LIMITS).format == "html"
    assert extract_file("a.pdf", b"plain words, not a PDF", LIMITS).format == "text"


def test_docx_paragraphs_and_tables() -> None:
    got = extract_file("tamsa.docx", docx_bytes(), LIMITS)
    assert got.format == "docx" and got.page_starts is None
    lines = got.text.split("\n")
    assert lines[0] == "Lake Tamsa" and lines[1] == DOCX_TEXT
    assert "Tamsa Queen | 40 minutes" in lines


def test_html_main_text_without_noise() -> None:
    got = extract_file("maddock.html", html_bytes(), LIMITS)
    assert got.format == "html"
    assert words(HTML_TEXT)[:20] == words(got.text[got.text.index("Maddock is") :])[:20]
    assert not [n for n in NOISE if n in got.text], got.text


def test_csv_rows_become_labelled_lines() -> None:
    got = extract_file("lakes.csv", CSV_TEXT.encode(), LIMITS)
    assert got.text.split("\n") == [
        "lake, area_km2, depth_m",
        "lake: Lake Tamsa; area_km2: 210; depth_m: 67",
        "lake: Lake Orvel; area_km2: 35; depth_m: 12",
    ]
    tsv = extract_file("lakes.tsv", CSV_TEXT.replace(",", "\t").encode(), LIMITS)
    assert tsv.text == got.text


def test_text_encodings() -> None:
    assert extract_file("a.md", "héllo".encode(), LIMITS).text == "héllo"
    assert extract_file("A.TXT", codecs.BOM_UTF8 + b"bom", LIMITS).text == "bom"
    assert extract_file("u.txt", "wide".encode("utf-16"), LIMITS).text == "wide"
    assert extract_file("noext", b"text", LIMITS).format == "text"


def test_scanned_pdf_is_read_by_ocr_or_fails_with_no_text_layer() -> None:
    refused("scan.pdf", scanned_pdf_bytes(), 422, "no text layer", ExtractLimits(ocr=False))
    if shutil.which("tesseract") is None:
        refused("scan.pdf", scanned_pdf_bytes(), 422, "install tesseract-ocr")
        return
    refused("scan.pdf", scanned_pdf_bytes(), 413, "need OCR, the limit is 0", ExtractLimits(max_ocr_pages=0))
    got = extract_file("scan.pdf", scanned_pdf_bytes(), LIMITS)
    assert got.pages == 1 and "lighthouse" in got.text and "1841" in got.text, got.text
    assert set(words(SCAN_LINE)) & set(words(got.text))


def test_unreadable_files_fail_by_name() -> None:
    refused("locked.pdf", encrypted_pdf_bytes(), 422, "encrypted")
    refused("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog", 422, "not a readable PDF")
    refused("cut.pdf", pdf_bytes()[:400], 422, "PDF")
    refused("photo.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, 415, "PNG image")
    refused("broken.docx", b"PK\x03\x04" + b"\0" * 64, 422, "corrupt")
    sheet = io.BytesIO()
    with zipfile.ZipFile(sheet, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
    refused("sheet.xlsx", sheet.getvalue(), 415, "Excel")
    refused("bad.txt", b"caf\xe9 au lait", 415, "not UTF-8")
    refused("bin.txt", b"\x00\x01\x02" * 10, 415, "binary")
    refused("zero.txt", b"", 422, "empty")
    refused(
        "empty.html",
        b"<!DOCTYPE html><html><head><script>go()</script></head><body></body></html>",
        422,
        "no main text",
    )


def test_limits() -> None:
    refused("atlas.pdf", pdf_bytes(), 413, "3 pages, the limit is 2", ExtractLimits(max_pages=2))
    refused("atlas.pdf", pdf_bytes(), 413, "the limit is 1000", ExtractLimits(max_bytes=1000))
    refused("big.txt", b"a" * 500, 413, "limit", ExtractLimits(max_chars=100))
    refused("atlas.pdf", pdf_bytes(), 413, "limit is 100", ExtractLimits(max_chars=100))


def test_pdfs_read_on_many_threads_at_once_come_out_whole() -> None:
    """Uploads are read on the server's thread pool; PDFium itself must see one call at a time."""
    data = pdf_bytes()
    expected = extract_file("atlas.pdf", data, LIMITS)
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(lambda _: extract_file("atlas.pdf", data, LIMITS), range(24)))
    assert all(g == expected for g in got)
