"""Bad input: every refusal is an OpenAI error body with the right status, and nothing reaches
the engine."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from .conftest import serve
from .fakes import FakeEngine

MESSAGES = [{"role": "user", "content": "hi"}]


def assert_error(r, status: int, param: str | None = None, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    assert err["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    if param is not None:
        assert err["param"] == param
    if code is not None:
        assert err["code"] == code
    return err


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES, "temperature": 2.5}, "temperature"),
        ({"messages": MESSAGES, "top_p": 0}, "top_p"),
        ({"messages": MESSAGES, "n": 0}, "n"),
        ({"messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"messages": MESSAGES, "max_completion_tokens": "lots"}, "max_completion_tokens"),
        ({"messages": MESSAGES, "top_logprobs": 50, "logprobs": True}, "top_logprobs"),
        ({"messages": MESSAGES, "presence_penalty": -3}, "presence_penalty"),
        ({"messages": []}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({}, "messages"),
        ({"messages": MESSAGES, "stop": [""]}, "stop"),
        ({"messages": MESSAGES, "safework": {"stratgy": "plain"}}, "safework.stratgy"),
        ({"messages": MESSAGES, "safework": {"strategy": "nonsense"}}, "safework.strategy"),
        ({"messages": MESSAGES, "response_format": {"type": "xml"}}, "response_format.type"),
    ],
)
def test_invalid_fields_are_400_with_param(
    client: TestClient, engine: FakeEngine, body: dict, param: str
) -> None:
    assert_error(client.post("/v1/chat/completions", json=body), 400, param=param)
    assert engine.requests == []


TOOLS = [{"type": "function", "function": {"name": "get_current_timestamp"}}]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": MESSAGES, "top_logprobs": 2},
        {"messages": MESSAGES, "stream_options": {"include_usage": True}},
        {"messages": MESSAGES, "response_format": {"type": "json_schema"}},
        {"messages": MESSAGES, "tools": TOOLS, "tool_choice": "required"},
        {"messages": MESSAGES, "tools": TOOLS, "tool_choice": {"type": "function"}},
        {"messages": MESSAGES, "continue_final_message": True},
    ],
)
def test_inconsistent_requests_are_400(client: TestClient, engine: FakeEngine, body: dict) -> None:
    assert_error(client.post("/v1/chat/completions", json=body), 400)
    assert engine.requests == []


@pytest.mark.parametrize("choice", [None, "auto", "none"])
def test_offered_tools_are_answered_in_text(client: TestClient, choice: str | None) -> None:
    """Open WebUI offers its built-in tools with every message; the answer is plain text."""
    body = {"messages": MESSAGES, "tools": TOOLS, "tool_choice": choice}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    message = r.json()["choices"][0]["message"]
    assert message["content"] == "Hello from the fake engine ."
    assert "tool_calls" not in message


def test_malformed_json(client: TestClient, engine: FakeEngine) -> None:
    r = client.post(
        "/v1/chat/completions",
        content=b'{"messages": [',
        headers={"content-type": "application/json"},
    )
    err = assert_error(r, 400)
    assert "Malformed JSON" in err["message"]
    assert engine.requests == []


def test_unknown_fields_are_accepted(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json={"messages": MESSAGES, "new_openai_field": 1})
    assert r.status_code == 200


def test_prompt_longer_than_context(engine: FakeEngine) -> None:
    engine.max_model_len = 40
    with serve(engine) as client:
        long = [{"role": "user", "content": "x" * 100}]
        r = client.post("/v1/chat/completions", json={"messages": long})
        assert_error(r, 400, code="context_length_exceeded")
        r = client.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 30})
        assert_error(r, 400, param="max_tokens", code="context_length_exceeded")
    assert engine.requests == []


def test_n_beyond_the_configured_limit(engine: FakeEngine) -> None:
    with serve(engine, max_n=2) as client:
        r = client.post("/v1/chat/completions", json={"messages": MESSAGES, "n": 3})
        assert_error(r, 400, param="n")
    assert engine.requests == []


def test_unknown_route_and_wrong_method(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404)
    assert_error(client.get("/v1/chat/completions"), 405)


def test_body_over_the_limit_is_413(engine: FakeEngine) -> None:
    with serve(engine, max_body_bytes=2048) as client:
        big = [{"role": "user", "content": "x" * 5000}]
        r = client.post("/v1/chat/completions", json={"messages": big})
        assert_error(r, 413, code="request_too_large")

        def chunks():
            yield b'{"messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}]}'

        r = client.post(
            "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
        )
        assert_error(r, 413)

        def small():
            yield b'{"messages": [{"role": "user", "content": "hi"}]}'

        r = client.post(
            "/v1/chat/completions", content=small(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 200
    assert len(engine.requests) == 1


def test_an_unavailable_store_raised_anywhere_is_a_503(engine: FakeEngine) -> None:
    from safework.errors import UnavailableError

    with serve(engine) as client:

        async def broken() -> None:
            raise UnavailableError("the memory store is locked", code="memory_unavailable")

        client.app.add_api_route("/broken", broken)  # type: ignore[attr-defined]
        r = client.get("/broken")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "memory_unavailable"
