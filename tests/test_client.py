"""The Python client (``safework.clients``) against the app: over real HTTP and SSE (uvicorn
in a thread, fake engine) for the sync client, in-process through httpx's ASGI transport for
the async one. Every profile, ``/cot/edit``, the memory routes and the SDK's errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from safework.clients import (
    AlignmentOptions,
    AsyncSafeWork,
    ChatStream,
    IncompleteStreamError,
    SafeWork,
    SafeWorkCompletion,
    SearchOptions,
    safework_block,
)
from safework.server import ServerConfig, create_app

from .web_server import (
    CONTINUATION,
    CORRECTED_ANSWER,
    KEY,
    OTHER_KEY,
    PLAIN_ANSWER,
    PLAIN_REASONING,
    WebEngine,
    fakes_installed,
    live_server,
    site_config,
)

QUESTION = [{"role": "user", "content": "What is the atomic number of tungsten?"}]
EDITED = "Tungsten is W. W is element number 74, not 79 (gold)."


@pytest.fixture(scope="module")
def fakes() -> Iterator[None]:
    with fakes_installed():
        yield


@pytest.fixture(scope="module")
def url(fakes: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    memory = tmp_path_factory.mktemp("memory")
    with live_server(WebEngine(step_delay=0.0), **site_config(memory)) as server:
        yield server.url


@pytest.fixture
def client(url: str) -> Iterator[SafeWork]:
    with SafeWork(base_url=url + "/v1", api_key=KEY, max_retries=0) as c:
        yield c


# --- request options ---------------------------------------------------------------------


def test_options_fill_the_safework_block() -> None:
    assert safework_block() == {}
    assert safework_block(alignment=True) == {"strategy": "aligned"}
    assert safework_block(
        alignment=AlignmentOptions(candidates=4, value_models={"safety": {"weight": 1.0}})
    ) == {
        "strategy": "aligned",
        "alignment": {
            "candidates": 4,
            "value_models": {"safety": {"weight": 1.0, "threshold": 0.0}},
        },
    }
    assert safework_block(search=SearchOptions(max_turns=2), memory=False) == {
        "strategy": "search",
        "search": {"max_turns": 2},
        "memory": {"enabled": False},
    }
    assert safework_block(memory={"top_k": 2}) == {"memory": {"top_k": 2}}
    with pytest.raises(ValueError, match="strategy="):
        safework_block(alignment=True, search=True)
    with pytest.raises(ValueError, match="candidatez"):
        safework_block(alignment={"candidatez": 4})  # a typo fails here, not on the server


# --- chat --------------------------------------------------------------------------------


def test_plain_answer_is_the_sdk_completion_with_reasoning(client: SafeWork) -> None:
    reply = client.chat.completions.create(messages=QUESTION)
    assert isinstance(reply, SafeWorkCompletion)
    assert isinstance(reply, openai.types.chat.ChatCompletion)  # the SDK's type, not hidden
    assert reply.model == "fake-model"  # the served model by default
    assert reply.content == PLAIN_ANSWER
    assert reply.reasoning == PLAIN_REASONING
    assert reply.safework is None


def test_aligned_answer_has_typed_steps_and_scores(client: SafeWork) -> None:
    reply = client.chat.completions.create(messages=QUESTION, alignment=True)
    assert isinstance(reply, SafeWorkCompletion)
    info = reply.safework
    assert info is not None
    assert info.strategy == "aligned"
    assert info.alignment is not None
    assert info.alignment.rejected >= 1
    first = info.steps[0]
    assert first.action == "choose"
    assert first.text == "A rude but careful step.\n"
    assert first.scores == {"safety": 0.9, "values": 0.1}
    assert [r.rejected_by for r in first.rejected] == [["safety"]]
    assert reply.content == "A rude but careful step.\nFinal answer: stay safe."


def test_aligned_stream_gathers_the_same_steps(client: SafeWork) -> None:
    stream = client.chat.completions.create(
        messages=QUESTION, alignment=AlignmentOptions(candidates=2), stream=True
    )
    assert isinstance(stream, ChatStream)
    parts = list(stream.parts())
    events = [p[1] for p in parts if p[0] == "event"]
    assert [e["type"] for e in events][:2] == ["alignment.step", "alignment.step"]
    assert next(s.scores for s in stream.info.steps) == {"safety": 0.9, "values": 0.1}
    text = "".join(p[1] for p in parts if p[0] == "content")
    assert text == stream.content == "A rude but careful step.\nFinal answer: stay safe."
    assert stream.finish_reason == "stop"


def test_search_gives_sources_and_confidence_in_json_and_stream(client: SafeWork) -> None:
    reply = client.chat.completions.create(messages=QUESTION, search=SearchOptions(max_turns=3))
    assert isinstance(reply, SafeWorkCompletion)
    info = reply.safework
    assert info is not None
    assert info.search is not None
    assert info.search.queries == ["tungsten atomic number"]
    assert "element:tungsten" in [s.id for s in info.sources]
    assert info.confidence == pytest.approx(0.7)
    assert reply.content == "74"
    stream = client.chat.completions.create(messages=QUESTION, search=True, stream=True)
    assert isinstance(stream, ChatStream)
    chunks = list(stream)
    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    assert stream.info.confidence == pytest.approx(0.7)
    assert [s.id for s in stream.info.sources] == [s.id for s in info.sources]
    assert stream.info.events[0]["type"] == "search.query"
    assert stream.content == "74"


def test_the_sdk_keeps_working_for_standard_calls(client: SafeWork) -> None:
    ids = [m.id for m in client.models.list().data]
    assert ids == ["fake-model", "fake-model:aligned", "fake-model:search"]
    reply = client.chat.completions.create(messages=QUESTION, model="fake-model:aligned")
    assert isinstance(reply, SafeWorkCompletion)
    assert reply.safework is not None


# --- /cot/edit and memory ----------------------------------------------------------------


def test_cot_edit_continues_and_the_correction_is_listed_read_and_deleted(
    client: SafeWork, url: str
) -> None:
    reply = client.cot_edit(
        QUESTION, EDITED, reasoning=PLAIN_REASONING, answer=PLAIN_ANSWER, feedback="79 is gold"
    )
    assert isinstance(reply, SafeWorkCompletion)
    assert reply.reasoning == EDITED + CONTINUATION
    assert reply.content == CORRECTED_ANSWER
    assert reply.memory_id is not None
    assert reply.memory_id.startswith("mem_")
    record = client.memory.retrieve(reply.memory_id)
    assert record.corrected_reasoning == EDITED + CONTINUATION  # the whole corrected chain
    assert record.feedback == "79 is gold"
    assert reply.memory_id in [r.id for r in client.memory.list()]
    with SafeWork(base_url=url + "/v1", api_key=OTHER_KEY, max_retries=0) as bob:
        assert list(bob.memory.list()) == []  # another tenant sees nothing
        with pytest.raises(openai.NotFoundError):
            bob.memory.retrieve(reply.memory_id)
    assert client.memory.delete(reply.memory_id).deleted
    with pytest.raises(openai.NotFoundError):
        client.memory.retrieve(reply.memory_id)


def test_cot_edit_streams_with_the_memory_id_on_the_last_chunk(client: SafeWork) -> None:
    stream = client.cot_edit(QUESTION, EDITED, stream=True, remember=True)
    assert isinstance(stream, ChatStream)
    stream.until_done()
    assert stream.reasoning == EDITED + CONTINUATION
    assert stream.content == CORRECTED_ANSWER
    assert stream.memory_id is not None
    assert client.memory.retrieve(stream.memory_id).question == QUESTION[0]["content"]


def test_memory_list_pages_with_the_sdk_cursor(client: SafeWork) -> None:
    ids = [client.cot_edit(QUESTION, f"{EDITED} ({i})").memory_id for i in range(3)]
    page = client.memory.list(limit=2)
    assert len(page.data) == 2
    assert page.has_more
    walked = [r.id for r in page]  # iterating fetches the following pages
    assert set(ids) <= set(walked)
    assert len(walked) == len(set(walked))
    assert [r.id for r in client.memory.list(q="(1)")] == [ids[1]]


def test_preferences_through_the_client(client: SafeWork, url: str) -> None:
    pref = client.memory.prefer("Answer in metric units.")
    assert (pref.kind, pref.text) == ("preference", "Answer in metric units.")
    always = client.cot_edit(
        QUESTION, EDITED, feedback="Name the element's symbol.", scope="always"
    )
    assert always.memory_id is not None
    try:
        kept = {(r.id, r.kind) for r in client.memory.list(kind="preference")}
        assert kept == {(pref.id, "preference"), (always.memory_id, "preference")}
        reply = client.chat.completions.create(
            messages=[{"role": "user", "content": "How far is it to the Moon?"}]
        )
        assert reply.safework is not None
        assert reply.safework.memory is not None
        assert set(reply.safework.memory.preferences) == {pref.id, always.memory_id}
        with SafeWork(base_url=url + "/v1", api_key=OTHER_KEY, max_retries=0) as bob:
            assert list(bob.memory.list(kind="preference")) == []
        with pytest.raises(openai.BadRequestError):
            client.memory.prefer(" ")
    finally:
        client.memory.delete(pref.id)
        client.memory.delete(always.memory_id)


# --- errors ------------------------------------------------------------------------------


def test_errors_are_the_sdk_exceptions(client: SafeWork, url: str) -> None:
    bad = SafeWork(base_url=url + "/v1", api_key="sk-wrong-key-000", max_retries=0)
    with bad, pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
        bad.chat.completions.create(messages=QUESTION, model="fake-model")
    with pytest.raises(openai.BadRequestError, match="candidates"):
        client.chat.completions.create(messages=QUESTION, alignment={"candidates": 99})
    with pytest.raises(openai.BadRequestError, match="edited_reasoning"):
        client.cot_edit(QUESTION, "   ")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(messages=QUESTION, model="no-such-model")
    with pytest.raises(ValueError, match="memory id"):
        client.memory.retrieve("../v1/models")


def _cut_stream(request: httpx2.Request) -> httpx2.Response:
    """A server that sends two chunks and goes away (no finish, no ``[DONE]``)."""
    chunk = '{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    body = (
        f'data: {chunk}"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}}}}]}}\n\n'
        f'data: {chunk}"choices":[{{"index":0,"delta":{{"content":"Half an"}}}}]}}\n\n'
    )
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, text=body)


def _error_mid_stream(request: httpx2.Request) -> httpx2.Response:
    body = 'data: {"error": {"message": "The engine failed", "type": "server_error"}}\n\n'
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, text=body)


@pytest.mark.parametrize(
    ("handler", "error", "match"),
    [
        (_cut_stream, IncompleteStreamError, "ended before the answer finished"),
        (_error_mid_stream, openai.APIError, "The engine failed"),
    ],
)
def test_a_broken_stream_raises_instead_of_passing_half_an_answer(
    handler: Any, error: type[Exception], match: str
) -> None:
    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    with SafeWork(base_url="http://sw.test/v1", http_client=http, max_retries=0) as client:
        stream = client.chat.completions.create(messages=QUESTION, model="m", stream=True)
        assert isinstance(stream, ChatStream)
        with pytest.raises(error, match=match):
            stream.until_done()
    assert issubclass(IncompleteStreamError, openai.APIConnectionError)


# --- async, in-process -------------------------------------------------------------------


@pytest.fixture
async def async_client(fakes: None, tmp_path: Path) -> AsyncIterator[AsyncSafeWork]:
    app = create_app(
        ServerConfig(**site_config(tmp_path)), engine_factory=lambda _: WebEngine(step_delay=0.0)
    )
    async with app.router.lifespan_context(app):
        http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app))
        async with AsyncSafeWork(
            base_url="http://sw.test/v1", api_key=KEY, http_client=http, max_retries=0
        ) as client:
            yield client


async def test_async_client_streams_edits_and_manages_memory(async_client: AsyncSafeWork) -> None:
    reply = await async_client.chat.completions.create(messages=QUESTION, alignment=True)
    assert isinstance(reply, SafeWorkCompletion)
    assert reply.safework is not None
    assert reply.safework.steps[0].scores["safety"] == pytest.approx(0.9)
    stream = await async_client.chat.completions.create(messages=QUESTION, stream=True)
    parts = [p async for p in stream.parts()]  # type: ignore[union-attr]
    assert "".join(t for k, t in parts if k == "reasoning") == PLAIN_REASONING
    assert "".join(t for k, t in parts if k == "content") == PLAIN_ANSWER
    edited = await async_client.cot_edit(QUESTION, EDITED)
    assert isinstance(edited, SafeWorkCompletion)
    assert edited.memory_id is not None
    records = [r.id async for r in async_client.memory.list()]
    assert records == [edited.memory_id]
    record = await async_client.memory.retrieve(edited.memory_id)
    assert record.corrected_reasoning.startswith(EDITED)
    assert (await async_client.memory.delete(edited.memory_id)).deleted
    with pytest.raises(openai.NotFoundError):
        await async_client.memory.retrieve(edited.memory_id)
