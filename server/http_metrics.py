"""Prometheus metrics of the gateway: HTTP requests, generation latency and tokens, queue state.

Registered next to the chunk-KV store's collector on the process registry (`Services.metrics`).
Blended tokens are cached prompt tokens reused as they were (cached minus recomputed).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.events import FinishEvent
from server.services import Services

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TOKEN_GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.5, 5)


class _QueueCollector(Collector):
    """Read at scrape time: requests waiting and running, the engine's batch. A batching engine
    reports these through `stats()`; one that serves a request at a time has a batch of as many
    requests as are running on the queue."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        queue = self.services.queue
        stats_of = getattr(self.services.engine, "stats", None)
        stats = stats_of() if callable(stats_of) else None
        waiting, running, batch = queue.depth, queue.running, queue.running
        if stats is not None:
            waiting += int(stats.queue_depth)
            running += int(stats.batch_size) + int(stats.prefilling)
            batch = int(stats.batch_size)
        yield GaugeMetricFamily("ragblend_queue_depth", "requests waiting for the engine", waiting)
        yield GaugeMetricFamily("ragblend_requests_running", "requests the engine is serving", running)
        yield GaugeMetricFamily("ragblend_batch_size", "sequences in the engine's decode batch", batch)
        if stats is not None:
            yield GaugeMetricFamily(
                "ragblend_requests_writing_back",
                "answered requests still storing chunk caches",
                stats.writing_back,
            )
            # the n sequences of one request share one prefill: its prompt counts here once
            yield CounterMetricFamily(
                "ragblend_engine_prefilled_tokens",
                "prompt tokens the engine's scheduler prefilled",
                stats.tokens_in,
            )
        engine = self.services.engine
        gate = getattr(engine, "blend_gate", None)
        if engine is not None and isinstance(gate, dict):
            default = engine.default_blend
            passed = GaugeMetricFamily(
                "ragblend_blend_gate_passed",
                "1 when the default blend mode passed the model's correctness gate at load as it is "
                "(0: the ratio was raised or the default fell back to full)",
                labels=["default_mode"],
            )
            passed.add_metric([default.mode], 1.0 if gate.get("passed") else 0.0)
            yield passed
            yield GaugeMetricFamily(
                "ragblend_blend_default_ratio",
                "recompute ratio (ceiling) of the default blend mode",
                default.ratio,
            )


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry, services: Services) -> None:
        self.requests = Counter(
            "ragblend_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "ragblend_http_request_duration_seconds",
            "HTTP request duration (streams: until the last byte)",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "ragblend_time_to_first_token_seconds",
            "request receipt to the first generated token",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.inter_token = Histogram(
            "ragblend_inter_token_latency_seconds",
            "gap between successive generated tokens",
            ["endpoint"],
            buckets=_TOKEN_GAP_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = self._tokens(registry, "prompt", "prompt tokens of finished generations")
        self.generation_tokens = self._tokens(registry, "generation", "tokens generated")
        self.cached_tokens = self._tokens(
            registry, "cached_prompt", "prompt tokens whose K/V came from the store"
        )
        self.blended_tokens = self._tokens(
            registry, "blended_prompt", "cached prompt tokens reused as they were"
        )
        self.recomputed_tokens = self._tokens(
            registry, "recomputed_prompt", "cached prompt tokens recomputed"
        )
        self.recompute_ratio = Histogram(
            "ragblend_recompute_ratio",
            "recomputed share of the moved cached tokens, per blended request",
            ["endpoint"],
            buckets=(0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0),
            registry=registry,
        )
        registry.register(_QueueCollector(services))

    @staticmethod
    def _tokens(registry: CollectorRegistry, kind: str, doc: str) -> Counter:
        return Counter(f"ragblend_{kind}_tokens", doc, ["endpoint"], registry=registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route, str(status)).observe(seconds)

    def observe_finish(
        self, endpoint: str, final: FinishEvent, gaps_observed: bool = False, prompt: bool = True
    ) -> None:
        """A finished generation; without per-token times (`gaps_observed` False: the answer was not
        streamed by the caller) the mean gap between its tokens stands for each gap. `prompt` False
        for the other sequences of an `n` > 1 request: their prompt (and its reuse) counts once."""
        self.ttft.labels(endpoint).observe(final.ttft_ms / 1000)
        if not gaps_observed and final.completion_tokens > 1:
            gap = (final.total_ms - final.ttft_ms) / 1000 / (final.completion_tokens - 1)
            for _ in range(final.completion_tokens - 1):
                self.inter_token.labels(endpoint).observe(gap)
        self.generation_tokens.labels(endpoint).inc(final.completion_tokens)
        if not prompt:
            return
        self.prompt_tokens.labels(endpoint).inc(final.prompt_tokens)
        cached = final.extra_usage.get("cached_tokens", 0)
        recomputed = final.extra_usage.get("recomputed_tokens", 0)
        self.cached_tokens.labels(endpoint).inc(cached)
        self.recomputed_tokens.labels(endpoint).inc(recomputed)
        self.blended_tokens.labels(endpoint).inc(max(0, cached - recomputed))
        moved = final.extra_usage.get("moved_tokens", 0)
        if moved:
            self.recompute_ratio.labels(endpoint).observe(recomputed / moved)
