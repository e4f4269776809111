"""Chat completions: messages -> prompt -> engine -> OpenAI response or SSE chunks.

``ChatServing.create`` returns a ``ChatCompletionResponse``, an async iterator of SSE data
strings (``stream=true``), or an ``ErrorResponse``: errors are values, and the router only
chooses between JSON and SSE. Stream order is fixed and tested: one role chunk per choice,
content/reasoning deltas, exactly one ``finish_reason`` per choice, an optional usage chunk,
then ``[DONE]``; a failure after the stream started (the engine, a full memory store at the
finish hook, anything unexpected) is sent as an error data event, then ``[DONE]``, and
counted in ``safework_stream_errors``. How the
reasoning is sent (fields or inline ``<think>`` tags) is ``reasoning_output.py``'s business.
Which strategy answers (plain, aligned, search) is the registry's (``strategies.py``), and
the ``Plan`` it builds (``plan.py``) reports on the answer. With ``n > 1`` the aligned and
search strategies answer each choice with its own guided decoder or search session, run
concurrently (``fanout.py``), and ``Plan.block`` reports each choice in ``safework.choices``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jinja2

from safework.engine.base import ChoiceDelta, Engine, TokenLogprob
from safework.engine.chat_template import TemplatePolicy
from safework.engine.events import Event
from safework.engine.reasoning import ReasoningSplitter, split_reasoning, starts_in_reasoning
from safework.errors import EngineError, RequestError, UnavailableError
from safework.memory.store import CorrectionRecord, MemoryHit
from safework.search.prompts import with_system
from safework.value_models.registry import ValueModelsConfig

from ..alignment import Alignment
from ..config import DEFAULT_TENANT
from ..disconnect import current_scope
from ..generation import Generation, plain
from ..images import ImageError, ImageSettings, load_images
from ..limits import RequestLimits
from ..memory.serving import MemoryService
from ..memory.serving import guidance as memory_guidance
from ..metrics import ServerMetrics
from ..protocol import ErrorResponse, UsageInfo, now, random_id
from ..sampling import resolve_max_tokens
from ..search import SearchService, SearchSettings
from ..serving_common import (
    check_model,
    check_n,
    engine_failure,
    sse_data,
    sse_done,
    tenant_cache_salt,
)
from .plan import FinishHook, Plan
from .protocol import (
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
from .reasoning_output import ReasoningFormat, reasoning_format, split_in_order
from .strategies import Services, check_profile, plan_for, resolve, split_profile

__all__ = ["ChatServing", "FinishHook", "Plan", "chunk_choices", "logprobs_out"]

logger = logging.getLogger(__name__)


def logprobs_out(items: list[TokenLogprob] | None, as_ids: bool = False) -> ChoiceLogprobs | None:
    if items is None:
        return None
    return ChoiceLogprobs(
        content=[
            TokenLogprobOut(
                token=lp.label(as_ids),
                logprob=lp.logprob,
                bytes=list(lp.token.encode()),
                top_logprobs=[
                    TopLogprobOut(
                        token=t.label(as_ids), logprob=t.logprob, bytes=list(t.token.encode())
                    )
                    for t in lp.top
                ],
            )
            for lp in items
        ]
    )


def chunk_choices(
    delta: ChoiceDelta, deltas: list[DeltaMessage], as_ids: bool = False
) -> list[ChatChunkChoice]:
    """One engine delta's stream choices: its formatted deltas, with the logprobs and the
    ``finish_reason`` on the last (an empty delta carries them when there is no text)."""
    if not deltas and (delta.finish_reason is not None or delta.logprobs):
        deltas = [DeltaMessage()]
    choices = [ChatChunkChoice(index=delta.index, delta=d) for d in deltas]
    if choices:
        choices[-1].logprobs = logprobs_out(delta.logprobs, as_ids)
        choices[-1].finish_reason = delta.finish_reason
    return choices


@dataclass
class _ChoiceState:
    """Everything accumulated for one choice of a request, in time linear in its tokens
    (text pieces joined once at the end, logprobs extended in place)."""

    splitter: ReasoningSplitter
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None

    def add(self, delta: ChoiceDelta) -> None:
        self.text.append(delta.text)
        if delta.logprobs is not None:
            if self.logprobs is None:
                self.logprobs = []
            self.logprobs.extend(delta.logprobs)
        if delta.finish_reason is not None:
            self.finish_reason, self.stop_reason = delta.finish_reason, delta.stop_reason


@dataclass
class _StreamChoice:
    """One choice of a stream: splits the model's text, then formats it for the client."""

    splitter: ReasoningSplitter
    format: ReasoningFormat
    reasoning: str = ""
    content: str = ""
    """Everything split so far (plain, whatever the format), for the finish hook."""
    as_ids: bool = False
    """Logprob tokens as ``token_id:{id}`` (the request's ``return_tokens_as_token_ids``)."""

    def step(self, delta: ChoiceDelta) -> list[ChatChunkChoice]:
        finished = delta.finish_reason is not None
        segments = split_in_order(self.splitter, delta.text, finished)
        for kind, text in segments:
            if kind == "reasoning":
                self.reasoning += text
            else:
                self.content += text
        return chunk_choices(delta, self.format.deltas(segments, finished), self.as_ids)


def watchable(request: ChatCompletionRequest) -> bool:
    """Whether a plain answer's first steps may be checked against mistake keys and replaced:
    one choice, free text (a grammar or logprobs would not survive a replaced step), and an
    answer that starts fresh rather than continuing the client's own final message."""
    return (
        request.n == 1
        and not request.logprobs
        and request.structured_output() is None
        and not request.continue_final_message
    )


class ChatServing:
    def __init__(
        self,
        engine: Engine,
        metrics: ServerMetrics,
        max_n: int = 16,
        alignment: Alignment | None = None,
        search: SearchService | None = None,
        memory: MemoryService | None = None,
        reasoning_output: str = "fields",
        *,
        trust_request_chat_template: bool = False,
        limits: RequestLimits | None = None,
        images: ImageSettings | None = None,
        image_fetcher: Any = None,
    ) -> None:
        reasoning_format(reasoning_output)  # an unknown name fails here, at startup
        self.engine = engine
        self.metrics = metrics
        self.max_n = max_n
        self.alignment = alignment or Alignment({}, ValueModelsConfig())
        self.search = search or SearchService({}, SearchSettings())
        self.memory = memory
        self.reasoning_output = reasoning_output
        self.templates = TemplatePolicy(trust_request_templates=trust_request_chat_template)
        """What a request may send to the chat template (``engine/chat_template.py``)."""
        self.limits = limits or RequestLimits()
        """The max_tokens cap and ignore_eos policy (``limits.py``), for /cot/edit too."""
        self.images = images or ImageSettings()
        self.image_fetcher = image_fetcher
        """A ``SafeFetcher`` for http(s) image URLs, when ``images.fetch`` allows them."""

    @property
    def services(self) -> Services:
        """What the strategies are built from (``strategies.py``)."""
        return Services(self.alignment, self.search)

    def _plan(
        self,
        request: ChatCompletionRequest,
        profile: str | None,
        hits: list[MemoryHit],
        tenant: str = DEFAULT_TENANT,
        preferences: list[CorrectionRecord] | None = None,
    ) -> Plan:
        """The request's strategy from the registry (``strategies.py``); the tenant's standing
        preferences and recalled corrections go into the system message whatever the
        strategy."""
        messages = self.template_messages(request)
        preferences = preferences or []
        if hits or preferences:
            messages = with_system(messages, memory_guidance(hits, preferences))
        name = resolve(profile, request.safework)
        plan = plan_for(name, self.services, request, messages, tenant)
        plan.memory_hits = hits
        plan.memory_preferences = preferences
        return plan

    def template_messages(self, request: ChatCompletionRequest) -> list[dict[str, Any]]:
        """The request's messages for the chat template, image parts as the model's
        placeholder (``ChatMessage.to_template``)."""
        placeholder, markers = self.engine.image_placeholder, self.engine.image_markers
        return [m.to_template(placeholder, markers) for m in request.messages]

    async def load_images(self, request: ChatCompletionRequest, model: str) -> None:
        """Check and decode the request's image parts (``images.py``) and give them to its
        engine requests (``RequestScope.images``); a 400 naming the part otherwise, or when the
        model reads text only."""
        parts = request.image_parts
        if not parts:
            return
        if self.engine.image_placeholder is None:
            raise RequestError(
                f"the model {model!r} reads text only: send no image parts",
                param=parts[0][0],
                code="images_not_supported",
            )
        try:
            images = await load_images(parts, self.images, self.image_fetcher)
        except ImageError as e:
            raise RequestError(str(e), param=e.param, code="invalid_image") from None
        scope = current_scope()
        if scope is not None:
            scope.images = images

    async def create(
        self, request: ChatCompletionRequest, tenant: str = DEFAULT_TENANT
    ) -> ChatCompletionResponse | AsyncIterator[str] | ErrorResponse:
        try:
            base, profile = split_profile(request.model or self.engine.model_id)
            model = check_model(base, self.engine)
            check_profile(profile, self.services, request.model or "")
            check_n(request.n, self.max_n)
            await self.load_images(request, model)
            hits: list[MemoryHit] = []
            preferences: list[CorrectionRecord] = []
            if self.memory is not None and not request.continue_final_message:
                options = request.safework.memory if request.safework else None
                hits = await self.memory.recall(tenant, request.question, options)
                preferences = await self.memory.preferences(tenant, options)
            plan = self._plan(request, profile, hits, tenant, preferences)
            if self.memory is not None and plan.strategy is plain and watchable(request):
                options = request.safework.memory if request.safework else None
                watch = self.memory.mistake_watch(tenant, options)
                if watch is not None:
                    plan.strategy, plan.mistakes = watch, watch
        except RequestError as e:
            return ErrorResponse.of(e)
        served = f"{model}:{profile}" if profile else model
        return await self.respond(request, plan, served, tenant)

    async def respond(
        self,
        request: ChatCompletionRequest,
        plan: Plan,
        model: str,
        tenant: str = DEFAULT_TENANT,
    ) -> ChatCompletionResponse | AsyncIterator[str] | ErrorResponse:
        """Render, start the generation and answer in JSON or SSE (``/cot/edit`` too); the
        engine's prefix cache is the tenant's own (``tenant_cache_salt``)."""
        try:
            self.limits.check_sampling(request)
            prompt = await self._render(request, plan.messages)
            for session in plan.searches:
                session.in_reasoning = starts_in_reasoning(prompt)
            prompt_ids = await self.engine.tokenize(prompt)
            max_tokens = resolve_max_tokens(
                request.completion_budget,
                len(prompt_ids),
                self.engine.max_model_len,
                "max_completion_tokens" if request.max_completion_tokens else "max_tokens",
                self.limits.max_tokens_cap,
            )
            sampling = request.to_sampling_config(
                max_tokens=max_tokens,
                logprobs=request.logprobs_k,
                defaults=self.engine.sampling_defaults,
                structured=request.structured_output(),
            )
            sampling.cache_salt = tenant_cache_salt(tenant)
            gen = Generation(
                self.engine,
                self.metrics,
                plan.route,
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
        if request.stream:
            return self._stream(request, model, gen, in_reasoning, plan)
        return await self._full(request, model, gen, in_reasoning, plan)

    async def _render(self, request: ChatCompletionRequest, messages: list[dict[str, Any]]) -> str:
        variables = self.templates.check(request.chat_template_kwargs, request.chat_template)
        try:
            return await self.engine.render_chat(
                messages,
                add_generation_prompt=not request.continue_final_message,
                continue_final_message=request.continue_final_message,
                chat_template_kwargs=variables or None,
            )
        except (jinja2.TemplateError, ValueError, TypeError) as e:
            raise RequestError(f"cannot apply the chat template: {e}", param="messages") from e

    async def _full(
        self,
        request: ChatCompletionRequest,
        model: str,
        gen: Generation,
        in_reasoning: bool,
        plan: Plan,
    ) -> ChatCompletionResponse | ErrorResponse:
        states = [_ChoiceState(ReasoningSplitter(in_reasoning)) for _ in range(request.n)]
        events: list[Event] = []
        try:
            async for out in gen.outputs():
                events += out.events
                for delta in out.choices:
                    states[delta.index].add(delta)
        except (RequestError, EngineError) as e:
            return ErrorResponse.of(e)
        finally:
            await gen.aclose()
            plan.record(self.metrics)
        choices = []
        extra: dict[str, Any] = {}
        for i, state in enumerate(states):
            reasoning, content = split_reasoning("".join(state.text), in_reasoning)
            if i == 0 and plan.on_finish is not None:
                try:
                    extra = await plan.on_finish(reasoning or "", content or "")
                except (RequestError, UnavailableError) as e:  # a store full or locked: 503
                    return ErrorResponse.of(e)
            choices.append(
                ChatChoice(
                    index=i,
                    message=reasoning_format(self.reasoning_output).message(reasoning, content),
                    logprobs=logprobs_out(state.logprobs, request.return_tokens_as_token_ids),
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
            **extra,
        )

    async def _stream(
        self,
        request: ChatCompletionRequest,
        model: str,
        gen: Generation,
        in_reasoning: bool,
        plan: Plan,
    ) -> AsyncIterator[str]:
        created = now()

        def chunk(
            choices: list[ChatChunkChoice],
            usage: UsageInfo | None = None,
            safework: dict[str, Any] | None = None,
            **extra: Any,
        ) -> str:
            return sse_data(
                ChatCompletionChunk(
                    id=gen.request_id,
                    created=created,
                    model=model,
                    choices=choices,
                    usage=usage,
                    safework=safework,
                    **extra,
                )
            )

        states = [
            _StreamChoice(
                ReasoningSplitter(in_reasoning),
                reasoning_format(self.reasoning_output),
                as_ids=request.return_tokens_as_token_ids,
            )
            for _ in range(request.n)
        ]
        events: list[Event] = []
        try:
            for i in range(request.n):
                role = DeltaMessage(role="assistant", content="")
                yield chunk([ChatChunkChoice(index=i, delta=role)])
            async for out in gen.outputs():
                events += out.events
                # A choice may give several deltas in one step (reasoning, then answer): round k
                # holds the k-th of each choice, one SSE chunk per round, so no chunk names a
                # choice twice (Open WebUI and LibreChat read only a chunk's first choice).
                rounds: list[list[ChatChunkChoice]] = []
                for d in out.choices:
                    for k, choice in enumerate(states[d.index].step(d)):
                        if k == len(rounds):
                            rounds.append([])
                        rounds[k].append(choice)
                head = {"events": [e.to_json() for e in out.events]} if out.events else {}
                tail: dict[str, Any] = {}
                extra: dict[str, Any] = {}
                if out.finished:  # the summary and the finish hook's fields ride the last chunk
                    tail = plan.summary(events)
                    if plan.on_finish is not None:
                        extra = await plan.on_finish(states[0].reasoning, states[0].content)
                rounds = rounds or [[]]
                for k, choices in enumerate(rounds):
                    last = k == len(rounds) - 1
                    safework = {**(head if k == 0 else {}), **(tail if last else {})} or None
                    fields = extra if last else {}
                    if choices or safework or fields:
                        yield chunk(choices, safework=safework, **fields)
            if request.include_usage:
                yield chunk(
                    [], UsageInfo.of(gen.prompt_tokens, gen.completion_tokens, gen.cached_tokens)
                )
        except (RequestError, EngineError, UnavailableError) as e:
            yield self._stream_error(plan, e)
        except Exception as e:  # anything else: still an error event and [DONE], not a cut
            yield self._stream_error(plan, engine_failure(e))
        finally:  # also when the stream is closed at a yield (its client left): abort now
            await gen.aclose()
            plan.record(self.metrics)
        yield sse_done()

    def _stream_error(
        self, plan: Plan, error: RequestError | EngineError | UnavailableError
    ) -> str:
        """The error event of a stream whose 200 was already sent (counted, by type)."""
        self.metrics.stream_errors.labels(plan.route, error.type).inc()
        return ErrorResponse.of(error).model_dump_json()
