"""OCR of page images through the `tesseract` command (Debian's tesseract-ocr), when it is installed."""

from __future__ import annotations

import io
import shutil
import subprocess
from typing import Any

from retrieval.errors import InvalidDocument


def available() -> bool:
    return shutil.which("tesseract") is not None


def ocr_image(name: str, page: int, image: Any, timeout_s: float) -> str:
    """The text tesseract reads on a PIL image (page `page` of file `name`)."""
    png = io.BytesIO()
    image.save(png, format="PNG")
    try:
        done = subprocess.run(
            ["tesseract", "stdin", "stdout"],
            input=png.getvalue(),
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InvalidDocument(f"file {name!r}: OCR of page {page} took over {timeout_s:g} s", 422) from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown error"]
        raise InvalidDocument(f"file {name!r}: OCR of page {page} failed: {reason[0]}", 422)
    return done.stdout.decode("utf-8", errors="replace")
