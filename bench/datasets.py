"""Where the benchmarks find their evaluation data, and a clear stop when it is missing.

The data sets are public and not part of this repository: MuSiQue (multi-hop questions over Wikipedia
passages, CC BY 4.0) and SQuAD 2.0 (CC BY-SA 4.0). Every benchmark takes `--data DIR`; by default it
looks in `../shared/data` beside the checkout. A missing file ends the run with a message naming the
file, the folder searched and where the data comes from, not with a traceback."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"

MUSIQUE = "musique_dev.json"
SQUAD = "squad_v2_dev_subset.json"
SOURCES = {
    MUSIQUE: (
        "MuSiQue dev questions as a JSON list of {question, answers: [str], ctxs: [{title, text}]} "
        "(10 passages each), e.g. the musique_s.json subset of the CacheBlend evaluation "
        "(https://github.com/YaoJiayi/CacheBlend, data from https://github.com/StonyBrookNLP/musique)"
    ),
    SQUAD: (
        "SQuAD 2.0 dev set in its original format (https://rajpurkar.github.io/SQuAD-explorer/); "
        "a few articles are enough"
    ),
}

_data_dir: Path = DEFAULT_DATA


def add_data_option(parser: argparse.ArgumentParser) -> None:
    """The `--data DIR` option every benchmark shares; call `use_data(args.data)` after parsing."""
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help=f"folder with {MUSIQUE} and/or {SQUAD} (default: {DEFAULT_DATA})",
    )


def use_data(path: Path, *needed: str) -> None:
    """Read data from `path` from now on; stop at once if one of the `needed` files is not there."""
    global _data_dir
    _data_dir = Path(path)
    for name in needed:
        data_path(name)


def data_path(name: str) -> Path:
    path = _data_dir / name
    if not path.is_file():
        raise SystemExit(
            f"benchmark data missing: {path} not found.\n"
            f"This benchmark needs {name}: {SOURCES.get(name, 'see bench/datasets.py')}.\n"
            "Download it into a folder and pass --data DIR."
        )
    return path


def load(name: str) -> Any:
    return json.loads(data_path(name).read_text())


def musique() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = load(MUSIQUE)
    return rows


def squad() -> dict[str, Any]:
    data: dict[str, Any] = load(SQUAD)
    return data
