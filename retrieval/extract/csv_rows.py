"""CSV and TSV: one line of text per row, each value labelled with its column's header, so a row
retrieved alone still says what its numbers are ("city: Lyon; population: 522250")."""

from __future__ import annotations

import csv
import io

from retrieval.errors import InvalidDocument
from retrieval.extract.base import Extracted, ExtractLimits
from retrieval.extract.text import decode


def _dialect(sample: str, name: str) -> type[csv.Dialect] | csv.Dialect:
    if name.lower().endswith(".tsv"):
        return csv.excel_tab
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def extract_csv(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    text = decode(name, data, limits)
    try:
        rows = [
            r for r in csv.reader(io.StringIO(text), _dialect(text[:8192], name)) if any(c.strip() for c in r)
        ]
    except csv.Error as exc:
        raise InvalidDocument(f"file {name!r} is not valid CSV: {exc}", 422) from None
    if not rows:
        raise InvalidDocument(f"file {name!r} has no rows", 422)
    header = [h.strip() for h in rows[0]]
    lines = [", ".join(header)]
    for row in rows[1:]:
        cells = [c.strip() for c in row]
        labelled = [
            f"{header[i] if i < len(header) and header[i] else f'column {i + 1}'}: {v}"
            for i, v in enumerate(cells)
            if v
        ]
        lines.append("; ".join(labelled))
    return Extracted("\n".join(lines), "csv")
