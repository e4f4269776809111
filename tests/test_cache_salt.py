"""Finding 8 of issue 17: each tenant has its own prefix cache.

vLLM reuses the cached KV blocks of any earlier prompt with the same prefix and reports them
in ``usage.prompt_tokens_details.cached_tokens``: a tenant could send a guess of another
tenant's system prompt and read from ``cached_tokens`` whether it was right. Every request
now carries its tenant's ``cache_salt`` (vLLM's per-request prefix-cache key), so blocks are
shared within a tenant only.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from safework.engine.base import SamplingConfig
from safework.engine.vllm_engine import VLLMEngine
from safework.server.completions.protocol import CompletionRequest
from safework.server.completions.serving import CompletionServing
from safework.server.metrics import ServerMetrics
from safework.server.serving_common import tenant_cache_salt

from .conftest import serve
from .fakes import FakeEngine, ScriptEngine

KEYS = {"sk-alice-0001": "alice", "sk-bob-000002": "bob"}
ALICE = {"Authorization": "Bearer sk-alice-0001"}
BOB = {"Authorization": "Bearer sk-bob-000002"}
CHAT = {"messages": [{"role": "user", "content": "Our secret launch plan is"}], "max_tokens": 4}


def _salts(engine: FakeEngine) -> list[str | None]:
    return [sampling.cache_salt for _, sampling in engine.requests]


def test_chat_requests_carry_their_tenants_salt() -> None:
    engine = FakeEngine()
    with serve(engine, api_keys=KEYS) as client:
        for headers in (ALICE, ALICE, BOB):
            assert client.post("/v1/chat/completions", json=CHAT, headers=headers).is_success
    alice, again, bob = _salts(engine)
    assert alice == again == tenant_cache_salt("alice")
    assert bob == tenant_cache_salt("bob")
    assert alice != bob


def test_cot_edit_sub_requests_carry_the_salt() -> None:
    engine = ScriptEngine([" So it is 74.</think>", "74"])
    body = {
        "messages": [{"role": "user", "content": "Atomic number of tungsten?"}],
        "edited_reasoning": "Tungsten is W.",
        "remember": False,
    }
    with serve(engine, api_keys=KEYS) as client:
        assert client.post("/cot/edit", json=body, headers=BOB).is_success
    assert len(engine.requests) == 2  # the reasoning, then the answer
    assert set(_salts(engine)) == {tenant_cache_salt("bob")}


def test_completions_carry_the_salt() -> None:
    engine = FakeEngine()
    serving = CompletionServing(engine, ServerMetrics())
    request = CompletionRequest.model_validate({"prompt": ["a", "b"], "max_tokens": 2})
    asyncio.run(serving.create(request, "alice"))
    assert _salts(engine) == [tenant_cache_salt("alice")] * 2


def test_the_completions_route_passes_the_callers_tenant() -> None:
    engine = FakeEngine()
    body = {"prompt": "Our secret launch plan is", "max_tokens": 2}
    with serve(engine, api_keys=KEYS) as client:
        for headers in (ALICE, BOB):
            assert client.post("/v1/completions", json=body, headers=headers).is_success
    assert _salts(engine) == [tenant_cache_salt("alice"), tenant_cache_salt("bob")]


def test_vllm_receives_the_salt_in_the_prompt() -> None:
    prompts: list[dict[str, Any]] = []

    async def generate(prompt: dict[str, Any], params: Any, request_id: str) -> Any:
        prompts.append(dict(prompt))
        output = SimpleNamespace(
            index=0, text="x", token_ids=[1], logprobs=None, finish_reason="stop", stop_reason=None
        )
        yield SimpleNamespace(
            prompt_token_ids=[5, 6], outputs=[output], finished=True, num_cached_tokens=0
        )

    config = SimpleNamespace(
        max_model_len=64,
        dtype="torch.float32",
        get_diff_sampling_param=lambda: {},
        get_vocab_size=lambda: 1000,
    )
    llm = SimpleNamespace(model_config=config, get_tokenizer=lambda: None, generate=generate)
    engine = VLLMEngine(llm, "tiny")

    async def run(salt: str | None) -> None:
        sampling = SamplingConfig(max_tokens=1, cache_salt=salt)
        async for _ in engine.generate([5, 6], sampling, "r"):
            pass

    asyncio.run(run("s-alice"))
    asyncio.run(run(None))
    assert prompts[0] == {"prompt_token_ids": [5, 6], "cache_salt": "s-alice"}
    assert "cache_salt" not in prompts[1]
