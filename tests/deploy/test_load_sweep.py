"""bench/load.py against the compose gateway (run natively): the SQuAD workload is ingested through
the API, rates rise until the cap or the first level that breaks the SLO, and both endpoints report
what the server cached."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.load import main
from tests.texts import write_data_dir

TINY = ["--paragraphs", "3", "--top-k", "2", "--max-tokens", "2", "--warmup", "1", "--level-seconds", "2"]


def _run(gateway: str, tmp_path: Path, name: str, *extra: str) -> dict[str, Any]:
    data = write_data_dir(tmp_path / "data")
    argv = ["--url", gateway, "--modes", "cachecraft", *TINY, "--out-dir", str(tmp_path), "--name", name]
    argv += ["--data", str(data)]
    return main([*argv, *extra])


def test_sweep_stops_at_the_level_cap_while_the_slo_holds(gateway: str, tmp_path: Path) -> None:
    payload = _run(
        gateway, tmp_path, "held", "--rates", "1,2,4", "--max-levels", "2", "--slo-ttft-ms", "120000"
    )
    assert [lv["rate"] for lv in payload["levels"]] == [1.0, 2.0]
    for level in payload["levels"]:
        s = level["summary"]
        assert level["slo_broken"] is None and s["errors"] == 0 and s["completed"] == s["sent"] >= 2
        assert 0 < s["ttft_ms"]["p50"] <= s["ttft_ms"]["p99"]
        # ingestion stored the chunks' caches: the retrieved chunks come from the chunk store
        assert s["cached_token_share"] > 0.3, s["cached_token_share"]
    assert payload["sustained"] == {"cachecraft": 2.0}
    saved = json.loads((tmp_path / "held.json").read_text())
    assert saved["sustained"] == {"cachecraft": 2.0}
    table = (tmp_path / "held.md").read_text()
    assert "| cachecraft | 2 |" in table and "sustained rate" in table
    assert (tmp_path / "held.png").stat().st_size > 10_000


def test_sweep_stops_at_the_first_level_that_breaks_the_slo(gateway: str, tmp_path: Path) -> None:
    payload = _run(gateway, tmp_path, "broken", "--rates", "1,2", "--slo-ttft-ms", "1")
    assert len(payload["levels"]) == 1
    assert "p99 TTFT" in (payload["levels"][0]["slo_broken"] or "")
    assert payload["sustained"] == {"cachecraft": 0.0}


def test_sweep_drives_the_openai_endpoint(gateway: str, tmp_path: Path) -> None:
    payload = _run(
        gateway, tmp_path, "chat", "--endpoint", "openai", "--rates", "1", "--slo-ttft-ms", "120000"
    )
    s = payload["levels"][0]["summary"]
    assert s["errors"] == 0 and s["completed"] == s["sent"] >= 2, s["error_kinds"]
    assert s["completion_tokens"] > 0 and 0 < s["ttft_ms"]["p50"] <= s["e2e_ms"]["p50"]
    assert s["cached_token_share"] > 0.3  # from usage.prompt_tokens_details.cached_tokens
