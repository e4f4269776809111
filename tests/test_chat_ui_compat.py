"""Open WebUI and LibreChat as OpenAI-compatible clients: what each would show from our streams.

The UIs are not run here (no network to fetch them). The readers below replay how each one
consumes a chat-completions stream, as read from their source (docs/CHAT_UIS.md cites the
files and commits):

* ``open_webui_view``: Open WebUI's stream handler (``backend/open_webui/utils/middleware.py``)
  reads only ``choices[0]``; reasoning from ``reasoning_content``, else ``reasoning``, else
  ``thinking``; the answer from ``content``, where it also cuts out ``<think>...</think>``
  blocks (stripped) unless the model's ``reasoning_tags`` parameter is off.
* ``librechat_view``: LibreChat's agents client (``@librechat/agents``): the OpenAI stream
  reader copies a delta's ``reasoning_content`` (else ``reasoning``) next to its ``content``;
  the stream handler files a whole delta as reasoning or text by a small state machine (the
  reasoning field, a ``<think>`` in it, or ``</think>`` in the previous delta), and the
  Reasoning part strips a leading ``<think>`` and a trailing ``</think>``.
* ``tag_view``: a client that only parses tags in the concatenated ``content``.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from safework.errors import ConfigError
from safework.search import base as search_base
from safework.server import search as server_search
from safework.server.chat.serving import ChatServing
from safework.server.cli import add_parser, config_from_args
from safework.server.memory import serving as memory_serving
from safework.server.memory.serving import MemorySettings
from safework.server.metrics import ServerMetrics
from safework.value_models import registry

from .conftest import serve
from .fakes import BagOfWordsEncoder, FakeEngine, ScriptEngine
from .sse import sse_payloads
from .test_alignment_server import value_models
from .test_search_server import settings

KEY = "sk-webui-0001"
AUTH = {"Authorization": f"Bearer {KEY}"}
MESSAGES = [{"role": "user", "content": "What is two plus two?"}]
REASONING = "Two plus two is four."
ANSWER = "The answer is 4."
# One word per engine step: "four.</think>The" mixes reasoning and answer in one step.
REPLY = f"<think>{REASONING}</think>{ANSWER}"
THINK_CONTENT = f"<think>{REASONING}</think>\n\n{ANSWER}"


# --------------------------------------------------------------------------- readers


def first_deltas(payloads: list[Any]) -> Iterator[dict[str, Any]]:
    """``choices[0].delta`` of each chunk that has choices (both UIs skip the others)."""
    for p in payloads:
        if p != "[DONE]" and p.get("choices"):
            yield p["choices"][0].get("delta") or {}


@dataclass
class Block:
    kind: str  # "text", "reasoning" (from a field) or "think" (from tags)
    text: str = ""


START = re.compile(r"<think(\s.*?)?>")


def open_webui_view(payloads: list[Any], reasoning_tags: bool = True) -> tuple[str, str]:
    """``(reasoning, answer)`` as Open WebUI's stream handler builds its content blocks."""
    blocks = [Block("text")]
    content = ""  # all answer text so far, as Open WebUI keeps it
    for delta in first_deltas(payloads):
        reasoning = (
            delta.get("reasoning_content") or delta.get("reasoning") or delta.get("thinking")
        )
        if reasoning:
            if blocks[-1].kind != "reasoning":
                blocks.append(Block("reasoning"))
            blocks[-1].text += reasoning
        value = delta.get("content")
        if value:
            if blocks[-1].kind == "reasoning":  # answer text ends a field-reasoning block
                blocks.append(Block("text"))
            content += value
            blocks[-1].text += value
            if reasoning_tags:
                content = _think_tags(content, blocks)
    shown = [b for b in blocks if b.text.strip()]
    answer = "\n".join(b.text.strip() for b in shown if b.kind == "text")
    return "".join(b.text for b in shown if b.kind != "text"), answer


def _think_tags(content: str, blocks: list[Block]) -> str:
    """Open WebUI's tag handler for ``<think>``: open a block at the start tag; at the end tag
    keep the stripped inside, and start a text block with the stripped rest."""
    if blocks[-1].kind == "text":
        match = START.search(content)
        if match:
            blocks[-1].text = content[: match.start()]
            if not blocks[-1].text:
                blocks.pop()
            blocks.append(Block("think", content[match.end() :]))
            _think_tags(blocks[-1].text, blocks)
    elif blocks[-1].kind == "think" and "</think>" in content:
        inside, _, rest = START.sub("", blocks[-1].text).strip().partition("</think>")
        blocks[-1].text = inside.strip()
        if not blocks[-1].text:
            blocks.pop()
        blocks.append(Block("text", rest.strip()))
        content = re.sub(r"<think(\s.*?)?>(.|\n)*?</think>", "", content, flags=re.DOTALL)
    return content


@dataclass
class LibreChatState:
    token_type: str = "text"  # "text", "think" or "think_and_text"
    switch: str | None = None  # "reasoning" or "content"
    last_token: str | None = None
    parts: list[Block] = field(default_factory=list)

    def add(self, kind: str, text: str) -> None:
        if not self.parts or self.parts[-1].kind != kind:
            self.parts.append(Block(kind))
        self.parts[-1].text += text


def librechat_view(payloads: list[Any]) -> tuple[str, str]:
    """``(reasoning, answer)`` as LibreChat's agents client files a custom endpoint's stream."""
    s = LibreChatState()
    for delta in first_deltas(payloads):
        if "reasoning_content" in delta:
            kwarg = delta["reasoning_content"]
        else:
            kwarg = delta.get("reasoning")
        content = delta.get("content") or ""
        text = kwarg or content
        # handleReasoning: decides the kind of the whole delta
        if kwarg and not content:
            s.token_type, s.switch = "think", "reasoning"
        else:
            if s.switch == "reasoning" and s.token_type != "text" and content:
                s.token_type, s.switch = "text", "content"
            elif "<think>" in content and "</think>" in content:
                s.token_type, s.switch = "think_and_text", "content"
            elif "<think>" in content:
                s.token_type, s.switch = "think", "content"
            elif s.last_token is not None and "</think>" in s.last_token:
                s.token_type, s.switch = "text", "content"
            s.last_token = content
        if not text:
            continue
        if s.token_type == "think_and_text":  # both tags in one delta: split it here
            thinking = re.findall(r"<think>(.*?)</think>", text, flags=re.DOTALL)
            rest = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL).strip()
            if "".join(thinking).strip():
                s.add("think", "\n".join(thinking).strip())
            if rest:
                s.token_type, s.switch = "text", "content"
                s.add("text", rest)
        else:
            s.add(s.token_type, text)
    strip = [
        re.sub(r"\s*</think>\Z", "", re.sub(r"\A<think>\s*", "", b.text)).strip()
        for b in s.parts
        if b.kind == "think"
    ]
    # The Reasoning part's regexes are JavaScript's: `$` is the very end, Python's \Z. Text
    # parts are Markdown, where the blank lines after </think> do not show.
    return "".join(strip), "".join(b.text for b in s.parts if b.kind == "text").strip()


def tag_view(payloads: list[Any]) -> tuple[str, str]:
    """``(reasoning, answer)`` for a client that reads tags in ``content`` and no fields."""
    deltas = list(first_deltas(payloads))
    assert not any("reasoning_content" in d or "reasoning" in d for d in deltas)
    return split_tags("".join(d.get("content") or "" for d in deltas))


def split_tags(content: str) -> tuple[str, str]:
    match = re.fullmatch(r"<think>(.*)</think>\n\n(.*)", content, flags=re.DOTALL)
    assert match, f"not one balanced think block: {content!r}"
    return match.group(1), match.group(2)


# --------------------------------------------------------------------------- helpers


def chat(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/chat/completions", json={"messages": MESSAGES, **body}, headers=AUTH)


def stream(client: TestClient, **body: Any) -> list[Any]:
    r = chat(client, stream=True, **body)
    assert r.status_code == 200, r.text
    return sse_payloads(r.text)


def server(reply: str = REPLY, **config: Any) -> Any:
    return serve(FakeEngine(reply), api_keys={KEY: "webui"}, **config)


# --------------------------------------------------------------------------- fields (default)


def test_fields_show_reasoning_and_answer_apart_in_both_uis() -> None:
    with server() as client:
        payloads = stream(client)
    assert open_webui_view(payloads) == (REASONING, ANSWER)
    assert librechat_view(payloads) == (REASONING, ANSWER)


def test_no_delta_mixes_reasoning_and_answer() -> None:
    """LibreChat would file a mixed delta's reasoning as answer text and drop its content."""
    with server() as client:
        deltas = list(first_deltas(stream(client)))
    assert not [d for d in deltas if d.get("content") and d.get("reasoning_content")]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == REASONING
    assert "".join(d.get("content", "") for d in deltas) == ANSWER


def test_fields_message_keeps_both_fields() -> None:
    with server() as client:
        message = chat(client).json()["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": ANSWER,
        "reasoning_content": REASONING,
        "reasoning": REASONING,
    }


# --------------------------------------------------------------------------- think


def test_think_stream_is_one_tagged_content_that_every_reader_splits() -> None:
    with server(reasoning_output="think") as client:
        payloads = stream(client)
    assert tag_view(payloads) == (REASONING, ANSWER)
    assert open_webui_view(payloads) == (REASONING, ANSWER)
    assert librechat_view(payloads) == (REASONING, ANSWER)
    # </think> travels alone, so LibreChat turns to the answer on the next delta.
    assert {"content": "</think>"} in list(first_deltas(payloads))


def test_think_message_has_the_tags_in_content_and_no_fields() -> None:
    with server(reasoning_output="think") as client:
        assert chat(client).json()["choices"][0]["message"] == {
            "role": "assistant",
            "content": THINK_CONTENT,
        }
    plain = FakeEngine().reply  # a reply without reasoning gets no tags
    with server(plain, reasoning_output="think") as client:
        assert chat(client).json()["choices"][0]["message"] == {
            "role": "assistant",
            "content": plain,
        }
        assert content_of(stream(client)) == plain


def content_of(payloads: list[Any]) -> str:
    """The first choice's ``content`` deltas, joined."""
    return "".join(d.get("content") or "" for d in first_deltas(payloads))


def test_think_tags_are_balanced_per_choice() -> None:
    with server(reasoning_output="think") as client:
        payloads = stream(client, n=2)
    texts = {0: "", 1: ""}
    for p in payloads[:-1]:
        indexes = [c["index"] for c in p["choices"]]
        assert len(indexes) == len(set(indexes)), "a chunk names a choice twice"
        for c in p["choices"]:
            texts[c["index"]] += c["delta"].get("content") or ""
    assert texts[0] == THINK_CONTENT
    assert texts[1] == "[1] " + THINK_CONTENT  # the fake's second choice is tagged "[1]"


@pytest.mark.parametrize("body", [{}, {"max_tokens": 12}])
def test_reasoning_without_answer_still_closes_the_tag(body: dict[str, Any]) -> None:
    # Never closed by the model, or cut by max_tokens inside the reasoning.
    with server("<think>Still thinking it over", reasoning_output="think") as client:
        payloads = stream(client, **body)
        message = chat(client, **body).json()["choices"][0]["message"]
    reasoning = (
        "Still thinking it over"[: 12 - len("<think>")] if body else "Still thinking it over"
    )
    assert content_of(payloads) == f"<think>{reasoning}</think>\n\n"
    assert message["content"] == f"<think>{reasoning}</think>\n\n"
    assert tag_view(payloads) == (reasoning, "")
    assert open_webui_view(payloads) == (reasoning, "")
    assert librechat_view(payloads) == (reasoning, "")


# --------------------------------------------------------------------------- /cot/edit


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MemorySettings:
    monkeypatch.setattr(memory_serving, "default_encoder", BagOfWordsEncoder)
    return MemorySettings(folder=tmp_path)


def test_cot_edit_in_think_mode_tags_the_reply_and_stores_it_plain(memory: MemorySettings) -> None:
    edited = "Tungsten is W. Its atomic number is 74."
    body = {
        "messages": [{"role": "user", "content": "Atomic number of tungsten?"}],
        "reasoning": "W is 79.",
        "edited_reasoning": edited,
    }
    engine = ScriptEngine([" So 74.</think>", "74"] * 2)  # reasoning, answer; twice
    with serve(engine, api_keys={KEY: "webui"}, memory=memory, reasoning_output="think") as client:
        data = client.post("/cot/edit", json=body, headers=AUTH).json()
        record = client.get(f"/v1/memory/{data['memory_id']}", headers=AUTH).json()
        streamed = client.post("/cot/edit", json={**body, "stream": True}, headers=AUTH)
    assert data["choices"][0]["message"] == {
        "role": "assistant",
        "content": f"<think>{edited} So 74.</think>\n\n74",
    }
    assert (record["corrected_reasoning"], record["answer"]) == (f"{edited} So 74.", "74")
    assert tag_view(sse_payloads(streamed.text)) == (f"{edited} So 74.", "74")


# --------------------------------------------------------------------------- models, requests


@pytest.fixture
def profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.LOADERS, "fake", "tests.fakes:load_fake_value_model")
    monkeypatch.setitem(search_base.LOADERS, "fake", "tests.fakes:load_fake_search")
    monkeypatch.setattr(server_search, "default_encoder", lambda cache: BagOfWordsEncoder())


@pytest.mark.usefixtures("profiles")
def test_model_list_as_the_uis_fetch_it() -> None:
    with server(value_models=value_models(), search=settings()) as client:
        # Open WebUI: GET {base}/models; LibreChat: the same, `?user=ID` with userIdQuery.
        webui = client.get("/v1/models", headers=AUTH)
        librechat = client.get("/v1/models", params={"user": "6650f0c1"}, headers=AUTH)
        anonymous = client.get("/v1/models")
    ids = ["fake-model", "fake-model:aligned", "fake-model:search"]
    assert [m["id"] for m in webui.json()["data"]] == ids
    assert [m["id"] for m in librechat.json()["data"]] == ids
    assert anonymous.status_code == 401


OPEN_WEBUI_BODY: dict[str, Any] = {
    "model": "fake-model",
    "messages": [
        {"role": "system", "content": "Current Date: 2025-01-01 (UTC)"},
        # The last message's text is reshaped into a part with an ephemeral cache marker.
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": "What is two plus two?",
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        },
    ],
    "stream": True,
    "stream_options": {"include_usage": True},
    "temperature": 0.6,
    "top_p": 0.95,
    "min_p": 0.05,
    "max_tokens": 200,
    "seed": 7,
    "frequency_penalty": 0.0,
    "reasoning": {"effort": "medium"},  # from the model's reasoning_effort parameter
    "logit_bias": {},
}
LIBRECHAT_BODY: dict[str, Any] = {
    "model": "fake-model",
    "messages": MESSAGES,
    "stream": True,
    "temperature": 0.6,
    "top_p": 0.95,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "user": "6650f0c1a2b3c4d5e6f70809",
    "reasoning_effort": "medium",
}


@pytest.mark.parametrize(
    ("body", "unknown"),
    [
        (OPEN_WEBUI_BODY, "['logit_bias', 'min_p', 'reasoning']"),
        (LIBRECHAT_BODY, "['reasoning_effort']"),
    ],
)
def test_the_uis_extra_request_fields_are_accepted_and_logged(
    body: dict[str, Any], unknown: str, caplog: pytest.LogCaptureFixture
) -> None:
    with server() as client, caplog.at_level(logging.INFO):
        r = client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    payloads = sse_payloads(r.text)
    assert open_webui_view(payloads) == librechat_view(payloads) == (REASONING, ANSWER)
    assert f"ignoring unknown fields in ChatCompletionRequest: {unknown}" in caplog.text


# --------------------------------------------------------------------------- the setting


def parse(*argv: str) -> Any:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return config_from_args(parser.parse_args(["serve", *argv]))


def test_reasoning_output_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse().reasoning_output == "fields"
    assert parse("--reasoning-output", "think").reasoning_output == "think"
    with pytest.raises(SystemExit):
        parse("--reasoning-output", "xml")
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def test_an_unknown_reasoning_output_is_refused_at_startup() -> None:
    with pytest.raises(ConfigError, match="unknown reasoning output 'xml'"):
        ChatServing(FakeEngine(), ServerMetrics(), reasoning_output="xml")
