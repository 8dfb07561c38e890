"""Reading uploaded files into text (retrieval/extract), per format, against plain text in one run.

    python -m bench.extract                 # 50 pages of prose, 3 repeats
    python -m bench.extract --pages 200 --repeats 5

The same MuSiQue prose (`--data DIR`, default ../shared/data) is written as a plain-text file, a
PDF of `--pages` pages (fpdf2), a DOCX (one paragraph per passage), an HTML page (the passages as
paragraphs inside navigation, script, style and footer boilerplate) and a CSV (one row per passage);
each is read by `extract_file` as the upload route reads it. Reported: median seconds per file,
characters read per second, and the time as a multiple of reading the plain text. When tesseract is
installed, OCR of a scanned page (a rendered image, no text layer) is timed too, per page.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import shutil
from typing import Any

import docx
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from bench import datasets
from bench.common import RESULTS, machine, median, musique_text, timed, write_results
from retrieval.extract import ExtractLimits, extract_file

PAGE_CHARS = 2500
LIMITS = ExtractLimits(max_bytes=500_000_000, max_pages=10_000, max_chars=50_000_000)


def passages(pages: int) -> list[str]:
    text = musique_text().encode("latin-1", "replace").decode("latin-1")  # fpdf2's core fonts
    out, total = [], 0
    for p in text.split("\n\n"):
        if p.strip():
            out.append(" ".join(p.split()))
            total += len(out[-1])
        if total >= pages * PAGE_CHARS:
            break
    return out


def build(parts: list[str], pages: int) -> dict[str, tuple[str, bytes]]:
    pdf = FPDF()
    pdf.set_font("helvetica", size=10)
    per_page = max(1, len(parts) // pages)
    for i in range(0, len(parts), per_page):
        pdf.add_page()
        pdf.multi_cell(0, 5, "\n".join(parts[i : i + per_page]))
    document = docx.Document()
    for p in parts:
        document.add_paragraph(p)
    word = io.BytesIO()
    document.save(word)
    body = "".join(f"<p>{html.escape(p)}</p>" for p in parts)
    page = (
        "<!DOCTYPE html><html><head><style>p{margin:0}</style><script>var a=1;</script></head><body>"
        "<nav><a href='/'>Home</a> <a href='/x'>Index</a></nav><main><article><h1>Passages</h1>"
        f"{body}</article></main><footer>Copyright</footer></body></html>"
    )
    sheet = io.StringIO()
    writer = csv.writer(sheet)
    writer.writerow(["id", "passage"])
    writer.writerows([i, p] for i, p in enumerate(parts))
    return {
        "text": ("prose.txt", "\n\n".join(parts).encode()),
        "pdf": ("prose.pdf", bytes(pdf.output())),
        "docx": ("prose.docx", word.getvalue()),
        "html": ("prose.html", page.encode()),
        "csv": ("prose.csv", sheet.getvalue().encode()),
    }


def scanned_page(line: str) -> bytes:
    image = Image.new("L", (1700, 2200), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=36)
    words, y = line.split(), 80
    while words and y < 2100:
        row: list[str] = []
        while words and len(" ".join([*row, words[0]])) < 70:
            row.append(words.pop(0))
        draw.text((80, y), " ".join(row or [words.pop(0)]), fill=0, font=font)
        y += 56
    pdf = FPDF()
    pdf.add_page()
    pdf.image(image, x=0, y=0, w=210)
    return bytes(pdf.output())


def measure(name: str, data: bytes, repeats: int) -> tuple[float, int, int | None]:
    got = extract_file(name, data, LIMITS)
    seconds = median([timed(lambda: extract_file(name, data, LIMITS)) for _ in range(repeats)])
    return seconds, len(got.text), got.pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="extract")
    datasets.add_data_option(parser)
    args = parser.parse_args()
    datasets.use_data(args.data, datasets.MUSIQUE)

    parts = passages(args.pages)
    rows: list[dict[str, Any]] = []
    for fmt, (name, data) in build(parts, args.pages).items():
        seconds, chars, pages = measure(name, data, args.repeats)
        rows.append({"format": fmt, "bytes": len(data), "chars": chars, "pages": pages, "seconds": seconds,
                     "chars_per_s": chars / seconds})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["seconds"]
    for r in rows:
        r["vs_text"] = r["seconds"] / base
    ocr: dict[str, Any] | None = None
    if shutil.which("tesseract"):
        scan = scanned_page(" ".join(parts)[:PAGE_CHARS])
        seconds, chars, _ = measure("scan.pdf", scan, max(1, args.repeats // 2))
        ocr = {"seconds_per_page": seconds, "chars": chars}
        print(json.dumps({"ocr": ocr}), flush=True)

    lines = [
        f"# Extraction per format ({args.pages} pages of prose, median of {args.repeats})",
        "",
        f"CPU: {machine()['cpu_model']}",
        "",
        "| format | file bytes | characters | pages | seconds | characters/s | × plain text |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['format']} | {r['bytes']} | {r['chars']} | {r['pages'] or ''} | {r['seconds']:.4f} | "
            f"{r['chars_per_s']:,.0f} | {r['vs_text']:.1f} |"
        )
    if ocr:
        lines += [
            "",
            f"OCR (tesseract) of a scanned page: {ocr['seconds_per_page']:.2f} s, {ocr['chars']} characters.",
        ]
    payload = {
        "machine": machine(),
        "pages": args.pages,
        "repeats": args.repeats,
        "formats": rows,
        "ocr": ocr,
    }
    write_results(args.name, payload, "\n".join(lines) + "\n")
    plot(rows, args.name)


def plot(rows: list[dict[str, Any]], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar([r["format"] for r in rows], [r["chars_per_s"] for r in rows], color="#2b6cb0")
    ax.set_yscale("log")
    ax.set_ylabel("characters extracted per second (log)")
    ax.set_title("retrieval/extract throughput per format")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=110)


if __name__ == "__main__":
    main()
