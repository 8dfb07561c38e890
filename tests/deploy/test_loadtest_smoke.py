"""bench/loadtest.py against a running gateway: a few requests, a full report, no errors; and the
pieces its numbers rest on (percentiles, Poisson arrivals, error accounting)."""

from __future__ import annotations

import asyncio
import json
import math
import random
from pathlib import Path

import httpx
import numpy as np

from bench.load_client import RequestRecord, poisson_times, stream_generate
from bench.load_stats import percentile
from bench.loadtest import main
from tests.texts import write_data_dir


def test_percentile_matches_numpy() -> None:
    rng = random.Random(3)
    for n in (1, 2, 7, 100):
        xs = [rng.expovariate(1.0) for _ in range(n)]
        for q in (50, 90, 99):
            assert math.isclose(percentile(xs, q), float(np.percentile(xs, q)))
    assert math.isnan(percentile([], 50))


def test_poisson_arrivals_have_the_asked_rate() -> None:
    times = poisson_times(rate=4.0, count=20_000, seed=1)
    gaps = np.diff([0.0, *times])
    assert abs(gaps.mean() - 0.25) < 0.01
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05  # exponential gaps: coefficient of variation 1
    assert times == sorted(times) and times == poisson_times(4.0, 20_000, 1)


def test_a_rejected_request_is_an_error_with_its_reason(gateway: str) -> None:
    async def send() -> RequestRecord:
        rec = RequestRecord(index=0)
        async with httpx.AsyncClient(timeout=60) as client:
            await stream_generate(client, f"{gateway}/generate", {"documents": ["x"]}, rec)
        return rec

    rec = asyncio.run(send())
    assert not rec.ok and rec.status == 422 and "query" in (rec.error or "")


def test_loadtest_smoke_against_a_running_server(gateway: str, tmp_path: Path) -> None:
    argv = [
        "--url",
        gateway,
        "--modes",
        "cacheblend",
        "--rates",
        "4",
        "--concurrency",
        "2",
        "--requests",
        "2",
    ]
    argv += ["--passages", "1", "--pool", "2", "--max-tokens", "4", "--max-seconds", "240", "--prewarm"]
    argv += ["--out-dir", str(tmp_path), "--name", "smoke", "--data", str(write_data_dir(tmp_path / "data"))]
    payload = main(argv)
    assert [(lv["kind"], lv["load"]) for lv in payload["levels"]] == [("rate", 4.0), ("concurrency", 2.0)]
    for level in payload["levels"]:
        s = level["summary"]
        assert s["sent"] == s["completed"] == 2 and s["errors"] == 0, s["error_kinds"]
        for metric in ("ttft_ms", "e2e_ms"):
            dist = s[metric]
            assert 0 < dist["p50"] <= dist["p90"] <= dist["p99"], (metric, dist)
        assert set(s["itl_ms"]) >= {"p50", "p90", "p99"}
        assert s["request_throughput"] > 0 and s["completion_tokens"] > 0
        # pre-warmed: the passage (most of each prompt) comes from the chunk cache
        assert s["cached_token_share"] > 0.5, s["cached_token_share"]
        for rec in level["records"]:
            assert rec["ok"] and 0 < rec["ttft_ms"] <= rec["e2e_ms"]
            assert rec["server_ttft_ms"] is not None and rec["server_ttft_ms"] <= rec["ttft_ms"]
    saved = json.loads((tmp_path / "smoke.json").read_text())
    assert (
        saved["levels"][0]["summary"]["ttft_ms"]["p99"] == payload["levels"][0]["summary"]["ttft_ms"]["p99"]
    )
    table = (tmp_path / "smoke.md").read_text()
    assert "p50 / p90 / p99" in table and "| cacheblend | 4 req/s | 2 | 2 | 0 |" in table
    assert (tmp_path / "smoke.png").stat().st_size > 10_000
