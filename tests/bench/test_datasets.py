"""The benchmarks find their evaluation data through --data and stop with a clear message without it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import datasets, load, loadtest
from tests.texts import write_data_dir


@pytest.fixture(autouse=True)
def _restore_data_dir() -> Iterator[None]:
    yield
    datasets.use_data(datasets.DEFAULT_DATA)


def test_a_missing_data_set_stops_with_what_is_needed(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stop:
        loadtest.parse_args(["--data", str(tmp_path)])
    message = str(stop.value.code)
    assert str(tmp_path / "musique_dev.json") in message and "--data DIR" in message
    assert "MuSiQue" in message
    with pytest.raises(SystemExit) as stop:
        load.parse_args(["--data", str(tmp_path), "--workload", "squad"])
    assert "squad_v2_dev_subset.json" in str(stop.value.code) and "SQuAD 2.0" in str(stop.value.code)


def test_the_data_comes_from_the_folder_given(tmp_path: Path) -> None:
    data = write_data_dir(tmp_path / "data")
    loadtest.parse_args(["--data", str(data)])
    rows = loadtest.questions(2)
    assert rows[0]["question"] == datasets.musique()[0]["question"]
    args = load.parse_args(["--data", str(data), "--paragraphs", "2"])
    paragraphs, asked = load.squad_pool(args)
    assert len(paragraphs) == 2 and len(asked) == 2
