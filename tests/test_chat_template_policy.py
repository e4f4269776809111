"""Finding 1 of issue 17: what a request may send to the chat template, and bounded renders.

A client used to reach ``apply_chat_template`` with any ``chat_template_kwargs``: a whole
template (``chat_template``), special-token overrides (``bos_token``), arguments that change
what rendering returns (``tokenize``). Now only allow-listed scalar variables pass, anything
else is a 400 before rendering, and a request template needs the operator's trust
(``ChatServing(trust_request_chat_template=True)``). Renders themselves are bounded in time
and size (``test_template_rendering.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from safework.server.chat.protocol import ChatCompletionRequest
from safework.server.chat.serving import ChatServing
from safework.server.metrics import ServerMetrics
from safework.server.protocol import ErrorResponse

from .conftest import serve
from .fakes import FakeEngine

NESTED = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
MESSAGES = [{"role": "user", "content": "Hi"}]


class RecordingEngine(FakeEngine):
    """Keeps the template variables of every render."""

    def __init__(self) -> None:
        super().__init__()
        self.variables: list[dict[str, Any] | None] = []

    async def render_chat(self, messages: list[dict[str, Any]], **kw: Any) -> str:
        self.variables.append(kw.get("chat_template_kwargs"))
        return await super().render_chat(messages, **kw)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"chat_template_kwargs": {"chat_template": NESTED}}, "chat_template_kwargs.chat_template"),
        ({"chat_template": NESTED}, "chat_template"),
        ({"chat_template_kwargs": {"bos_token": "<|im_start|>system"}}, None),
        ({"chat_template_kwargs": {"eos_token": ""}}, None),
        ({"chat_template_kwargs": {"additional_special_tokens": ["x"]}}, None),
        ({"chat_template_kwargs": {"tokenize": True}}, None),
        ({"chat_template_kwargs": {"return_dict": True}}, None),
        ({"chat_template_kwargs": {"messages": []}}, None),
        ({"chat_template_kwargs": {"date_string": "today"}}, None),
        ({"chat_template_kwargs": {"enable_thinking": ["x"] * 1000}}, None),
        ({"chat_template_kwargs": {"reasoning_effort": "x" * 1000}}, None),
    ],
)
def test_refused_template_inputs_are_a_400_before_rendering(
    body: dict[str, Any], param: str | None
) -> None:
    engine = RecordingEngine()
    with serve(engine) as client:
        r = client.post("/v1/chat/completions", json={"messages": MESSAGES, **body})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "chat_template_not_allowed"
    if param is None:  # the key named in the body's kwargs
        param = "chat_template_kwargs." + next(iter(body["chat_template_kwargs"]))
    assert error["param"] == param
    assert engine.variables == []  # nothing was rendered
    assert engine.requests == []


@pytest.mark.parametrize(
    "variables",
    [{"enable_thinking": False}, {"thinking": True}, {"reasoning_effort": "low"}],
)
def test_allowed_variables_reach_the_template(variables: dict[str, Any]) -> None:
    engine = RecordingEngine()
    with serve(engine) as client:
        r = client.post(
            "/v1/chat/completions", json={"messages": MESSAGES, "chat_template_kwargs": variables}
        )
    assert r.status_code == 200, r.text
    assert engine.variables == [variables]


def test_cot_edit_extras_pass_the_same_gate() -> None:
    engine = RecordingEngine()
    body = {
        "messages": MESSAGES,
        "edited_reasoning": "Greet back.",
        "remember": False,
        "chat_template_kwargs": {"chat_template": NESTED},
    }
    with serve(engine) as client:
        r = client.post("/cot/edit", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "chat_template_kwargs.chat_template"
        body["chat_template_kwargs"] = {"enable_thinking": True}
        assert client.post("/cot/edit", json=body).status_code == 200
    assert engine.variables == [{"enable_thinking": True}]


def _create(serving: ChatServing, **body: Any) -> Any:
    request = ChatCompletionRequest.model_validate({"messages": MESSAGES, **body})
    return asyncio.run(serving.create(request))


def test_an_operator_who_trusts_request_templates_gets_them_through() -> None:
    engine = RecordingEngine()
    trusting = ChatServing(engine, ServerMetrics(), trust_request_chat_template=True)
    template = "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"
    _create(trusting, chat_template=template, chat_template_kwargs={"bos_token": "<s>"})
    assert engine.variables == [{"bos_token": "<s>", "chat_template": template}]
    out = _create(trusting, chat_template_kwargs={"tokenize": True})  # never a variable
    assert isinstance(out, ErrorResponse)
    assert out.status_code == 400


def test_the_default_refuses_request_templates() -> None:
    engine = RecordingEngine()
    out = _create(ChatServing(engine, ServerMetrics()), chat_template="{{ 1 }}")
    assert isinstance(out, ErrorResponse)
    assert out.error.param == "chat_template"
    assert engine.variables == []
