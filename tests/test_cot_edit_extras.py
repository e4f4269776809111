"""Finding 11 of issue 17: chat fields sent along with ``/cot/edit`` are checked like chat's.

``CotEditRequest`` accepts the chat request's fields (it becomes one), so a bad combination
(``tools`` with ``tool_choice: required``, ``top_logprobs`` without ``logprobs``) used to fail
when the chat request was built, outside any handler: a 500 and a traceback in the log.
Each must be a 400 in the OpenAI error shape naming the field, and nothing generated.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import serve
from .fakes import ScriptEngine

BODY = {
    "messages": [{"role": "user", "content": "What is the atomic number of tungsten?"}],
    "edited_reasoning": "Tungsten is W; its atomic number is 74.",
    "remember": False,
}
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"tools": [TOOL], "tool_choice": "required"}, "tool_choice"),
        ({"tools": [TOOL], "tool_choice": {"type": "function"}}, "tool_choice"),
        ({"top_logprobs": 3}, "top_logprobs requires logprobs"),
        ({"response_format": {"type": "json_schema"}}, "json_schema"),
    ],
)
def test_bad_chat_extras_are_a_400_not_a_500(extra: dict[str, Any], message: str) -> None:
    engine = ScriptEngine([" So 74.</think>", "74"])
    with serve(engine) as client:
        r = client.post("/cot/edit", json={**BODY, **extra})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert message in error["message"]
    assert "Traceback" not in r.text
    assert engine.requests == []  # refused before anything was generated


def test_good_chat_extras_still_work() -> None:
    engine = ScriptEngine([" So 74.</think>", "74"])
    with serve(engine) as client:
        r = client.post("/cot/edit", json={**BODY, "logprobs": True, "top_logprobs": 2})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["logprobs"]["content"]
