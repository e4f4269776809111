"""Token-id prompts outside the model's vocabulary are a 400 before the engine sees them."""

from __future__ import annotations

import pytest

from .conftest import serve
from .fakes import FakeEngine


@pytest.mark.parametrize("prompt", [[1, 2, 50], [-1], [[5], [7, 99]]])
def test_out_of_vocabulary_ids_are_refused(prompt: list) -> None:
    engine = FakeEngine()
    engine.vocab_size = 50
    with serve(engine) as client:
        r = client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 2})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "prompt"
    assert "vocabulary" in error["message"]
    assert engine.requests == []


def test_ids_inside_the_vocabulary_are_served() -> None:
    engine = FakeEngine()
    engine.vocab_size = 50
    with serve(engine) as client:
        r = client.post("/v1/completions", json={"prompt": [0, 1, 49], "max_tokens": 2})
    assert r.status_code == 200, r.text
    assert engine.requests[0][0] == [0, 1, 49]
