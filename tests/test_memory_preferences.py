"""Standing preferences through the HTTP API: ``POST /v1/memory`` (kind ``preference``) and
``/cot/edit`` with ``scope: "always"``; listed, filtered and deleted through ``/v1/memory``;
given to the model on every later answer of their tenant, whatever the question; counted in
the tenant's quota. On a scripted engine, so what reaches the model is read from its prompts.
"""

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
from .test_cot_memory_server import ALICE, BOB, EDIT, KEYS

UNRELATED = "How tall is the Eiffel Tower?"


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
