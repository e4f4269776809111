"""The search strategy through the HTTP API: profile, settings, streams, ``n > 1`` (one
session per choice), errors, metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from safework.errors import ConfigError
from safework.search import base as search_base
from safework.server import search as server_search
from safework.server.cli import add_parser, config_from_args
from safework.server.search import SearchSettings

from .conftest import serve
from .fakes import BagOfWordsEncoder, ScriptEngine
from .sse import sse_payloads

QUESTION = "What is the atomic number of tungsten?"
MESSAGES = [{"role": "user", "content": QUESTION}]
PROTOCOL_MODEL = [
    "<search>tungsten atomic number</search>",
    "<answer>74</answer><confidence>7</confidence>",
]


@pytest.fixture(autouse=True)
def fake_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(search_base.LOADERS, "fake", "tests.fakes:load_fake_search")
    monkeypatch.setattr(server_search, "default_encoder", lambda cache: BagOfWordsEncoder())


def settings(**backends: str) -> SearchSettings:
    return SearchSettings(
        backends=backends or {"fake": "fake:docs"},
        defaults={"prior_check": False, "retrieve_first": False},
        max_turns=6,
        timeout_s=0.2,
    )


@pytest.fixture
def engine() -> ScriptEngine:
    return ScriptEngine(PROTOCOL_MODEL)


@pytest.fixture
def client(engine: ScriptEngine) -> Iterator[TestClient]:
    with serve(engine, search=settings()) as c:
        yield c


def chat(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/chat/completions", json={"messages": MESSAGES, **body})


def test_the_search_profile_is_listed_only_when_configured(client: TestClient) -> None:
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["fake-model", "fake-model:search"]
    with serve(ScriptEngine(PROTOCOL_MODEL)) as plain:
        assert [m["id"] for m in plain.get("/v1/models").json()["data"]] == ["fake-model"]
        r = plain.post(
            "/v1/chat/completions", json={"model": "fake-model:search", "messages": MESSAGES}
        )
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "model_not_found"
        r = plain.post(
            "/v1/chat/completions", json={"messages": MESSAGES, "safework": {"search": {}}}
        )
        assert r.status_code == 400
        assert "--search-backend" in r.json()["error"]["message"]


def test_the_profile_answers_with_sources_confidence_and_trace(client: TestClient) -> None:
    r = chat(client, model="fake-model:search")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["model"] == "fake-model:search"
    message = data["choices"][0]["message"]
    assert message["content"] == "74"
    assert "<information>" in message["reasoning_content"]
    assert "Atomic number: 74" in message["reasoning_content"]
    block = data["safework"]
    assert block["strategy"] == "search"
    search = block["search"]
    assert search["backend"] == "fake"
    assert search["queries"] == ["tungsten atomic number"]
    assert search["sources"][0] == {
        "id": "element:tungsten",
        "title": "tungsten",
        "url": "https://docs.test/element:tungsten",
        "snippet": "Symbol: W\nAtomic number: 74\nDense grey metal, formerly called wolfram.",
    }
    assert search["confidence"] == {"raw": 0.7, "source": "stated", "calibrated": None}
    assert search["turns"] == 2
    assert search["protocol"] == "model"
    assert [e["type"] for e in search["trace"]] == ["search.query"]
    # Usage counts what the model generated, not the text the server inserted.
    generated = len(PROTOCOL_MODEL[0]) + len("<answer>74</answer><confidence>7</confidence>")
    assert data["usage"]["completion_tokens"] == generated


def test_the_safework_block_selects_search_and_its_settings(client: TestClient) -> None:
    r = chat(client, safework={"search": {"backend": "fake", "max_turns": 1, "read": False}})
    assert r.status_code == 200, r.text
    search = r.json()["safework"]["search"]
    assert search["turns"] == 1
    assert search["protocol"] == "fallback"  # one turn: the search, then the server answers


def test_a_stream_carries_the_trace_as_reasoning_and_events(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions",
        json={"model": "fake-model:search", "messages": MESSAGES, "stream": True},
    )
    assert r.status_code == 200
    events = sse_payloads(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    reasoning = "".join(
        c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks if c["choices"]
    )
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "<search>tungsten atomic number</search>" in reasoning
    assert "<information>" in reasoning
    assert content == "74"
    types = [e["type"] for c in chunks for e in (c.get("safework") or {}).get("events", [])]
    assert types == ["search.query", "search.answer"]
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["safework"]["search"]["confidence"]["raw"] == 0.7


@pytest.mark.parametrize(
    ("safework", "param"),
    [
        ({"search": {"backend": "nope"}}, "safework.search.backend"),
        ({"search": {"max_turns": 7}}, "safework.search.max_turns"),
        ({"search": {"max_turns": 0}}, "safework.search.max_turns"),
        ({"search": {"top_k": 11}}, "safework.search.top_k"),
        ({"search": {"confidence": "vibes"}}, "safework.search.confidence"),
        ({"search": {"turns": 3}}, "safework.search.turns"),
        ({"search": {}, "alignment": {}}, "safework.strategy"),
    ],
)
def test_bad_settings_are_400_and_reach_no_engine(
    client: TestClient, engine: ScriptEngine, safework: dict[str, Any], param: str
) -> None:
    r = chat(client, safework=safework)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert engine.requests == []


@pytest.mark.parametrize(
    ("field", "value"), [("logprobs", True), ("response_format", {"type": "json_object"})]
)
def test_unsupported_fields_are_400(client: TestClient, field: str, value: Any) -> None:
    r = chat(client, model="fake-model:search", **{field: value})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == field


def concurrent_engine() -> ScriptEngine:
    """Answers from the prompt alone (copies run concurrently, so no shared script order):
    it searches until the tungsten document is in its context, then answers."""
    return ScriptEngine(PROTOCOL_MODEL[:1], routes={"Atomic number: 74": PROTOCOL_MODEL[1]})


def test_n_choices_are_independent_search_sessions() -> None:
    engine = concurrent_engine()
    with serve(engine, search=settings()) as client:
        r = chat(client, model="fake-model:search", n=2)
        assert r.status_code == 200, r.text
        data = r.json()
        backend = client.app.state.search.backends["fake"]  # type: ignore[attr-defined]
        metrics = client.get("/metrics").text
    assert [c["index"] for c in data["choices"]] == [0, 1]
    assert [c["message"]["content"] for c in data["choices"]] == ["74", "74"]
    block = data["safework"]
    assert block["strategy"] == "search"
    assert "search" not in block  # n>1: each choice's report in `choices`
    assert [c["index"] for c in block["choices"]] == [0, 1]
    for choice in block["choices"]:
        assert choice["search"]["queries"] == ["tungsten atomic number"]
        assert choice["search"]["confidence"]["raw"] == 0.7
    assert backend.queries == ["tungsten atomic number"] * 2
    generated = len(PROTOCOL_MODEL[0]) + len(PROTOCOL_MODEL[1])
    assert data["usage"]["completion_tokens"] == 2 * generated
    assert 'safework_search_queries_total{backend="fake"} 2.0' in metrics
    assert "safework_search_turns_count 2.0" in metrics


def test_n_choices_stream_each_trace_and_one_finish_each() -> None:
    with serve(concurrent_engine(), search=settings()) as client:
        r = chat(client, model="fake-model:search", n=2, stream=True)
    events = sse_payloads(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[2:-1]
    reasoning, content, finishes = ["", ""], ["", ""], []
    for c in chunks:
        for ch in c["choices"]:
            reasoning[ch["index"]] += ch["delta"].get("reasoning_content") or ""
            content[ch["index"]] += ch["delta"].get("content") or ""
            if ch.get("finish_reason"):
                finishes.append(ch["index"])
    assert sorted(finishes) == [0, 1]
    assert content == ["74", "74"]
    assert all(r.count("<search>tungsten atomic number</search>") == 1 for r in reasoning)
    answers = [
        e["choice"]
        for c in chunks
        for e in (c.get("safework") or {}).get("events", [])
        if e["type"] == "search.answer"
    ]
    assert sorted(answers) == [0, 1]
    report = chunks[-1]["safework"]
    assert [c["search"]["confidence"]["raw"] for c in report["choices"]] == [0.7, 0.7]


@pytest.mark.parametrize(
    ("spec", "op", "kind"),
    [("fake:fail-search", "search", "error"), ("fake:slow", "search", "timeout")],
)
def test_a_failing_backend_is_explained_and_the_server_stays_up(
    spec: str, op: str, kind: str
) -> None:
    engine = ScriptEngine(PROTOCOL_MODEL)
    with serve(engine, search=settings(broken=spec)) as client:
        r = chat(client, model="fake-model:search")
        assert r.status_code == 200, r.text
        data = r.json()
        assert "Search problem" in data["choices"][0]["message"]["content"]
        assert data["safework"]["search"]["errors"]
        metrics = client.get("/metrics").text
        assert (
            f'safework_search_errors_total{{backend="broken",kind="{kind}",op="{op}"}} 1.0'
            in metrics
        )
        assert chat(client).status_code == 200  # plain chat still works


def test_metrics_count_searches_turns_and_latency(client: TestClient) -> None:
    assert chat(client, model="fake-model:search").status_code == 200
    metrics = client.get("/metrics").text
    assert 'safework_search_queries_total{backend="fake"} 1.0' in metrics
    assert "safework_search_turns_count 1.0" in metrics
    assert (
        'safework_search_backend_latency_seconds_count{backend="fake",op="search"} 1.0' in metrics
    )


def test_backends_are_closed_at_shutdown(engine: ScriptEngine) -> None:
    with serve(engine, search=settings()) as client:
        backend = client.app.state.search.backends["fake"]  # type: ignore[attr-defined]
    assert backend.closed


def parse(*argv: str) -> Any:
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return config_from_args(parser.parse_args(["serve", *argv]))


def test_serve_flags_build_the_search_settings() -> None:
    config = parse(
        "--search-backend",
        "local:builtin",
        "--search-backend",
        "web=duckduckgo",
        "--search-option",
        "mode=bm25",
        "--search-setting",
        "max_turns=3",
        "--search-setting",
        "read=false",
        "--search-max-turns",
        "5",
    )
    s = config.search
    assert s.backends == {"builtin": "local:builtin", "web": "duckduckgo"}
    assert s.options == {"mode": "bm25"}
    assert s.defaults == {"max_turns": 3, "read": False}
    assert s.max_turns == 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--search-backend", "bing"], "unknown search backend"),
        (["--search-backend", "local"], "needs an argument"),
        (["--search-backend", "duckduckgo:x"], "takes no argument"),
        (
            ["--search-backend", "duckduckgo", "--search-backend", "duckduckgo"],
            "two search backends",
        ),
        (["--search-setting", "turns=3"], "unknown search settings"),
        (["--search-setting", "oops"], "KEY=VALUE"),
    ],
)
def test_bad_serve_flags_are_config_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(*argv)
