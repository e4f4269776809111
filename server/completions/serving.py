"""Text completions: one or many prompts -> engine -> ``text_completion`` JSON or SSE chunks.

A batch of ``P`` prompts with ``n`` choices each yields choices indexed ``p * n + i``, as the
OpenAI API does; the prompts run concurrently in the engine (``fanout.merge``). ``echo``
prepends the prompt, ``logprobs=k`` gives the legacy logprob layout (tokens, token_logprobs,
top_logprobs, text_offset). Only the plain strategy: ``<model>:aligned`` and ``:search`` are
chat profiles (a text completion naming one is a 404).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from safework.engine.base import ChoiceDelta, Engine
from safework.errors import EngineError, RequestError

from ..config import DEFAULT_TENANT
from ..fanout import merge
from ..generation import Generation
from ..limits import RequestLimits
from ..metrics import ServerMetrics
from ..protocol import ErrorResponse, UsageInfo, now, random_id
from ..sampling import resolve_max_tokens
from ..serving_common import (
    check_model,
    check_n,
    check_token_ids,
    engine_failure,
    sse_data,
    sse_done,
    tenant_cache_salt,
)
from .protocol import CompletionChoice, CompletionLogprobs, CompletionRequest, CompletionResponse

ROUTE = "/v1/completions"


@dataclass
class _Prompt:
    text: str
    token_ids: list[int]


def legacy_logprobs(
    delta: ChoiceDelta, offset: int, as_ids: bool = False
) -> CompletionLogprobs | None:
    if delta.logprobs is None:
        return None
    out = CompletionLogprobs()
    for lp in delta.logprobs:
        out.tokens.append(lp.label(as_ids))
        out.token_logprobs.append(lp.logprob)
        out.top_logprobs.append({t.label(as_ids): t.logprob for t in lp.top})
        out.text_offset.append(offset)
        offset += len(lp.token)
    return out


@dataclass
class _ChoiceText:
    """One choice of a JSON answer, accumulated in time linear in its tokens: text pieces
    joined once at the end, logprob lists extended in place, a running text offset."""

    text: list[str] = field(default_factory=list)
    offset: int = 0
    logprobs: CompletionLogprobs | None = None
    finish: ChoiceDelta | None = None

    @classmethod
    def starting_with(cls, prefix: str) -> _ChoiceText:
        return cls([prefix], len(prefix))

    def add(self, delta: ChoiceDelta, as_ids: bool) -> None:
        new = legacy_logprobs(delta, self.offset, as_ids)
        self.text.append(delta.text)
        self.offset += len(delta.text)
        if new is not None:
            if self.logprobs is None:
                self.logprobs = new
            else:
                self.logprobs.tokens.extend(new.tokens)
                self.logprobs.token_logprobs.extend(new.token_logprobs)
                self.logprobs.top_logprobs.extend(new.top_logprobs)
                self.logprobs.text_offset.extend(new.text_offset)
        if delta.finish_reason is not None:
            self.finish = delta

    def choice(self, index: int) -> CompletionChoice:
        finish = self.finish
        return CompletionChoice(
            index=index,
            text="".join(self.text),
            logprobs=self.logprobs,
            finish_reason=(finish.finish_reason if finish else None) or "stop",
            stop_reason=finish.stop_reason if finish else None,
        )


class CompletionServing:
    def __init__(
        self,
        engine: Engine,
        metrics: ServerMetrics,
        max_n: int = 16,
        limits: RequestLimits | None = None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.max_n = max_n
        self.limits = limits or RequestLimits()
        """prompts × n, the max_tokens cap and ignore_eos (``limits.py``)."""

    def _requested_tokens(self, request: CompletionRequest) -> int | None:
        """The request's ``max_tokens``; OpenAI's default of 16, when not sent, stays within
        the server's cap (a cap below 16 never refuses a request that did not ask)."""
        cap = self.limits.max_tokens_cap
        if cap is None or request.max_tokens is None or "max_tokens" in request.model_fields_set:
            return request.max_tokens
        return min(request.max_tokens, cap)

    async def _prepare(self, request: CompletionRequest) -> list[_Prompt]:
        prompts = []
        for p in request.prompts():
            if isinstance(p, str):
                prompts.append(_Prompt(p, await self.engine.tokenize(p, add_special_tokens=True)))
            else:
                check_token_ids(p, self.engine.vocab_size)
                prompts.append(_Prompt("", p))
        return prompts

    async def create(
        self, request: CompletionRequest, tenant: str = DEFAULT_TENANT
    ) -> CompletionResponse | AsyncIterator[str] | ErrorResponse:
        """The answer; the engine's prefix cache is the tenant's own (``tenant_cache_salt``)."""
        gens: list[Generation] = []
        try:
            model = check_model(request.model, self.engine)
            check_n(request.n, self.max_n)
            self.limits.check_batch(len(request.prompts()), request.n)
            self.limits.check_sampling(request)
            prompts = await self._prepare(request)
            request_id = random_id("cmpl")
            for i, p in enumerate(prompts):
                max_tokens = resolve_max_tokens(
                    self._requested_tokens(request),
                    len(p.token_ids),
                    self.engine.max_model_len,
                    "max_tokens",
                    self.limits.max_tokens_cap,
                )
                sampling = request.to_sampling_config(
                    max_tokens=max_tokens,
                    logprobs=request.logprobs,
                    defaults=self.engine.sampling_defaults,
                )
                sampling.cache_salt = tenant_cache_salt(tenant)
                gens.append(
                    Generation(
                        self.engine, self.metrics, ROUTE, p.token_ids, sampling, f"{request_id}-{i}"
                    )
                )
            for g in gens:
                await g.start()
        except Exception as e:
            for g in gens:
                await g.aclose()
            return ErrorResponse.of(e if isinstance(e, RequestError) else engine_failure(e))
        if request.stream:
            return self._stream(request, model, request_id, prompts, gens)
        return await self._full(request, model, request_id, prompts, gens)

    async def _full(
        self,
        request: CompletionRequest,
        model: str,
        request_id: str,
        prompts: list[_Prompt],
        gens: list[Generation],
    ) -> CompletionResponse | ErrorResponse:
        n, as_ids = request.n, request.return_tokens_as_token_ids
        states = [
            _ChoiceText.starting_with(p.text if request.echo else "")
            for p in prompts
            for _ in range(n)
        ]
        try:
            async with contextlib.aclosing(merge([g.outputs() for g in gens])) as merged:
                async for p, out in merged:
                    for d in out.choices:
                        states[p * n + d.index].add(d, as_ids)
        except (RequestError, EngineError) as e:
            return ErrorResponse.of(e)
        finally:
            await _close_all(gens)
        choices = [state.choice(k) for k, state in enumerate(states)]
        return CompletionResponse(
            id=request_id, model=model, choices=choices, usage=self._usage(gens)
        )

    @staticmethod
    def _usage(gens: list[Generation]) -> UsageInfo:
        return UsageInfo.of(
            sum(g.prompt_tokens for g in gens),
            sum(g.completion_tokens for g in gens),
            sum(g.cached_tokens for g in gens),
        )

    async def _stream(
        self,
        request: CompletionRequest,
        model: str,
        request_id: str,
        prompts: list[_Prompt],
        gens: list[Generation],
    ) -> AsyncIterator[str]:
        created, n, as_ids = now(), request.n, request.return_tokens_as_token_ids
        offsets = [len(p.text) if request.echo else 0 for p in prompts for _ in range(n)]

        def chunk(choices: list[CompletionChoice], usage: UsageInfo | None = None) -> str:
            return sse_data(
                CompletionResponse(
                    id=request_id, created=created, model=model, choices=choices, usage=usage
                )
            )

        try:
            if request.echo:
                yield chunk(
                    [
                        CompletionChoice(index=p * n + i, text=prompt.text)
                        for p, prompt in enumerate(prompts)
                        for i in range(n)
                    ]
                )
            async with contextlib.aclosing(merge([g.outputs() for g in gens])) as merged:
                async for p, out in merged:
                    choices = []
                    for d in out.choices:
                        k = p * n + d.index
                        choices.append(
                            CompletionChoice(
                                index=k,
                                text=d.text,
                                logprobs=legacy_logprobs(d, offsets[k], as_ids),
                                finish_reason=d.finish_reason,
                                stop_reason=d.stop_reason,
                            )
                        )
                        offsets[k] += len(d.text)
                    yield chunk(choices)
            if request.include_usage:
                yield chunk([], self._usage(gens))
        except (RequestError, EngineError) as e:
            yield ErrorResponse.of(e).model_dump_json()
        finally:  # also when closed at a yield (its client left): abort what still runs
            await _close_all(gens)
        yield sse_done()


async def _close_all(gens: list[Generation]) -> None:
    for g in gens:
        await g.aclose()
