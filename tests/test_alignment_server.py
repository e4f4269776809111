"""The aligned strategy through the HTTP API: profiles, the safework block in JSON and SSE,
``n > 1`` (one guided decoder per choice), moderations, metrics, and bad alignment settings
refused before anything is generated."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from safework.engine.base import ChoiceDelta, EngineOutput, SamplingConfig
from safework.server import ServerConfig, create_app
from safework.server.fanout import copy_seed
from safework.server.memory import serving as memory_serving
from safework.server.memory.serving import MemorySettings
from safework.value_models import registry
from safework.value_models.registry import ValueModelEntry, ValueModelsConfig

from .conftest import serve
from .fakes import BagOfWordsEncoder, FakeEngine, StepEngine
from .sse import sse_payloads
from .test_disconnect import _call
from .test_metrics import sample

COPY_ID = re.compile(r"-c(\d+)(?=-|$)")
"""A copy's part of an engine request id (``{id}-c{i}-...``); the id itself is random."""


def copy_of(rid: str) -> str:
    """The copy index in an engine request id, as text."""
    found = COPY_ID.search(rid)
    assert found is not None, rid
    return found.group(1)


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
    assert "choices" not in block  # n=1: the one answer's report at the top level
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


@pytest.mark.parametrize(
    "extra", [{"logprobs": True}, {"response_format": {"type": "json_object"}}]
)
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


# --------------------------------------------------------------------------- n > 1

CHOICE_SCRIPT = [["careful {tag}\n", "unsafe {tag}\n"], ["Final {tag}."]]


class ModelLikeStepEngine(FakeEngine):
    """Guided-decoding fake whose candidates depend only on the request, as a model's do, so
    concurrent copies cannot disturb each other. The step is the number of lines already in
    the answer (``CHOICE_SCRIPT``); texts are tagged with what a model's output depends on:
    ``greedy`` at temperature 0, else the seed, else the copy (``-c{i}`` in the request id)
    standing in for independent randomness."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.request_ids: list[str] = []

    async def _steps(
        self, prompt: list[int], s: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        self.request_ids.append(request_id)
        answer = "".join(map(chr, prompt)).rpartition("<assistant>")[2]
        texts = CHOICE_SCRIPT[min(answer.count("\n"), len(CHOICE_SCRIPT) - 1)]
        copy = re.search(r"-c(\d+)(?:-|$)", request_id)
        tag = f"c{copy.group(1) if copy else 0}"
        if s.temperature == 0:
            tag = "greedy"
        elif s.seed is not None:
            tag = f"seed {s.seed}"
        deltas = []
        for i in range(s.n):
            text = texts[i % len(texts)].format(tag=tag)
            stop = "\n" if text.endswith("\n") else None
            deltas.append(
                ChoiceDelta(
                    index=i,
                    text=text,
                    token_ids=[ord(c) for c in text],
                    finish_reason="stop",
                    stop_reason=stop,
                )
            )
        yield EngineOutput(request_id, len(prompt), deltas, finished=True)


def answer(tag: str) -> str:
    return f"careful {tag}\nFinal {tag}."


@pytest.fixture
def model_like() -> ModelLikeStepEngine:
    return ModelLikeStepEngine()


@pytest.fixture
def choices_client(model_like: ModelLikeStepEngine) -> Iterator[TestClient]:
    with serve(model_like, value_models=value_models(), max_n=4) as c:
        yield c


def aligned(client: TestClient, **body: Any) -> Any:
    body = {"model": "fake-model:aligned", "messages": MESSAGES, **body}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return r


def contents(data: dict[str, Any]) -> list[str]:
    return [c["message"]["content"] for c in data["choices"]]


@pytest.mark.parametrize(
    ("alignment", "candidates"),
    [
        ({}, 3),  # cascade: the first step's 2 candidates, then the streamed rest scored once
        ({"mode": "exhaustive"}, 4),  # 2 candidates at each of the 2 steps
        ({"mode": "exhaustive", "beam_width": 2}, 4),  # the steps of each choice's best beam
    ],
)
def test_n_choices_are_independent_aligned_answers(
    choices_client: TestClient,
    model_like: ModelLikeStepEngine,
    alignment: dict[str, Any],
    candidates: int,
) -> None:
    data = aligned(choices_client, n=3, safework={"alignment": alignment}).json()
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert contents(data) == [answer(f"c{i}") for i in range(3)]
    assert [c["finish_reason"] for c in data["choices"]] == ["stop"] * 3
    block = data["safework"]
    assert block["strategy"] == "aligned"
    assert "alignment" not in block  # n>1: each choice's report in `choices`
    assert [c["index"] for c in block["choices"]] == [0, 1, 2]
    for i, choice in enumerate(block["choices"]):
        report = choice["alignment"]
        assert [s["text"] for s in report["steps"]] == [f"careful c{i}\n", f"Final c{i}."]
        assert report["steps"][0]["rejected"][0]["text"] == f"unsafe c{i}\n"
        assert (report["candidates"], report["rejected"]) == (candidates, 1)  # as for n=1
        assert report["mode"] == alignment.get("mode", "cascade")
    assert data["usage"]["completion_tokens"] == sum(map(len, contents(data)))
    assert {copy_of(rid) for rid in model_like.request_ids} == {"0", "1", "2"}


def test_n_choices_stream(choices_client: TestClient) -> None:
    r = aligned(choices_client, n=2, stream=True, stream_options={"include_usage": True})
    events = sse_payloads(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert [(c["choices"][0]["index"], c["choices"][0]["delta"]) for c in chunks[:2]] == [
        (i, {"role": "assistant", "content": ""}) for i in range(2)
    ]
    texts, finished = ["", ""], Counter[int]()
    chosen: dict[int, list[str]] = {0: [], 1: []}
    for c in chunks[2:-1]:
        indexes = [ch["index"] for ch in c["choices"]]
        assert len(indexes) == len(set(indexes)), "a chunk names a choice twice"
        for ch in c["choices"]:
            assert finished[ch["index"]] == 0, "delta after finish_reason"
            texts[ch["index"]] += ch["delta"].get("content") or ""
            finished[ch["index"]] += bool(ch.get("finish_reason"))
        for ev in c.get("safework", {}).get("events", []):
            if ev["type"] == "alignment.step":
                chosen[ev["choice"]].append(ev["text"])
    assert texts == [answer("c0"), answer("c1")]
    assert finished == Counter({0: 1, 1: 1})
    assert chosen == {i: [f"careful c{i}\n", f"Final c{i}."] for i in range(2)}
    # the last chunk carries the whole report, as the JSON response does
    report = chunks[-2]["safework"]
    assert report["strategy"] == "aligned"
    assert [c["alignment"]["rejected"] for c in report["choices"]] == [1, 1]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == sum(map(len, texts))


def test_greedy_n_choices_are_the_same_answer(choices_client: TestClient) -> None:
    data = aligned(choices_client, n=2, temperature=0).json()
    assert contents(data) == [answer("greedy")] * 2


def test_seeded_n_choices_differ_and_repeat(choices_client: TestClient) -> None:
    """Choice ``i`` of a seeded request is the one-choice answer to the copy's seed."""

    def ask(n: int, seed: int) -> list[str]:
        return contents(aligned(choices_client, n=n, temperature=0.8, seed=seed).json())

    pair = ask(2, 5)
    assert pair == ask(1, 5) + ask(1, copy_seed(5, 1))
    assert pair[0] != pair[1]
    assert ask(2, 5) == pair


def test_metrics_count_every_choice(choices_client: TestClient) -> None:
    aligned(choices_client, n=2)
    text = choices_client.get("/metrics").text
    assert sample(text, "safework_guided_candidates_total") == 2 * 3  # twice n=1's count
    assert sample(text, "safework_guided_rejected_total") == 2
    assert sample(text, "safework_value_model_latency_seconds_count", model="safety") == 4


def test_n_above_max_n_is_400(choices_client: TestClient, model_like: ModelLikeStepEngine) -> None:
    body = {"model": "fake-model:aligned", "messages": MESSAGES, "n": 5}
    r = choices_client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "n"
    assert model_like.request_ids == []


def test_n_choices_share_the_memory_hits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_like: ModelLikeStepEngine
) -> None:
    monkeypatch.setattr(memory_serving, "default_encoder", BagOfWordsEncoder)
    memory = MemorySettings(folder=tmp_path)
    with serve(model_like, value_models=value_models(), memory=memory) as client:
        correction = {"messages": MESSAGES, "edited_reasoning": "Stay calm; plan ahead."}
        r = client.post("/cot/edit", json=correction)
        assert r.status_code == 200, r.text
        data = aligned(client, n=2).json()
    block = data["safework"]
    assert [h["id"] for h in block["memory"]["hits"]] == [r.json()["memory_id"]]
    assert [c["index"] for c in block["choices"]] == [0, 1]
    assert contents(data) == [answer("c0"), answer("c1")]


class RecordingEngine(FakeEngine):
    """Records request ids and counts the steps it streamed."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.request_ids: list[str] = []
        self.steps = 0

    async def generate(
        self, prompt_token_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        self.request_ids.append(request_id)
        async for out in super().generate(prompt_token_ids, sampling, request_id):
            self.steps += 1
            yield out


def sent_id(engine: RecordingEngine) -> str:
    """The request's id (its copies' engine requests are ``{id}-c{i}-...``)."""
    return COPY_ID.split(engine.request_ids[0])[0]


@pytest.mark.parametrize("stream", [True, False])
async def test_disconnect_cancels_every_choice(stream: bool) -> None:
    # each copy would stream ~800 steps (8 s) to the end of its budget
    engine = RecordingEngine(reply=" ".join(["word"] * 1000), step_delay=0.01, max_model_len=4096)
    config = ServerConfig(value_models=value_models(), memory=None)
    app = create_app(config, engine_factory=lambda _: engine)
    async with app.router.lifespan_context(app):
        body = {"model": "fake-model:aligned", "messages": MESSAGES, "n": 2, "stream": stream}
        sent = await _call(app, body, disconnect_after=0.2)
        await asyncio.sleep(0.05)
    assert {copy_of(rid) for rid in engine.request_ids} == {"0", "1"}
    assert engine.running == set()  # every copy's engine requests ended...
    assert engine.steps < 400  # ...when the client left, not at their end
    assert [rid for rid in engine.aborted if not COPY_ID.search(rid)] == [sent_id(engine)]
    if stream:
        assert sent[0]["status"] == 200
    body_bytes = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"[DONE]" not in body_bytes
