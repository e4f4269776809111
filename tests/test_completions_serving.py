"""Text completions against the fake engine: batches, echo, legacy logprobs, streaming."""

from __future__ import annotations

from fastapi.testclient import TestClient

from .fakes import FakeEngine
from .sse import sse_payloads


def complete(client: TestClient, **body):
    return client.post("/v1/completions", json={"prompt": "Once upon a time", **body})


def test_single_prompt(client: TestClient, engine: FakeEngine) -> None:
    data = complete(client, max_tokens=50).json()
    assert data["object"] == "text_completion"
    assert data["choices"][0]["text"] == engine.reply
    assert data["usage"]["prompt_tokens"] == len("Once upon a time")


def test_default_max_tokens_is_16(client: TestClient) -> None:
    data = complete(client).json()
    assert data["usage"]["completion_tokens"] == 16
    assert data["choices"][0]["finish_reason"] == "length"


def test_batch_of_prompts_and_n_index_choices(client: TestClient, engine: FakeEngine) -> None:
    data = complete(client, prompt=["a", "bb"], n=2, max_tokens=50).json()
    assert [c["index"] for c in data["choices"]] == [0, 1, 2, 3]
    assert data["choices"][1]["text"].startswith("[1]")
    assert data["usage"]["prompt_tokens"] == 3
    assert len(engine.requests) == 2


def test_token_id_prompt(client: TestClient, engine: FakeEngine) -> None:
    assert complete(client, prompt=[72, 105]).status_code == 200
    assert engine.requests[0][0] == [72, 105]


def test_echo_and_logprobs(client: TestClient) -> None:
    data = complete(client, prompt="Hi:", echo=True, logprobs=1, max_tokens=3).json()
    choice = data["choices"][0]
    assert choice["text"] == "Hi:Hel"
    lp = choice["logprobs"]
    assert lp["tokens"] == ["H", "e", "l"]
    assert lp["text_offset"] == [3, 4, 5]
    assert lp["top_logprobs"][0] == {"H": -0.5}


def test_tokens_as_token_ids(client: TestClient) -> None:
    """vLLM's extension: exact ids for clients that compare tokens, in JSON and streams."""
    body = {"prompt": "Hi:", "logprobs": 1, "max_tokens": 3, "return_tokens_as_token_ids": True}
    lp = complete(client, **body).json()["choices"][0]["logprobs"]
    assert lp["tokens"] == [f"token_id:{ord(c)}" for c in "Hel"]
    assert lp["top_logprobs"][0] == {f"token_id:{ord('H')}": -0.5}
    assert lp["text_offset"] == [0, 1, 2]  # offsets still count text
    events = sse_payloads(complete(client, stream=True, **body).text)
    streamed = [t for e in events[:-1] for c in e["choices"] for t in c["logprobs"]["tokens"]]
    assert streamed == lp["tokens"]


def test_stream(client: TestClient, engine: FakeEngine) -> None:
    r = complete(client, stream=True, max_tokens=50, stream_options={"include_usage": True})
    events = sse_payloads(r.text)
    assert events[-1] == "[DONE]"
    assert events[-2]["usage"]["completion_tokens"] == len(engine.reply)
    text = "".join(c["text"] for e in events[:-2] for c in e["choices"])
    assert text == engine.reply
    finishes = [c.get("finish_reason") for e in events[:-2] for c in e["choices"]]
    assert finishes.count("stop") == 1


def test_unsupported_fields(client: TestClient, engine: FakeEngine) -> None:
    assert complete(client, suffix="end").status_code == 400
    assert complete(client, best_of=3).status_code == 400
    assert complete(client, prompt=[]).status_code == 400
    assert engine.requests == []
