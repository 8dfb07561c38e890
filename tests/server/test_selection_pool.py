"""Chunk selection runs on its own bounded pool: never on the shared threadpool, at most `workers`
searches at once and `waiting` queued, a 503 with Retry-After past both, slots held until each
search ends (even when its caller gave up)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.errors import ApiError
from server.selection_pool import SelectionPool, selection_pool


def test_searches_past_the_bound_are_refused_and_slots_come_back() -> None:
    pool = SelectionPool(workers=1, waiting=1)
    release = threading.Event()
    names: list[str] = []

    def search() -> str:
        names.append(threading.current_thread().name)
        assert release.wait(60)
        return "done"

    async def scenario() -> None:
        running = asyncio.ensure_future(pool.run(search))
        queued = asyncio.ensure_future(pool.run(search))
        await asyncio.sleep(0)
        with pytest.raises(ApiError) as refused:
            await pool.run(search)
        assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}
        queued.cancel()  # the caller gives up; its search still holds its slot until it ends
        with pytest.raises(ApiError):
            await pool.run(search)
        release.set()
        assert await running == "done"
        await asyncio.sleep(0)
        for _ in range(600):  # the cancelled caller's search ends on its own
            if pool._slots._value == 2:
                break
            await asyncio.sleep(0.1)
        assert await pool.run(lambda: "again") == "again"

    asyncio.run(scenario())
    assert names and all(name.startswith("ragblend-select") for name in names)
    pool.close()


def test_a_selection_request_runs_on_the_selection_pool(client: TestClient, tmp_path: Path) -> None:
    body = {
        "query": "Where is the Eiffel Tower?",
        "documents": ["The Eiffel Tower is in Paris.", "Mount Everest is in Nepal.", "Paris is in France."],
        "selection": {"method": "corag", "budget": 400, "iterations": 8},
        "max_tokens": 2,
    }
    r = client.post("/generate", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["selection"]["candidates"] == 3
    services = client.app.state.services  # type: ignore[attr-defined]
    pool = selection_pool(services)
    assert (pool.workers, pool.waiting) == (
        services.settings.selection_workers,
        services.settings.selection_waiting,
    )
    threads = {t.name for t in threading.enumerate()}
    assert any(name.startswith("ragblend-select") for name in threads)
