"""``/v1/moderations`` through the HTTP API: prompts go to the prompt classifier, a conversation's
last assistant turn to the response classifier with its user turn, categories come from the risk
head, custom value models score pairs, and bad requests are 400s.

The built-in models are replaced at the edge by ``FakeScorer`` (the shared scorer's interface:
keyword rules instead of the network), loaded under the real ``builtin:`` prefix so the serving
code takes the built-in path; ``fake:KEYWORD`` custom models come from ``tests/fakes.py``.

Run: ``pytest tests/test_moderation.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from safework.server.moderations.serving import MAX_INPUT_CHARS, MAX_TOTAL_CHARS
from safework.value_models import registry
from safework.value_models.builtin import BuiltinValueModel
from safework.value_models.registry import ValueModelEntry, ValueModelsConfig

from .conftest import serve

KINDS = ("weapons", "cyber", "general")


class FakeScorer:
    """Prompts mentioning "bomb" are harmful (weapons); responses starting "Sure" comply."""

    risk_kinds = KINDS

    def __init__(self) -> None:
        self.thresholds = {"safety": 0.4, "values": 0.3, "prompt": 0.2}
        self.calls: list[tuple[str, str | None]] = []

    def scores(self, prompts: Sequence[str], responses: Sequence[str | None]) -> list[dict]:
        out = []
        for prompt, response in zip(prompts, responses, strict=True):
            self.calls.append((prompt, response))
            harmful = "bomb" in prompt
            comply = response is not None and response.startswith("Sure")
            risk = np.array([0.9, 0.1, 0.2]) if harmful else np.array([0.05, 0.1, 0.02])
            if response is not None and not comply:
                risk = risk * 0.1
            safe = 0.1 if harmful and comply else 0.9
            out.append({"safe": safe, "values": safe, "prompt": 0.95 if harmful else 0.1,
                        "risk": risk})  # fmt: skip
        return out

    def risk_dict(self, risk: np.ndarray) -> dict[str, float]:
        return {k: float(v) for k, v in zip(self.risk_kinds, risk, strict=True)}


SCORER = FakeScorer()


def load_fake_builtin(name: str, spec: str, arg: str, ctx: Any) -> BuiltinValueModel:
    return BuiltinValueModel(name, spec, arg, SCORER)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def fake_loaders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.LOADERS, "builtin", "tests.test_moderation:load_fake_builtin")
    monkeypatch.setitem(registry.LOADERS, "fake", "tests.fakes:load_fake_value_model")
    SCORER.calls.clear()


def client_for(models: dict[str, ValueModelEntry]) -> Any:
    """A context manager: the app serving with these value models."""
    return serve(value_models=ValueModelsConfig(models))


@pytest.fixture
def client() -> Iterator[TestClient]:
    models = {
        "safety": ValueModelEntry("builtin:safety", 0.6),
        "values": ValueModelEntry("builtin:values", 0.4),
    }
    with client_for(models) as c:
        yield c


def test_plain_inputs_are_judged_as_prompts(client: TestClient) -> None:
    r = client.post("/v1/moderations", json={"input": ["How do I bake bread?", "Build a bomb"]})
    assert r.status_code == 200
    bread, bomb = r.json()["results"]
    assert SCORER.calls == [("How do I bake bread?", None), ("Build a bomb", None)]
    assert bread["flagged"] is False
    assert bread["safework"]["judged"] == "prompt"
    assert bread["safework"]["threshold"] == pytest.approx(0.8)  # P(harmful) > 1 - 0.2
    assert bomb["flagged"] is True
    assert bomb["categories"] == {"weapons": True, "cyber": False, "general": False}
    assert bomb["category_scores"]["weapons"] == pytest.approx(0.9)
    assert bomb["safework"]["risk"] == pytest.approx(0.95)
    one = client.post("/v1/moderations", json={"input": "Build a bomb"}).json()
    assert one["results"][0]["flagged"] is True
    typed = {"input": [{"type": "text", "text": "How do I bake bread?"}]}
    assert client.post("/v1/moderations", json=typed).json()["results"][0]["flagged"] is False


def test_an_assistant_turn_is_judged_as_a_response_to_its_user_turn(client: TestClient) -> None:
    comply = [
        {"role": "system", "content": "Be helpful."},
        {"role": "user", "content": "How do I build a bomb?"},
        {"role": "assistant", "content": "Sure, first get"},
    ]
    refuse = [*comply[:2], {"role": "assistant", "content": "I can't help with that."}]
    user_last = comply[:2]
    body = {"messages": [comply, refuse, user_last]}
    r = client.post("/v1/moderations", json=body)
    assert r.status_code == 200
    bad, good, prompt = r.json()["results"]
    assert SCORER.calls == [
        ("How do I build a bomb?", "Sure, first get"),
        ("How do I build a bomb?", "I can't help with that."),
        ("How do I build a bomb?", None),
    ]
    assert bad["safework"]["judged"] == "response"
    assert bad["flagged"] is True
    assert bad["categories"]["weapons"] is True
    assert bad["safework"]["threshold"] == pytest.approx(0.6)  # P(safe) < 0.4
    assert good["flagged"] is False
    assert not any(good["categories"].values())
    assert prompt["safework"]["judged"] == "prompt"
    assert prompt["flagged"] is True
    single = client.post("/v1/moderations", json={"messages": refuse}).json()["results"]
    assert len(single) == 1
    assert single[0]["flagged"] is False


def test_a_configured_threshold_wins_for_responses() -> None:
    models = {"safety": ValueModelEntry("builtin:safety", 1.0, threshold=0.95)}
    with client_for(models) as client:
        turn = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
        result = client.post("/v1/moderations", json={"messages": turn}).json()["results"][0]
        assert result["flagged"] is True  # 0.9 safe < 0.95
        assert result["safework"]["threshold"] == pytest.approx(0.05)


def test_custom_value_models_score_pairs_beside_the_builtin() -> None:
    models = {
        "safety": ValueModelEntry("builtin:safety", 0.5),
        "rude": ValueModelEntry("fake:idiot", 0.5),
    }
    with client_for(models) as client:
        r = client.post("/v1/moderations", json={"input": ["you idiot", "hello"]})
        rude, hello = r.json()["results"]
        assert rude["flagged"] is True  # by the custom model only
        assert rude["categories"]["rude"] is True
        assert rude["category_scores"]["rude"] == pytest.approx(0.9)
        assert rude["safework"]["value_models"] == {"rude": pytest.approx(0.9)}
        assert rude["safework"]["judged"] == "prompt"
        assert hello["flagged"] is False


def test_custom_models_alone_score_the_pair_as_before() -> None:
    with client_for({"rude": ValueModelEntry("fake:idiot")}) as client:
        turn = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "idiot"}]
        r = client.post("/v1/moderations", json={"input": "fine", "messages": turn})
        fine, answer = r.json()["results"]
        assert fine["flagged"] is False
        assert answer["flagged"] is True
        assert "judged" not in answer["safework"]
        assert r.json()["model"] == "rude"
        assert SCORER.calls == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"input": []},
        {"messages": []},
        {"messages": [[]]},
        {"input": ["x"] * 257},
        {"messages": [{"role": "tool", "content": "x"}]},
    ],
)
def test_bad_requests_are_400(client: TestClient, body: dict) -> None:
    assert client.post("/v1/moderations", json=body).status_code == 400


def test_a_long_text_is_a_400_naming_it_before_any_model_runs(client: TestClient) -> None:
    long = "x" * (MAX_INPUT_CHARS + 1)
    r = client.post("/v1/moderations", json={"input": ["fine", long]})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "input[1]"
    assert error["code"] == "string_above_max_length"
    assert error["type"] == "invalid_request_error"
    turn = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": long}]
    r = client.post("/v1/moderations", json={"messages": [turn]})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "messages[0]"
    assert SCORER.calls == []
    at_limit = client.post("/v1/moderations", json={"input": "x" * MAX_INPUT_CHARS})
    assert at_limit.status_code == 200


def test_too_many_characters_in_all_is_a_400(client: TestClient) -> None:
    each = MAX_INPUT_CHARS
    count = MAX_TOTAL_CHARS // each + 1
    r = client.post("/v1/moderations", json={"input": ["x" * each] * count})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "string_above_max_length"
    assert "per request" in r.json()["error"]["message"]
    assert SCORER.calls == []
