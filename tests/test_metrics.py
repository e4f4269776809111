"""/metrics: our own counters and histograms, labelled by route template and status."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from .fakes import FakeEngine


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_requests_tokens_and_latencies_are_counted(client: TestClient, engine: FakeEngine) -> None:
    messages = [{"role": "user", "content": "hi"}]
    client.post("/v1/chat/completions", json={"messages": messages})
    client.post("/v1/chat/completions", json={"messages": messages, "stream": True})
    client.post("/v1/chat/completions", json={"messages": messages, "temperature": 9})
    client.get("/v1/nope")
    text = client.get("/metrics").text
    route = "/v1/chat/completions"
    assert sample(text, "safework_requests_total", route=route, status="200") == 2
    assert sample(text, "safework_requests_total", route=route, status="400") == 1
    assert sample(text, "safework_requests_total", route="unmatched", status="404") == 1
    assert sample(text, "safework_completion_tokens_total", route=route) == 2 * len(engine.reply)
    prompt_tokens = sum(len(p) for p, _ in engine.requests)
    assert sample(text, "safework_prompt_tokens_total", route=route) == prompt_tokens
    assert sample(text, "safework_time_to_first_token_seconds_count", route=route) == 2
    assert sample(text, "safework_request_latency_seconds_count", route=route) == 2
    assert sample(text, "safework_requests_in_progress") == 1  # this /metrics request


def test_each_app_has_its_own_registry(engine: FakeEngine) -> None:
    from .conftest import serve

    for _ in range(2):
        with serve(engine) as client:
            client.post("/v1/completions", json={"prompt": "x"})
            text = client.get("/metrics").text
            assert sample(text, "safework_requests_total", route="/v1/completions") == 1
