"""Chat completions: messages -> prompt -> engine -> OpenAI response or SSE chunks.

``ChatServing.create`` returns a ``ChatCompletionResponse``, an async iterator of SSE data
strings (``stream=true``), or an ``ErrorResponse``: errors are values, and the router only
chooses between JSON and SSE. Stream order is fixed and tested: one role chunk per choice,
content/reasoning deltas, exactly one ``finish_reason`` per choice, an optional usage chunk,
then ``[DONE]``; a failure after the stream started is sent as an error data event.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jinja2

from safework.engine.base import ChoiceDelta, Engine, TokenLogprob
from safework.engine.reasoning import ReasoningSplitter, split_reasoning, starts_in_reasoning
from safework.errors import EngineError, RequestError
from safework.search.deliberative import DeliberativeSearch
from safework.search.prompts import protocol_messages
from safework.value_models.guided import GuidedDecoder
from safework.value_models.registry import ValueModelsConfig

from ..alignment import Alignment, check_profile, record_guidance, resolve_strategy, split_profile
from ..generation import Generation, Strategy, plain
from ..metrics import ServerMetrics
from ..protocol import ErrorResponse, UsageInfo, now, random_id
from ..sampling import resolve_max_tokens
from ..search import SearchService, SearchSettings, record_search
from ..serving_common import check_model, check_n, engine_failure, sse_data, sse_done
from .protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChoiceLogprobs,
    DeltaMessage,
    TokenLogprobOut,
    TopLogprobOut,
)

logger = logging.getLogger(__name__)
ROUTE = "/v1/chat/completions"


def logprobs_out(items: list[TokenLogprob] | None) -> ChoiceLogprobs | None:
    if items is None:
        return None
    return ChoiceLogprobs(
        content=[
            TokenLogprobOut(
                token=lp.token,
                logprob=lp.logprob,
                bytes=list(lp.token.encode()),
                top_logprobs=[
                    TopLogprobOut(token=t.token, logprob=t.logprob, bytes=list(t.token.encode()))
                    for t in lp.top
                ],
            )
            for lp in items
        ]
    )


def alignment_block(decoder: GuidedDecoder, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The response's ``safework`` object for an aligned answer: its steps and counts."""
    steps = [e for e in events if e.get("type") == "alignment.step"]
    for e in events:
        if e.get("type") == "alignment.beam":
            steps = e["steps"]
    s = decoder.stats
    return {
        "strategy": "aligned",
        "alignment": {
            "steps": steps,
            "candidates": s.candidates,
            "rejected": s.rejected,
            "steered": s.steered,
            "refused": s.refused,
            "generated_tokens": s.generated_tokens,
        },
    }


@dataclass
class _Plan:
    """How one request is answered: its strategy, the messages to render, and the object
    (guided decoder or search session) that reports on it afterwards."""

    strategy: Strategy
    messages: list[dict[str, Any]]
    decoder: GuidedDecoder | None = None
    search: DeliberativeSearch | None = None

    def block(self, events: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The response's ``safework`` object."""
        if self.decoder is not None:
            return alignment_block(self.decoder, events)
        if self.search is not None:
            return {"strategy": "search", "search": self.search.summary()}
        return None

    def record(self, metrics: ServerMetrics) -> None:
        if self.decoder is not None:
            record_guidance(metrics, self.decoder.stats)
        if self.search is not None:
            record_search(metrics, self.search.backend.name, self.search.stats)


@dataclass
class _ChoiceState:
    """Everything accumulated for one choice of a request."""

    splitter: ReasoningSplitter
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None

    def add(self, delta: ChoiceDelta) -> None:
        self.text.append(delta.text)
        if delta.logprobs is not None:
            self.logprobs = (self.logprobs or []) + delta.logprobs
        if delta.finish_reason is not None:
            self.finish_reason, self.stop_reason = delta.finish_reason, delta.stop_reason


class ChatServing:
    def __init__(
        self,
        engine: Engine,
        metrics: ServerMetrics,
        max_n: int = 16,
        alignment: Alignment | None = None,
        search: SearchService | None = None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.max_n = max_n
        self.alignment = alignment or Alignment({}, ValueModelsConfig())
        self.search = search or SearchService({}, SearchSettings())

    def _plan(self, request: ChatCompletionRequest, profile: str | None) -> _Plan:
        """The request's strategy: ``plain``, a guided decoder, or a search session."""
        messages = [m.to_template() for m in request.messages]
        name = resolve_strategy(profile, request.safework)
        if name == "plain":
            return _Plan(plain, messages)
        for field_name, unsupported in (
            ("n", request.n > 1),
            ("logprobs", request.logprobs),
            ("response_format", request.structured_output() is not None),
            ("continue_final_message", name == "search" and request.continue_final_message),
        ):
            if unsupported:
                raise RequestError(
                    f"`{field_name}` is not supported with the {name} strategy", param=field_name
                )
        options = request.safework
        if name == "search":
            session = self.search.session(
                options.search if options else None, messages, request.question, False
            )
            return _Plan(session, protocol_messages(messages), search=session)
        decoder = GuidedDecoder(
            self.alignment.guidance_for(options.alignment if options else None), request.question
        )
        return _Plan(decoder, messages, decoder=decoder)

    async def create(
        self, request: ChatCompletionRequest
    ) -> ChatCompletionResponse | AsyncIterator[str] | ErrorResponse:
        try:
            base, profile = split_profile(request.model or self.engine.model_id)
            model = check_model(base, self.engine)
            configured = {"aligned": self.alignment.enabled, "search": self.search.enabled}
            check_profile(profile, configured, request.model or "")
            check_n(request.n, self.max_n)
            plan = self._plan(request, profile)
            prompt = await self._render(request, plan.messages)
            if plan.search is not None:
                plan.search.in_reasoning = starts_in_reasoning(prompt)
            prompt_ids = await self.engine.tokenize(prompt)
            max_tokens = resolve_max_tokens(
                request.completion_budget,
                len(prompt_ids),
                self.engine.max_model_len,
                "max_completion_tokens" if request.max_completion_tokens else "max_tokens",
            )
            sampling = request.to_sampling_config(
                max_tokens=max_tokens,
                logprobs=request.logprobs_k,
                defaults=self.engine.sampling_defaults,
                structured=request.structured_output(),
            )
            gen = Generation(
                self.engine,
                self.metrics,
                ROUTE,
                prompt_ids,
                sampling,
                random_id("chatcmpl"),
                plan.strategy,
            )
            await gen.start()
        except RequestError as e:
            return ErrorResponse.of(e)
        except Exception as e:  # the engine failed: 500, logged, server stays up
            return ErrorResponse.of(engine_failure(e))
        in_reasoning = starts_in_reasoning(prompt)
        model = f"{model}:{profile}" if profile else model
        if request.stream:
            return self._stream(request, model, gen, in_reasoning, plan)
        return await self._full(request, model, gen, in_reasoning, plan)

    async def _render(self, request: ChatCompletionRequest, messages: list[dict[str, Any]]) -> str:
        try:
            return await self.engine.render_chat(
                messages,
                add_generation_prompt=not request.continue_final_message,
                continue_final_message=request.continue_final_message,
                chat_template_kwargs=request.chat_template_kwargs,
            )
        except (jinja2.TemplateError, ValueError, TypeError) as e:
            raise RequestError(f"cannot apply the chat template: {e}", param="messages") from e

    async def _full(
        self,
        request: ChatCompletionRequest,
        model: str,
        gen: Generation,
        in_reasoning: bool,
        plan: _Plan,
    ) -> ChatCompletionResponse | ErrorResponse:
        states = [_ChoiceState(ReasoningSplitter(in_reasoning)) for _ in range(request.n)]
        events: list[dict[str, Any]] = []
        try:
            async for out in gen.outputs():
                events += out.events
                for delta in out.choices:
                    states[delta.index].add(delta)
        except (RequestError, EngineError) as e:
            return ErrorResponse.of(e)
        finally:
            plan.record(self.metrics)
        choices = []
        for i, state in enumerate(states):
            reasoning, content = split_reasoning("".join(state.text), in_reasoning)
            choices.append(
                ChatChoice(
                    index=i,
                    message=AssistantMessage(
                        content=content, reasoning_content=reasoning, reasoning=reasoning
                    ),
                    logprobs=logprobs_out(state.logprobs),
                    finish_reason=state.finish_reason or "stop",
                    stop_reason=state.stop_reason,
                )
            )
        return ChatCompletionResponse(
            id=gen.request_id,
            model=model,
            choices=choices,
            usage=UsageInfo.of(gen.prompt_tokens, gen.completion_tokens, gen.cached_tokens),
            safework=plan.block(events),
        )

    async def _stream(
        self,
        request: ChatCompletionRequest,
        model: str,
        gen: Generation,
        in_reasoning: bool,
        plan: _Plan,
    ) -> AsyncIterator[str]:
        created = now()

        def chunk(
            choices: list[ChatChunkChoice],
            usage: UsageInfo | None = None,
            safework: dict[str, Any] | None = None,
        ) -> str:
            return sse_data(
                ChatCompletionChunk(
                    id=gen.request_id,
                    created=created,
                    model=model,
                    choices=choices,
                    usage=usage,
                    safework=safework,
                )
            )

        splitters = [ReasoningSplitter(in_reasoning) for _ in range(request.n)]
        for i in range(request.n):
            role = DeltaMessage(role="assistant", content="")
            yield chunk([ChatChunkChoice(index=i, delta=role)])
        try:
            async for out in gen.outputs():
                choices = []
                for d in out.choices:
                    reasoning, content = splitters[d.index].feed(d.text)
                    if d.finish_reason is not None:
                        tail_r, tail_c = splitters[d.index].flush()
                        reasoning, content = reasoning + tail_r, content + tail_c
                    if not (reasoning or content or d.finish_reason or d.logprobs):
                        continue
                    choices.append(
                        ChatChunkChoice(
                            index=d.index,
                            delta=DeltaMessage(
                                content=content or None,
                                reasoning_content=reasoning or None,
                                reasoning=reasoning or None,
                            ),
                            logprobs=logprobs_out(d.logprobs),
                            finish_reason=d.finish_reason,
                        )
                    )
                events: dict[str, Any] | None = {"events": out.events} if out.events else None
                if out.finished and plan.search is not None:  # the summary rides the last chunk
                    events = {**(events or {}), **(plan.block([]) or {})}
                if choices or events:
                    yield chunk(choices, safework=events)
            if request.include_usage:
                yield chunk(
                    [], UsageInfo.of(gen.prompt_tokens, gen.completion_tokens, gen.cached_tokens)
                )
        except (RequestError, EngineError) as e:
            yield ErrorResponse.of(e).model_dump_json()
        finally:
            plan.record(self.metrics)
        yield sse_done()
