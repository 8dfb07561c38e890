"""Spans of a generation when tracing is on (an in-memory exporter stands in for OTLP), none when off."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from server.tracing import Tracing
from tests.server.gateway_helpers import chat


def test_off_by_default(client: TestClient) -> None:
    assert not client.app.state.gateway.tracing.enabled  # type: ignore[attr-defined]


def test_request_span_with_phase_children(client: TestClient) -> None:
    exporter = InMemorySpanExporter()
    client.app.state.gateway.tracing = Tracing(None, exporter=exporter)  # type: ignore[attr-defined]
    documents = ["Tracing spans show where the time of a request went.", "Prefill comes before decode."]
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    r = client.post(
        "/v1/chat/completions", json=chat("What comes first?", documents=documents), headers=headers
    )
    assert r.status_code == 200, r.text
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert {"/v1/chat/completions", "kv_fetch", "prefill", "decode"} <= set(spans)
    root = spans["/v1/chat/completions"]
    assert format(root.context.trace_id, "032x") == trace_id  # continues the caller's trace
    assert root.attributes is not None and int(str(root.attributes["ragblend.prompt_tokens"])) > 0
    for name in ("kv_fetch", "prefill", "decode"):
        child = spans[name]
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert child.start_time is not None and child.end_time is not None
        assert child.start_time <= child.end_time
    assert spans["prefill"].end_time <= spans["decode"].start_time  # type: ignore[operator]
    # The engine stores the new chunk caches after answering: let it finish before the app closes.
    queue = client.app.state.services.queue  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while (queue.running or queue.depth) and time.monotonic() < deadline:
        time.sleep(0.05)
