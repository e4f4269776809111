"""``VLLMEngine`` maps vLLM's errors: engine death (vLLM's ``EngineDeadError``, or any server
error once ``AsyncLLM.errored``) to SafeWork's ``EngineDeadError`` (503, the server shuts
down), a refused request to ``RequestError``, another server failure to ``EngineError``.

``AsyncLLM`` is a stub with its ``errored`` flag and vLLM's real exception classes, so
nothing here starts vLLM (importing its exceptions takes a few seconds).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from safework.engine.base import SamplingConfig
from safework.errors import EngineDeadError, EngineError, RequestError


def vllm_stub(errored: bool, fails: BaseException | None = None) -> Any:
    """``AsyncLLM`` as ``VLLMEngine`` uses it: one step, or ``fails`` raised from generate."""

    async def generate(prompt: Any, params: Any, request_id: str) -> AsyncIterator[Any]:
        if fails is not None:
            raise fails
        out = SimpleNamespace(
            index=0, text="x", token_ids=[1], logprobs=None, finish_reason="stop", stop_reason=None
        )
        yield SimpleNamespace(
            prompt_token_ids=[1], outputs=[out], finished=True, num_cached_tokens=0
        )

    async def check_health() -> None:
        if llm.errored:
            raise EngineDeadErrorOfVLLM()

    config = SimpleNamespace(
        max_model_len=64,
        dtype="torch.float32",
        get_diff_sampling_param=lambda: {},
        get_vocab_size=lambda: 10,
    )
    tokenizer = SimpleNamespace(max_token_id=9)
    llm = SimpleNamespace(
        model_config=config,
        get_tokenizer=lambda: tokenizer,
        generate=generate,
        errored=errored,
        check_health=check_health,
    )
    return llm


try:
    from vllm.exceptions import VLLMClientError, VLLMServerError
    from vllm.v1.engine.exceptions import EngineDeadError as EngineDeadErrorOfVLLM
    from vllm.v1.engine.exceptions import EngineGenerateError

    from safework.engine.vllm_engine import VLLMEngine
except ImportError:  # pragma: no cover - vLLM is part of the dev environment
    pytest.skip("vLLM is not installed", allow_module_level=True)


async def _generate(engine: VLLMEngine) -> None:
    async for _ in engine.generate([1], SamplingConfig(max_tokens=1), "r"):
        pass


@pytest.mark.parametrize(
    ("errored", "raised", "expected"),
    [
        (False, EngineDeadErrorOfVLLM(), EngineDeadError),  # before the flag is set
        (True, EngineGenerateError(), EngineDeadError),  # any server error once dead
        (False, EngineGenerateError(), EngineError),  # recoverable: a 500
        (False, VLLMClientError("bad request"), RequestError),
    ],
)
async def test_vllm_errors_map(errored: bool, raised: Exception, expected: type) -> None:
    engine = VLLMEngine(vllm_stub(errored, raised), "tiny")
    with pytest.raises(expected) as caught:
        await _generate(engine)
    assert type(caught.value) is expected
    assert isinstance(raised, VLLMClientError | VLLMServerError)


async def test_vllm_death_is_seen_by_is_dead_and_check_health() -> None:
    llm = vllm_stub(errored=False)
    engine = VLLMEngine(llm, "tiny")
    assert not engine.is_dead
    await engine.check_health()
    await _generate(engine)
    llm.errored = True  # vLLM's monitor thread saw the engine core exit
    assert engine.is_dead
    with pytest.raises(EngineDeadError):
        await engine.check_health()
