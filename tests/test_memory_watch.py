"""Recall by the model's own reasoning (``server/memory/watch.py``) through the HTTP API.

A correction posted to ``/cot/edit`` ("the capital of Turkey is Istanbul" -> "... Ankara")
then guides a *different* question whose draft repeats the mistake: the drafted step is
replaced by the correction, the model continues from it, and the hit is reported with
``kind: "mistake"``. The scripted engine answers by what its prompt holds, so the tests see
exactly what the model was asked to continue from.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from safework.engine.base import ChoiceDelta, EngineOutput, SamplingConfig
from safework.memory.records import CorrectionRecord, MemoryHit
from safework.server.chat.plan import Plan
from safework.server.generation import plain
from safework.server.memory import serving as memory_serving
from safework.server.memory.serving import MemorySettings
from safework.server.memory.watch import MistakeWatch

from .conftest import serve
from .fakes import BagOfWordsEncoder, FakeEngine, ScriptEngine
from .sse import sse_payloads

ALICE = {"Authorization": "Bearer sk-alice-0001"}
BOB = {"Authorization": "Bearer sk-bob-000002"}
KEYS = {"sk-alice-0001": "alice", "sk-bob-000002": "bob"}
CORRECTION = {
    "messages": [{"role": "user", "content": "What is the capital of Turkey?"}],
    "reasoning": "The capital of Turkey is Istanbul.",
    "edited_reasoning": "The capital of Turkey is Ankara.",
}
QUESTION = "Where does the Grand National Assembly meet?"
DRAFT = "It meets in the capital city. The capital of Turkey is Istanbul. It is by the sea."
CONTINUED = " So the Assembly meets in Ankara."
UNRELATED = "How tall is Mount Fuji?"
FUJI = "Mount Fuji is 3,776 metres tall. It is in Japan."


@pytest.fixture(autouse=True)
def fake_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_serving, "default_encoder", BagOfWordsEncoder)


@pytest.fixture
def engine() -> ScriptEngine:
    # The first matching key answers: a prompt that already holds the correction continues it.
    routes = {
        "Turkey is Ankara.": CONTINUED,
        QUESTION: DRAFT,
        UNRELATED: FUJI,
    }
    return ScriptEngine(["Noted."], routes=routes, chunk=4)


@pytest.fixture
def client(engine: ScriptEngine, tmp_path: Path) -> Iterator[TestClient]:
    memory = MemorySettings(folder=tmp_path)
    with serve(engine, api_keys=KEYS, memory=memory) as c:
        r = c.post("/cot/edit", json=CORRECTION, headers=ALICE)
        assert r.status_code == 200, r.text
        yield c


def ask(client: TestClient, question: str, headers: dict[str, str] = ALICE, **body: Any) -> Any:
    memory = {"min_similarity": 0.99, **body.pop("memory", {})}  # no recall by question
    r = client.post(
        "/v1/chat/completions",
        json={
            "model": "fake-model",
            "messages": [{"role": "user", "content": question}],
            "safework": {"memory": memory},
            **body,
        },
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return r


def test_a_repeated_mistake_is_replaced_by_its_correction(
    client: TestClient, engine: ScriptEngine
) -> None:
    memory_id = client.get("/v1/memory", headers=ALICE).json()["data"][0]["id"]
    data = ask(client, QUESTION).json()
    content = data["choices"][0]["message"]["content"]
    assert content == "It meets in the capital city. The capital of Turkey is Ankara." + CONTINUED
    assert "Istanbul" not in content
    # the model continued from the text before the mistake plus the correction
    assert engine.seen[-1].endswith(
        "It meets in the capital city. The capital of Turkey is Ankara."
    )
    (hit,) = data["safework"]["memory"]["hits"]
    assert hit["id"] == memory_id
    assert hit["kind"] == "mistake"
    assert hit["similarity"] >= MemorySettings.mistake_similarity
    assert data["usage"]["completion_tokens"] > 0
    metrics = client.get("/metrics", headers=ALICE).text
    assert 'safework_memory_mistake_steps_total{outcome="replaced"} 1.0' in metrics


def test_a_streamed_answer_never_shows_the_replaced_step(client: TestClient) -> None:
    r = ask(client, QUESTION, stream=True)
    chunks = [c for c in sse_payloads(r.text) if c != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "It meets in the capital city. The capital of Turkey is Ankara." + CONTINUED
    assert chunks[-1]["safework"]["memory"]["hits"][0]["kind"] == "mistake"
    finishes = [c["choices"][0].get("finish_reason") for c in chunks if c["choices"]]
    assert finishes.count("stop") == 1


def test_other_tenants_and_unrelated_drafts_are_untouched(
    client: TestClient, engine: ScriptEngine
) -> None:
    bob = ask(client, QUESTION, BOB).json()
    assert bob["choices"][0]["message"]["content"] == DRAFT
    assert "memory" not in (bob.get("safework") or {})
    calls = len(engine.seen)
    fuji = ask(client, UNRELATED).json()
    assert fuji["choices"][0]["message"]["content"] == FUJI
    assert len(engine.seen) == calls + 1  # one generation: nothing was replaced
    assert fuji["usage"]["completion_tokens"] == len(FUJI)


@pytest.mark.parametrize(
    "body",
    [
        {"memory": {"mistakes": False}},
        {"memory": {"enabled": False}},
        {"memory": {"mistake_similarity": 1.0}},
        {"n": 2},
        {"logprobs": True},
        {"response_format": {"type": "json_object"}},
    ],
)
def test_the_watch_is_off_when_the_request_says_so_or_cannot_take_it(
    client: TestClient, body: dict[str, Any]
) -> None:
    data = ask(client, QUESTION, **body).json()
    assert data["choices"][0]["message"]["content"] == DRAFT


@pytest.mark.parametrize("steps", [0, 1])  # off; or only the first step, and the mistake is the 2nd
def test_the_server_sets_how_many_steps_are_watched(
    engine: ScriptEngine, tmp_path: Path, steps: int
) -> None:
    memory = MemorySettings(folder=tmp_path, mistake_steps=steps)
    with serve(engine, api_keys=KEYS, memory=memory) as c:
        c.post("/cot/edit", json=CORRECTION, headers=ALICE)
        data = ask(c, QUESTION).json()
    assert data["choices"][0]["message"]["content"] == DRAFT


def test_bad_watch_options_are_400(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions",
        json={
            "model": "fake-model",
            "messages": [{"role": "user", "content": QUESTION}],
            "safework": {"memory": {"mistake_similarity": 2}},
        },
        headers=ALICE,
    )
    assert r.status_code == 400
    assert "mistake_similarity" in r.json()["error"]["message"]


def _record(record_id: str) -> CorrectionRecord:
    return CorrectionRecord(
        id=record_id,
        tenant="alice",
        question="q",
        reasoning="The capital of Turkey is Istanbul.",
        corrected_reasoning="The capital of Turkey is Ankara.",
        answer=None,
        feedback=None,
        model="m",
        created_at=0.0,
    )


def test_a_record_used_both_ways_is_reported_once() -> None:
    watch = MistakeWatch(lambda step, used: None)  # type: ignore[arg-type,return-value]
    one, two = _record("mem_" + "1" * 24), _record("mem_" + "2" * 24)
    watch.hits = [MemoryHit(one, 0.7, "mistake")]
    plan = Plan(plain, [], memory_hits=[MemoryHit(one, 0.55), MemoryHit(two, 0.52)])
    plan.mistakes = watch
    hits = plan.block([])["memory"]["hits"]  # type: ignore[index]
    assert hits == [
        {"id": one.id, "similarity": 0.7, "kind": "mistake"},
        {"id": two.id, "similarity": 0.52, "kind": "question"},
    ]


class RunOnEngine(FakeEngine):
    """Writes a step that never ends ("and on and on ..."), then waits forever."""

    async def _steps(
        self, prompt: list[int], s: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        for _ in range(200):
            yield EngineOutput(
                request_id, len(prompt), [ChoiceDelta(index=0, text="and on ", token_ids=[1])],
                False,
            )  # fmt: skip
        await asyncio.Event().wait()
        yield EngineOutput(request_id, len(prompt), [], True)  # never reached


def test_a_step_that_never_ends_is_released_after_the_hold_limit() -> None:
    async def find(step: str, used: frozenset[str]) -> MemoryHit | None:
        return None

    async def first_text() -> str:
        watch = MistakeWatch(find)
        stream = watch(RunOnEngine(), [1, 2], SamplingConfig(max_tokens=10_000), "r")
        out = await anext(aiter(stream))
        await stream.aclose()
        return out.choices[0].text

    text = asyncio.run(asyncio.wait_for(first_text(), timeout=10))
    assert text == "and on "  # released, although no sentence ended
