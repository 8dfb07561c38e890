"""OpenTelemetry spans for a generation: retrieve, select, kv_fetch, prefill, decode.

Spans go out over OTLP/HTTP only when an endpoint is configured (RAGBLEND_OTLP_TRACES_ENDPOINT) and
the optional `otel` extra is installed; otherwise every call here is a no-op. The engine measures
its phases on its own thread and reports their durations with the final event, so the phase spans
are placed afterwards from those durations, as children of the request's span.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import propagate, trace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhaseTimes:
    """Milliseconds from request receipt, as the routes and the engine measured them."""

    retrieve_ms: float | None
    select_ms: float | None
    kv_fetch_ms: float | None
    prefill_ms: float | None
    ttft_ms: float
    total_ms: float


class Tracing:
    def __init__(self, endpoint: str | None, exporter: Any = None, service_name: str = "ragblend") -> None:
        """`exporter` (a span exporter, sent synchronously) replaces the OTLP one; tests use it."""
        self._provider: Any = None
        self.tracer: trace.Tracer = trace.NoOpTracer()
        if endpoint is None and exporter is None:
            return
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        except ImportError:
            log.warning("an OTLP endpoint is set but opentelemetry-sdk is missing: install ragblend[otel]")
            return
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError:
                log.warning(
                    "an OTLP endpoint is set but the OTLP exporter is missing: install ragblend[otel]"
                )
                return
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        # A provider of our own, not the global one: two apps in one process keep separate spans.
        self._provider = provider
        self.tracer = provider.get_tracer("ragblend")

    @property
    def enabled(self) -> bool:
        return self._provider is not None

    @contextmanager
    def request_span(
        self, name: str, headers: Mapping[str, str], attributes: dict[str, Any], start_ns: int
    ) -> Iterator[trace.Span]:
        """The span of one request from its receipt, continuing the caller's trace (`traceparent`)."""
        parent = propagate.extract(dict(headers)) if self.enabled else None
        with self.tracer.start_as_current_span(
            name, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes, start_time=start_ns
        ) as span:
            yield span

    def record_phases(self, parent: trace.Span, received_ns: int, times: PhaseTimes) -> None:
        if not self.enabled:
            return
        ms = 1_000_000
        at = received_ns
        phases: list[tuple[str, int, int]] = []
        for name, duration in (("retrieve", times.retrieve_ms), ("select", times.select_ms)):
            if duration is not None:
                phases.append((name, at, at + int(duration * ms)))
                at += int(duration * ms)
        first_token = received_ns + int(times.ttft_ms * ms)
        prefill_start = first_token - int((times.prefill_ms or 0.0) * ms)
        if times.kv_fetch_ms is not None:
            fetch_start = prefill_start - int(times.kv_fetch_ms * ms)
            phases.append(("kv_fetch", fetch_start, prefill_start))
        if times.prefill_ms is not None:
            phases.append(("prefill", prefill_start, first_token))
        phases.append(("decode", first_token, received_ns + int(times.total_ms * ms)))
        context = trace.set_span_in_context(parent)
        for name, start, end in phases:
            span = self.tracer.start_span(name, context=context, start_time=start)
            span.end(end_time=max(start, end))

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
