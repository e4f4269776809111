"""``POST /cot/edit`` and ``/v1/memory`` (corrections and standing preferences) through the
HTTP API, on a scripted engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from safework.memory.records import MAX_PREFERENCES
from safework.server.memory import serving as memory_serving
from safework.server.memory.serving import PREFERENCES_HEADER, MemorySettings

from .conftest import serve
from .fakes import BagOfWordsEncoder, ScriptEngine
from .sse import sse_payloads

ALICE = {"Authorization": "Bearer sk-alice-0001"}
BOB = {"Authorization": "Bearer sk-bob-000002"}
KEYS = {"sk-alice-0001": "alice", "sk-bob-000002": "bob"}
QUESTION = "What is the atomic number of tungsten?"
EDIT = {
    "messages": [{"role": "user", "content": QUESTION}],
    "reasoning": "Tungsten is W, and W is number 79.",
    "edited_reasoning": "Tungsten is W; 79 is gold. Tungsten's atomic number is 74.",
    "answer": "79",
    "feedback": "79 is gold",
}


@pytest.fixture(autouse=True)
def fake_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_serving, "default_encoder", BagOfWordsEncoder)


@pytest.fixture
def engine() -> ScriptEngine:
    return ScriptEngine([" So the answer is 74.</think>", "74"])


@pytest.fixture
def client(engine: ScriptEngine, tmp_path: Path) -> Iterator[TestClient]:
    with serve(engine, api_keys=KEYS, memory=MemorySettings(folder=tmp_path)) as c:
        yield c


def edit(client: TestClient, headers: dict[str, str] = ALICE, **body: Any) -> Any:
    return client.post("/cot/edit", json={**EDIT, **body}, headers=headers)


def records(client: TestClient, headers: dict[str, str] = ALICE, **params: Any) -> Any:
    return client.get("/v1/memory", headers=headers, params=params).json()


def test_the_model_continues_the_corrected_reasoning(
    client: TestClient, engine: ScriptEngine
) -> None:
    r = edit(client)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "chat.completion"
    message = data["choices"][0]["message"]
    assert message["reasoning_content"] == EDIT["edited_reasoning"] + " So the answer is 74."
    assert message["content"] == "74"
    # The final assistant message was continued, not restarted.
    assert engine.seen[0].endswith("<assistant><think>\n" + EDIT["edited_reasoning"])
    # Usage counts what the model generated, not the user's text.
    generated = len(" So the answer is 74.</think>") + len("74")
    assert data["usage"]["completion_tokens"] == generated
    assert data["memory_id"].startswith("mem_")


def test_the_correction_is_stored_for_its_tenant_only(client: TestClient) -> None:
    memory_id = edit(client).json()["memory_id"]
    r = client.get(f"/v1/memory/{memory_id}", headers=ALICE)
    assert r.status_code == 200
    record = r.json()
    assert record["question"] == QUESTION
    assert record["reasoning"] == "Tungsten is W, and W is number 79.\nAnswer given: 79"
    assert record["corrected_reasoning"] == EDIT["edited_reasoning"] + " So the answer is 74."
    assert record["answer"] == "74"
    assert record["feedback"] == "79 is gold"
    assert record["model"] == "fake-model"
    assert "tenant" not in record
    missing = client.get("/v1/memory/mem_" + "0" * 24, headers=ALICE)
    other = client.get(f"/v1/memory/{memory_id}", headers=BOB)
    assert other.status_code == missing.status_code == 404
    assert other.json()["error"]["code"] == missing.json()["error"]["code"] == "memory_not_found"
    assert records(client, BOB)["data"] == []
    assert client.delete(f"/v1/memory/{memory_id}", headers=BOB).status_code == 404
    assert client.get(f"/v1/memory/{memory_id}", headers=ALICE).status_code == 200


def test_a_model_that_never_closes_its_reasoning_still_answers(tmp_path: Path) -> None:
    engine = ScriptEngine([" So it is 74.", "The answer is 74."])
    with serve(engine, api_keys=KEYS, memory=MemorySettings(folder=tmp_path)) as client:
        data = edit(client).json()
    message = data["choices"][0]["message"]
    assert message["reasoning_content"] == EDIT["edited_reasoning"] + " So it is 74."
    assert message["content"] == "The answer is 74."
    assert engine.seen[1].endswith(" So it is 74.</think>\n\n")


def test_remember_false_stores_nothing(client: TestClient) -> None:
    data = edit(client, remember=False).json()
    assert "memory_id" not in data
    assert records(client)["data"] == []


def test_a_streamed_edit_ends_with_the_memory_id(client: TestClient) -> None:
    r = edit(client, stream=True)
    assert r.status_code == 200
    events = sse_payloads(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    reasoning = "".join(
        c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks if c["choices"]
    )
    assert reasoning.startswith(EDIT["edited_reasoning"])
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "stop"
    memory_id = last["memory_id"]
    assert client.get(f"/v1/memory/{memory_id}", headers=ALICE).json()["answer"] == "74"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"edited_reasoning": ""}, "edited_reasoning"),
        ({"edited_reasoning": "   \n "}, "edited_reasoning"),
        ({"edited_reasoning": "x</think>y"}, "edited_reasoning"),
        ({"messages": [{"role": "system", "content": "Be brief."}]}, "messages"),
        (
            {
                "messages": [
                    {"role": "user", "content": QUESTION},
                    {"role": "assistant", "content": "79"},
                ]
            },
            "messages",
        ),
        ({"remember": "sometimes"}, "remember"),
    ],
)
def test_bad_edits_are_400_and_store_nothing(
    client: TestClient, engine: ScriptEngine, body: dict[str, Any], param: str
) -> None:
    r = edit(client, **body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert engine.requests == []
    assert records(client)["data"] == []


def test_a_body_over_the_limit_is_413_and_stores_nothing(tmp_path: Path) -> None:
    engine = ScriptEngine(["74"])
    with serve(
        engine, api_keys=KEYS, memory=MemorySettings(folder=tmp_path), max_body_bytes=2048
    ) as client:
        r = edit(client, feedback="x" * 3000)
        assert r.status_code == 413
        assert records(client)["data"] == []


def test_remembering_needs_the_memory(engine: ScriptEngine) -> None:
    with serve(engine, api_keys=KEYS) as client:
        r = edit(client)
        assert r.status_code == 400
        assert r.json()["error"]["param"] == "remember"
        assert r.json()["error"]["code"] == "memory_off"  # the web page resends remember=false
        assert edit(client, remember=False).status_code == 200
        assert client.get("/v1/memory", headers=ALICE).status_code == 404


def chat(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    question = "Tell me the atomic number of tungsten?"
    payload = {"messages": [{"role": "user", "content": question}], **body}
    return client.post("/v1/chat/completions", json=payload, headers=headers).json()


def test_later_questions_get_the_correction_as_guidance(
    client: TestClient, engine: ScriptEngine
) -> None:
    memory_id = edit(client).json()["memory_id"]
    data = chat(client, ALICE)
    hits = data["safework"]["memory"]["hits"]
    assert [h["id"] for h in hits] == [memory_id]
    assert 0.5 <= hits[0]["similarity"] <= 1.0
    prompt = engine.seen[-1]
    assert "The user corrected your reasoning" in prompt
    assert "Correction: Tungsten is W; 79 is gold." in prompt
    # Off by request, and never across tenants.
    assert "safework" not in chat(client, ALICE, safework={"memory": {"enabled": False}})
    assert "safework" not in chat(client, BOB)
    assert "corrected your reasoning" not in engine.seen[-1]
    strict = chat(client, ALICE, safework={"memory": {"min_similarity": 0.99}})
    assert "safework" not in strict


def test_memory_settings_are_checked(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "hi"}],
            "safework": {"memory": {"top_k": 0}},
        },
        headers=ALICE,
    )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "safework.memory.top_k"


def test_the_list_pages_filters_and_deletes(client: TestClient) -> None:
    ids = [edit(client, feedback=f"note {i}").json()["memory_id"] for i in range(3)]
    first = records(client, limit=2)
    assert [r["id"] for r in first["data"]] == ids[::-1][:2]  # newest first
    assert first["has_more"] is True
    rest = records(client, limit=2, after=first["last_id"])
    assert [r["id"] for r in rest["data"]] == [ids[0]]
    assert rest["has_more"] is False
    assert [r["id"] for r in records(client, q="NOTE 1")["data"]] == [ids[1]]
    r = client.delete(f"/v1/memory/{ids[1]}", headers=ALICE)
    assert r.json() == {"id": ids[1], "object": "memory.deleted", "deleted": True}
    assert client.get(f"/v1/memory/{ids[1]}", headers=ALICE).status_code == 404
    assert client.get("/v1/memory", headers=ALICE, params={"after": ids[1]}).status_code == 404
    assert client.get("/v1/memory", headers=ALICE, params={"limit": 0}).status_code == 400


def test_memory_metrics(client: TestClient) -> None:
    edit(client)
    chat(client, ALICE)
    metrics = client.get("/metrics", headers=ALICE).text
    assert "safework_memory_records 1.0" in metrics  # a total: no tenant named
    assert "tenant=" not in metrics
    assert "safework_memory_retrieval_seconds_count 1.0" in metrics
    assert "safework_memory_hits_sum 1.0" in metrics


def test_a_malformed_id_is_a_404_like_a_missing_one(client: TestClient) -> None:
    for path in ("/v1/memory/foo", "/v1/memory/mem_zz", "/v1/memory/' OR 1=1 --"):
        assert client.get(path, headers=ALICE).status_code == 404
        assert client.delete(path, headers=ALICE).status_code == 404


# --------------------------------------------------------------------------- preferences
# POST /v1/memory (kind preference) and /cot/edit scope "always": listed, filtered, deleted,
# given to every later answer of their tenant whatever the question, counted in the quota.

UNRELATED = "How tall is the Eiffel Tower?"


def prefer(client: TestClient, text: str, headers: dict[str, str] = ALICE, **extra: Any) -> Any:
    return client.post(
        "/v1/memory", json={"kind": "preference", "text": text, **extra}, headers=headers
    )


def ask(client: TestClient, headers: dict[str, str], question: str = UNRELATED, **body: Any) -> Any:
    payload = {"messages": [{"role": "user", "content": question}], **body}
    r = client.post("/v1/chat/completions", json=payload, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_preference_guides_every_later_answer_of_its_tenant(
    client: TestClient, engine: ScriptEngine
) -> None:
    r = prefer(client, "  Answer in metric units.  ")
    assert r.status_code == 200, r.text
    pref = r.json()
    assert pref["kind"] == "preference"
    assert pref["text"] == "Answer in metric units."
    data = ask(client, ALICE)
    assert data["safework"]["memory"] == {"hits": [], "preferences": [pref["id"]]}
    prompt = engine.seen[-1]
    assert PREFERENCES_HEADER in prompt
    assert "- Answer in metric units." in prompt
    assert "corrected your reasoning" not in prompt  # no correction was recalled
    ask(client, ALICE, "Something else entirely, about boats?")
    assert "- Answer in metric units." in engine.seen[-1]  # any question at all
    ask(client, ALICE, safework={"memory": {"enabled": False}})
    assert PREFERENCES_HEADER not in engine.seen[-1]  # off by request
    assert "safework" not in ask(client, BOB)  # never another tenant's
    assert PREFERENCES_HEADER not in engine.seen[-1]


def test_preferences_are_listed_filtered_and_deleted(client: TestClient) -> None:
    pref = prefer(client, "Keep it under 50 words.").json()
    correction = client.post("/cot/edit", json=EDIT, headers=ALICE).json()["memory_id"]
    listed = client.get("/v1/memory", headers=ALICE, params={"kind": "preference"}).json()
    assert [m["id"] for m in listed["data"]] == [pref["id"]]
    others = client.get("/v1/memory", headers=ALICE, params={"kind": "correction"}).json()
    assert [(m["id"], m["kind"], m["text"]) for m in others["data"]] == [
        (correction, "correction", None)
    ]
    assert len(client.get("/v1/memory", headers=ALICE).json()["data"]) == 2
    assert client.get("/v1/memory", headers=ALICE, params={"kind": "rule"}).status_code == 400
    assert client.get(f"/v1/memory/{pref['id']}", headers=BOB).status_code == 404
    assert client.delete(f"/v1/memory/{pref['id']}", headers=BOB).status_code == 404
    assert client.get(f"/v1/memory/{pref['id']}", headers=ALICE).json()["text"] == pref["text"]
    assert client.delete(f"/v1/memory/{pref['id']}", headers=ALICE).status_code == 200
    assert "memory" not in ask(client, ALICE).get("safework", {})  # nothing left to give


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"kind": "correction", "text": "x"}, "kind"),
        ({"kind": "preference", "text": "   "}, "text"),
        ({"kind": "preference", "text": "x" * 1001}, "text"),
        ({"kind": "preference"}, "text"),
        ({"kind": "preference", "text": "ok", "tenant": "bob"}, "tenant"),
        ({"kind": "preference", "text": "nul \u0000 inside"}, "text"),
    ],
)
def test_bad_preferences_are_400_and_store_nothing(
    client: TestClient, body: dict[str, Any], param: str
) -> None:
    r = client.post("/v1/memory", json=body, headers=ALICE)
    assert r.status_code == 400, r.text
    assert param in (r.json()["error"]["param"] or "")
    assert client.get("/v1/memory", headers=ALICE).json()["data"] == []


def test_a_correction_with_scope_always_is_a_preference(
    client: TestClient, engine: ScriptEngine
) -> None:
    r = client.post("/cot/edit", json={**EDIT, "scope": "always"}, headers=ALICE)
    assert r.status_code == 200, r.text
    stored = client.get(f"/v1/memory/{r.json()['memory_id']}", headers=ALICE).json()
    assert stored["kind"] == "preference"
    assert stored["text"] == EDIT["feedback"]
    ask(client, ALICE)
    assert f"- {EDIT['feedback']}" in engine.seen[-1]
    for bad, message in (
        ({"scope": "always", "feedback": None}, "needs feedback"),
        ({"scope": "always", "remember": False}, "remember=true"),
        ({"scope": "always", "feedback": "y" * 1001}, "at most 1000"),
        ({"scope": "sometimes"}, "scope"),
    ):
        r = client.post("/cot/edit", json={**EDIT, **bad}, headers=ALICE)
        assert r.status_code == 400, r.text
        assert message in r.json()["error"]["message"]


def test_preferences_count_toward_the_quota_and_have_their_own_limit(
    engine: ScriptEngine, tmp_path: Path
) -> None:
    settings = MemorySettings(folder=tmp_path, max_records=2)
    with serve(engine, api_keys=KEYS, memory=settings) as client:
        assert prefer(client, "Answer in metric units.").status_code == 200
        assert client.post("/cot/edit", json=EDIT, headers=ALICE).status_code == 200
        full = prefer(client, "Keep it short.")
        assert full.status_code == 429
        assert full.json()["error"]["code"] == "memory_quota_exceeded"
        assert prefer(client, "Keep it short.", headers=BOB).status_code == 200
    with serve(engine, api_keys=KEYS, memory=MemorySettings(folder=tmp_path / "b")) as client:
        for i in range(MAX_PREFERENCES):
            assert prefer(client, f"preference number {i}").status_code == 200
        over = prefer(client, "one too many")
        assert over.status_code == 429
        assert "delete one first" in over.json()["error"]["message"]
        assert len(ask(client, ALICE)["safework"]["memory"]["preferences"]) == MAX_PREFERENCES
