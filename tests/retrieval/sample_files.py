"""Files of each supported format, built by the tests themselves (fpdf2, python-docx, Pillow, strings)
from the suite's own prose, so nothing is read from outside the repository."""

from __future__ import annotations

import io

import docx
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from tests.texts import PASSAGES

# one passage per page: page 1 the bridge, page 2 the telescope, page 3 the canal
PDF_PAGES = (PASSAGES[0].text, PASSAGES[5].text, PASSAGES[10].text)
DOCX_TEXT = PASSAGES[12].text  # Lake Tamsa
HTML_TEXT = PASSAGES[4].text  # Maddock Island
SCAN_LINE = "The lighthouse on Maddock Island was lit in 1841."
NOISE = ("NAVNOISE", "SCRIPTNOISE", "STYLENOISE", "FOOTERNOISE")


def pdf_bytes(pages: tuple[str, ...] = PDF_PAGES) -> bytes:
    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


def encrypted_pdf_bytes() -> bytes:
    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="reader")
    pdf.set_font("helvetica", size=11)
    pdf.add_page()
    pdf.multi_cell(0, 6, PASSAGES[3].text)
    return bytes(pdf.output())


def scanned_pdf_bytes(line: str = SCAN_LINE) -> bytes:
    """A PDF whose one page is an image of a printed line: no text layer."""
    image = Image.new("L", (1600, 220), 255)
    ImageDraw.Draw(image).text((40, 70), line, fill=0, font=ImageFont.load_default(size=52))
    pdf = FPDF()
    pdf.add_page()
    pdf.image(image, x=10, y=20, w=190)
    return bytes(pdf.output())


def docx_bytes() -> bytes:
    document = docx.Document()
    document.add_heading("Lake Tamsa", level=1)
    document.add_paragraph(DOCX_TEXT)
    table = document.add_table(rows=2, cols=2)
    for (r, c), value in {
        (0, 0): "ferry",
        (0, 1): "crossing",
        (1, 0): "Tamsa Queen",
        (1, 1): "40 minutes",
    }.items():
        table.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def html_bytes() -> bytes:
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Maddock Island</title>
<style>body {{ font-family: serif }} .STYLENOISE {{ color: red }}</style>
<script>window.tracker = "SCRIPTNOISE";</script></head>
<body>
<header><nav><a href="/">Home</a> | <a href="/islands">NAVNOISE Islands</a> |
<a href="/about">About</a></nav></header>
<main><article><h1>Maddock Island</h1><p>{HTML_TEXT}</p></article></main>
<footer><p>FOOTERNOISE Copyright 2025 The Island Gazetteer. All rights reserved.</p></footer>
</body></html>"""
    return page.encode()


CSV_TEXT = "lake,area_km2,depth_m\nLake Tamsa,210,67\nLake Orvel,35,12\n"
