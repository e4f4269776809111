"""Chat completions against the fake engine: JSON shape, n, stop, logprobs, reasoning, SSE order."""

from __future__ import annotations

from collections import Counter

from fastapi.testclient import TestClient

from .conftest import serve
from .fakes import FakeEngine
from .sse import sse_payloads

MESSAGES = [{"role": "user", "content": "Say hello."}]


def chat(client: TestClient, **body):
    return client.post("/v1/chat/completions", json={"messages": MESSAGES, **body})


def test_plain_completion_shape_and_usage(client: TestClient, engine: FakeEngine) -> None:
    r = chat(client, model="fake-model")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    (choice,) = data["choices"]
    assert choice["message"] == {"role": "assistant", "content": engine.reply}
    assert choice["finish_reason"] == "stop"
    prompt_ids, _ = engine.requests[0]
    usage = data["usage"]
    assert usage["prompt_tokens"] == len(prompt_ids)
    assert usage["completion_tokens"] == len(engine.reply)  # one token per character
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_model_is_optional_and_unknown_model_is_404(client: TestClient) -> None:
    assert chat(client).status_code == 200
    r = chat(client, model="gpt-4")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"
    assert r.json()["error"]["param"] == "model"


def test_n_choices_are_indexed(client: TestClient) -> None:
    data = chat(client, n=3).json()
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert data["choices"][2]["message"]["content"].startswith("[2]")


def test_stop_string_ends_the_choice(client: TestClient, engine: FakeEngine) -> None:
    data = chat(client, stop=["fake"]).json()
    (choice,) = data["choices"]
    assert choice["message"]["content"] == "Hello from the "
    assert choice["finish_reason"] == "stop"
    assert choice["stop_reason"] == "fake"
    assert engine.requests[0][1].stop == ["fake"]


def test_max_tokens_gives_length(client: TestClient) -> None:
    data = chat(client, max_completion_tokens=7).json()
    assert data["choices"][0]["message"]["content"] == "Hello f"
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 7


def test_sampling_fields_reach_the_engine(client: TestClient, engine: FakeEngine) -> None:
    chat(client, temperature=0.3, top_p=0.9, seed=7, presence_penalty=0.5, max_tokens=9)
    _, sampling = engine.requests[0]
    assert (sampling.temperature, sampling.top_p, sampling.seed) == (0.3, 0.9, 7)
    assert sampling.presence_penalty == 0.5
    assert sampling.max_tokens == 9


def test_unset_fields_use_the_model_defaults(engine: FakeEngine) -> None:
    engine.sampling_defaults = {"temperature": 0.6}
    with serve(engine) as client:
        chat(client)
        chat(client, temperature=0.0)
    assert [s.temperature for _, s in engine.requests] == [0.6, 0.0]
    assert engine.requests[0][1].max_tokens == engine.max_model_len - len(engine.requests[0][0])


def test_logprobs(client: TestClient) -> None:
    data = chat(client, logprobs=True, top_logprobs=2, max_tokens=3).json()
    content = data["choices"][0]["logprobs"]["content"]
    assert [t["token"] for t in content] == ["H", "e", "l"]
    assert all(len(t["top_logprobs"]) == 2 for t in content)
    assert content[0]["bytes"] == [ord("H")]


def test_logprobs_as_token_ids(client: TestClient) -> None:
    body = {"logprobs": True, "top_logprobs": 1, "max_tokens": 3}
    data = chat(client, return_tokens_as_token_ids=True, **body).json()
    content = data["choices"][0]["logprobs"]["content"]
    assert [t["token"] for t in content] == [f"token_id:{ord(c)}" for c in "Hel"]
    assert content[0]["top_logprobs"][0]["token"] == f"token_id:{ord('H')}"
    assert content[0]["bytes"] == [ord("H")]  # bytes stay the token's text
    events = sse_payloads(chat(client, stream=True, return_tokens_as_token_ids=True, **body).text)
    streamed = [
        t["token"]
        for e in events[:-1]
        for c in e["choices"]
        for t in (c.get("logprobs") or {}).get("content") or []
    ]
    assert streamed == [t["token"] for t in content]


def test_json_schema_response_format_reaches_engine(client: TestClient, engine: FakeEngine) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema}}
    assert chat(client, response_format=fmt).status_code == 200
    structured = engine.requests[0][1].structured
    assert structured is not None
    assert structured.json_schema == schema
    chat(client, response_format={"type": "json_object"})
    assert engine.requests[1][1].structured.kind == "json_object"


def test_reasoning_is_split_from_content() -> None:
    engine = FakeEngine("<think>two plus two</think> four")
    with serve(engine) as client:
        message = chat(client).json()["choices"][0]["message"]
        assert message["reasoning_content"] == "two plus two"
        assert message["reasoning"] == "two plus two"
        assert message["content"] == " four"
        chunks = sse_payloads(chat(client, stream=True).text)
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1] if c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "two plus two"
    assert "".join(d.get("content", "") for d in deltas) == " four"


def test_continue_final_message_keeps_the_assistant_turn_open(
    client: TestClient, engine: FakeEngine
) -> None:
    messages = [*MESSAGES, {"role": "assistant", "content": "Hel"}]
    r = client.post(
        "/v1/chat/completions", json={"messages": messages, "continue_final_message": True}
    )
    assert r.status_code == 200
    assert engine.prompts[-1].endswith("<assistant>Hel")


def test_stream_order(client: TestClient) -> None:
    r = chat(client, n=2, stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_payloads(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    # 1. one role chunk per choice, first
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [
        {"role": "assistant", "content": ""}
    ] * 2
    assert [c["choices"][0]["index"] for c in chunks[:2]] == [0, 1]
    # 2. exactly one finish_reason per choice, and nothing for a choice after it
    finished: Counter[int] = Counter()
    for c in chunks[2:-1]:
        for choice in c["choices"]:
            assert finished[choice["index"]] == 0, "delta after finish_reason"
            if choice.get("finish_reason"):
                finished[choice["index"]] += 1
    assert finished == Counter({0: 1, 1: 1})
    # 3. the usage chunk last, with no choices
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    assert all("usage" not in c for c in chunks[:-1])
    assert len({c["id"] for c in chunks}) == 1


def test_stream_without_usage_has_no_usage_chunk(client: TestClient, engine: FakeEngine) -> None:
    events = sse_payloads(chat(client, stream=True).text)
    assert events[-1] == "[DONE]"
    assert all("usage" not in e for e in events[:-1])
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == engine.reply


def test_engine_failure_mid_stream_is_an_error_event() -> None:
    with serve(FakeEngine(fail_after=2)) as client:
        events = sse_payloads(chat(client, stream=True).text)
        assert events[-1] == "[DONE]"
        assert events[-2]["error"]["type"] == "server_error"
        r = chat(client)
        assert r.status_code == 500
        assert r.json()["error"]["message"] == "fake engine failure"
        assert client.get("/health").status_code == 200
