"""The aligned strategy through the HTTP API: profiles, the safework block in JSON and SSE,
moderations, metrics, and bad alignment settings refused before anything is generated."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from safework.value_models import registry
from safework.value_models.registry import ValueModelEntry, ValueModelsConfig

from .conftest import serve
from .fakes import StepEngine
from .sse import sse_payloads
from .test_metrics import sample

MESSAGES = [{"role": "user", "content": "How do I stay safe?"}]
SCRIPT = [["unsafe step\n", "careful step\n"], ["Final answer."]]


@pytest.fixture(autouse=True)
def fake_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.LOADERS, "fake", "tests.fakes:load_fake_value_model")


def value_models() -> ValueModelsConfig:
    return ValueModelsConfig(
        {
            "safety": ValueModelEntry("fake:unsafe", weight=0.7, threshold=0.5),
            "values": ValueModelEntry("fake:rude", weight=0.3, threshold=0.0),
        },
        {"candidates": 2},
    )


@pytest.fixture
def engine() -> StepEngine:
    return StepEngine(SCRIPT)


@pytest.fixture
def client(engine: StepEngine) -> Iterator[TestClient]:
    with serve(engine, value_models=value_models(), max_candidates=4, max_beam_width=2) as c:
        yield c


def test_models_lists_the_aligned_profile(client: TestClient) -> None:
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["fake-model", "fake-model:aligned"]


def test_profile_answers_with_steps_and_scores(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions", json={"model": "fake-model:aligned", "messages": MESSAGES}
    )
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["model"] == "fake-model:aligned"
    assert data["choices"][0]["message"]["content"] == "careful step\nFinal answer."
    block = data["safework"]
    assert block["strategy"] == "aligned"
    steps = block["alignment"]["steps"]
    assert [s["text"] for s in steps] == ["careful step\n", "Final answer."]
    assert steps[0]["scores"] == {"safety": 0.9, "values": 0.9}
    assert steps[0]["rejected"][0]["rejected_by"] == ["safety"]
    assert block["alignment"]["rejected"] == 1
    # usage counts the answer's tokens; every candidate is in generated_tokens
    assert data["usage"]["completion_tokens"] == len("careful step\nFinal answer.")
    assert block["alignment"]["generated_tokens"] > data["usage"]["completion_tokens"]


def test_safework_block_selects_alignment_and_overrides(client: TestClient) -> None:
    body = {
        "messages": MESSAGES,
        "safework": {"alignment": {"value_models": {"values": {"weight": 1.0}}}},
    }
    data = client.post("/v1/chat/completions", json=body).json()
    steps = data["safework"]["alignment"]["steps"]
    assert set(steps[0]["scores"]) == {"values"}  # only the requested model
    plain = client.post(
        "/v1/chat/completions", json={"messages": MESSAGES, "safework": {"strategy": "plain"}}
    ).json()
    assert "safework" not in plain


def test_stream_emits_each_step_as_chosen(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions",
        json={"model": "fake-model:aligned", "messages": MESSAGES, "stream": True},
    )
    events = sse_payloads(r.text)
    assert events[-1] == "[DONE]"
    step_chunks = [e for e in events[:-1] if "safework" in e]
    step_events = [ev for c in step_chunks for ev in c["safework"]["events"]]
    chosen = [ev for ev in step_events if ev["type"] == "alignment.step"]
    assert [ev["text"] for ev in chosen] == ["careful step\n", "Final answer."]
    # the step's text rides in the same chunk as its event
    assert step_chunks[0]["choices"][0]["delta"]["content"] == "careful step\n"
    finishes = [
        c["finish_reason"] for e in events[:-1] for c in e["choices"] if "finish_reason" in c
    ]
    assert finishes == ["stop"]


def test_metrics_count_candidates_and_rejections(client: TestClient) -> None:
    client.post("/v1/chat/completions", json={"model": "fake-model:aligned", "messages": MESSAGES})
    text = client.get("/metrics").text
    # cascade: the first step's two candidates, then the streamed rest scored once
    assert sample(text, "safework_guided_candidates_total") == 3
    assert sample(text, "safework_guided_rejected_total") == 1
    assert sample(text, "safework_value_model_latency_seconds_count", model="safety") == 2


@pytest.mark.parametrize(
    ("alignment", "param"),
    [
        ({"value_models": {"nope": {"weight": 1.0}}}, "safework.alignment.value_models"),
        (
            {"value_models": {"safety": {"weight": 0.5}, "values": {"weight": 0.2}}},
            "safework.alignment.value_models",
        ),
        ({"value_models": {"safety": {"weight": 1.0, "threshold": 1.5}}}, None),
        ({"candidates": 5}, "safework.alignment.candidates"),
        ({"beam_width": 3}, "safework.alignment.beam_width"),
        ({"candidates": 2, "beam_width": 2, "max_steps": 0}, "safework.alignment.max_steps"),
        ({"unknown_knob": 1}, "safework.alignment.unknown_knob"),
    ],
)
def test_bad_alignment_settings_are_400(
    client: TestClient, engine: StepEngine, alignment: dict, param: str | None
) -> None:
    body = {"messages": MESSAGES, "safework": {"alignment": alignment}}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    if param:
        assert r.json()["error"]["param"] == param
    assert engine.requests == []


@pytest.mark.parametrize("extra", [{"n": 2}, {"logprobs": True}])
def test_unsupported_with_alignment(client: TestClient, engine: StepEngine, extra: dict) -> None:
    body = {"model": "fake-model:aligned", "messages": MESSAGES, **extra}
    assert client.post("/v1/chat/completions", json=body).status_code == 400
    assert engine.requests == []


def test_aligned_profile_without_value_models_is_404() -> None:
    with serve(StepEngine(SCRIPT)) as client:
        body = {"model": "fake-model:aligned", "messages": MESSAGES}
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 404
        r = client.post(
            "/v1/chat/completions",
            json={"messages": MESSAGES, "safework": {"strategy": "aligned"}},
        )
        assert r.status_code == 400
        assert client.post("/v1/moderations", json={"input": "x"}).status_code == 400


def test_moderations(client: TestClient) -> None:
    r = client.post("/v1/moderations", json={"input": ["a calm question", "an unsafe rude one"]})
    assert r.status_code == 200
    calm, bad = r.json()["results"]
    assert calm["flagged"] is False
    assert bad["flagged"] is True
    assert bad["categories"]["safety"] is True
    assert bad["category_scores"]["safety"] == pytest.approx(0.9)
    assert "safety/unsafe" in bad["category_scores"]
    assert client.post("/v1/moderations", json={"input": []}).status_code == 400
