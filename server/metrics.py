"""SafeWork's Prometheus metrics, exported at ``/metrics`` beside vLLM's own ``vllm:*`` series.

Each app gets its own ``CollectorRegistry`` (tests build many apps in one process); the
``/metrics`` route concatenates it with the process-wide default registry, where vLLM's
engine registers its series.
"""

from __future__ import annotations

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "safework_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.in_progress = Gauge(
            "safework_requests_in_progress", "HTTP requests being served", registry=r
        )
        self.prompt_tokens = Counter(
            "safework_prompt_tokens", "Prompt tokens processed", ["route"], registry=r
        )
        self.completion_tokens = Counter(
            "safework_completion_tokens", "Completion tokens generated", ["route"], registry=r
        )
        self.aborted = Counter(
            "safework_requests_aborted",
            "Generations aborted before finishing (client went away)",
            ["route"],
            registry=r,
        )
        self.ttft = Histogram(
            "safework_time_to_first_token_seconds",
            "Time from request arrival to the first generated token",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "safework_request_latency_seconds",
            "End-to-end latency of a generation request",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def exposition(self) -> bytes:
        """Text exposition of our registry followed by the default one (vLLM's)."""
        return generate_latest(self.registry) + generate_latest(REGISTRY)
