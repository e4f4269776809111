"""Finding 1 of issue 17: a chat template renders within bounds, outside the tokenizer's pool.

``VLLMEngine.render_chat`` is driven with a stand-in for vLLM's ``AsyncLLM`` holding a real
(tiny, word-level) Hugging Face tokenizer, so ``apply_chat_template`` runs as in production.
Before the fix a template with nested loops rendered for minutes in the 2-thread pool that
also tokenises every request (Hugging Face's render of ``NESTED`` below had not finished
after 30 s). Now:

- the model's own template is interrupted at ``timeout_s`` and its thread freed, while
  tokenising goes on meanwhile;
- a request's template (when the operator trusts them) renders in a child process with a
  memory cap, killed at ``timeout_s``; its output is capped too.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from safework.engine.chat_template import TemplateRenderer
from safework.engine.vllm_engine import VLLMEngine
from safework.errors import RequestError

NESTED = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x"
PLAIN = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
MESSAGES = [{"role": "user", "content": "hello there"}]
TIMEOUT_S = 1.0


def _tokenizer(template: str) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<s>": 1, "</s>": 2, "hello": 3, "there": 4}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>")
    tok.chat_template = template
    return tok


def _engine(template: str, renderer: TemplateRenderer) -> VLLMEngine:
    tokenizer = _tokenizer(template)
    config = SimpleNamespace(
        max_model_len=512,
        dtype="torch.float32",
        get_diff_sampling_param=lambda: {},
        get_vocab_size=lambda: 1000,
    )
    llm = SimpleNamespace(model_config=config, get_tokenizer=lambda: tokenizer)
    return VLLMEngine(llm, "tiny", renderer)


def test_the_models_template_is_interrupted_and_its_thread_freed() -> None:
    renderer = TemplateRenderer(timeout_s=TIMEOUT_S)
    engine = _engine(NESTED, renderer)

    async def scenario() -> None:
        start = time.perf_counter()
        slow = asyncio.ensure_future(engine.render_chat(MESSAGES))
        await asyncio.sleep(0.2)
        tokenised = time.perf_counter()
        assert await engine.tokenize("hello there") == [3, 4]  # the tokenizer pool is free
        assert time.perf_counter() - tokenised < 0.5
        with pytest.raises(RequestError) as caught:
            await slow
        assert caught.value.code == "chat_template_timeout"
        assert time.perf_counter() - start < TIMEOUT_S + 1.0
        engine._tokenizer.chat_template = PLAIN  # the one render thread is free again
        again = time.perf_counter()
        assert await engine.render_chat(MESSAGES) == "<s><user>hello there"
        assert time.perf_counter() - again < 0.5

    try:
        asyncio.run(scenario())
    finally:
        renderer.close()


def test_the_models_template_output_is_capped() -> None:
    renderer = TemplateRenderer(max_chars=100)
    try:
        engine = _engine(PLAIN, renderer)
        long = [{"role": "user", "content": "hello " * 50}]
        with pytest.raises(RequestError) as caught:
            asyncio.run(engine.render_chat(long))
        assert caught.value.code == "chat_template_too_large"
    finally:
        renderer.close()


def test_a_request_template_renders_in_a_bounded_child() -> None:
    renderer = TemplateRenderer(timeout_s=TIMEOUT_S, max_chars=10_000, max_memory_bytes=1 << 30)
    engine = _engine(PLAIN, renderer)

    async def render(template: str, **variables: Any) -> str:
        kwargs = {"chat_template": template, **variables}
        return await engine.render_chat(MESSAGES, chat_template_kwargs=kwargs)

    async def scenario() -> None:
        # the tokenizer's special tokens are there, a trusted variable overrides them
        assert await render(PLAIN) == "<s><user>hello there"
        assert await render(PLAIN, bos_token="[B]") == "[B]<user>hello there"
        start = time.perf_counter()
        with pytest.raises(RequestError) as caught:
            await render(NESTED)
        assert caught.value.code == "chat_template_timeout"
        assert time.perf_counter() - start < TIMEOUT_S + 1.0
        with pytest.raises(RequestError) as caught:  # 2 GB of output in one expression
            await render("{{ 'a' * 2000000000 }}")
        assert caught.value.code == "chat_template_too_large"
        with pytest.raises(RequestError) as caught:  # over max_chars
            await render("{% for i in range(20000) %}a{% endfor %}")
        assert caught.value.code == "chat_template_too_large"
        assert await render(PLAIN) == "<s><user>hello there"  # a fresh child serves on

    try:
        asyncio.run(scenario())
    finally:
        renderer.close()
