"""``POST /cot/edit``: the model continues from the user's corrected reasoning.

The conversation is rendered with a final assistant message that is left open: ``<think>``
followed by the corrected reasoning, so the model continues the user's text rather than
starting again. ``ContinueReasoning`` then

1. streams the corrected reasoning itself (no token ids: the model did not write it), so
   ``reasoning_content`` is the corrected prefix plus the continuation;
2. lets the model finish its reasoning, up to ``</think>``;
3. and, when the model ended without closing its reasoning (small models do not know the
   tag), closes it and asks for the answer after it.

The answer goes back as a ``chat.completion`` (or its stream) through the chat serving
layer; with ``remember`` room in the tenant's memory quota is reserved before anything is
generated (``memory/quota.py``), the correction is stored once the answer is complete, and
the response (or the stream's last chunk) carries its ``memory_id``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import replace
from typing import Any

from safework.engine.base import ChoiceDelta, Engine, EngineOutput, FinishReason, SamplingConfig
from safework.engine.reasoning import CLOSE_TAG
from safework.errors import RequestError
from safework.memory.records import TEXT_LIMITS

from ..chat.serving import ChatServing, FinishHook, Plan
from ..config import DEFAULT_TENANT
from ..memory.quota import Reservation
from ..memory.serving import MemoryService
from ..protocol import ErrorResponse
from ..serving_common import check_model
from .protocol import CotEditRequest

ROUTE = "/cot/edit"
CLOSING = f"{CLOSE_TAG}\n\n"


class ContinueReasoning:
    """A strategy: stream the corrected prefix, continue the reasoning, then the answer."""

    def __init__(self, edited: str) -> None:
        self.edited = edited

    async def __call__(
        self, engine: Engine, prompt_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        n_prompt = len(prompt_ids)
        opening = ChoiceDelta(index=0, text=self.edited, token_ids=[])
        yield EngineOutput(request_id, n_prompt, [opening], False)
        thinking = replace(
            sampling, stop=[CLOSE_TAG, *sampling.stop], include_stop_str_in_output=True
        )
        text, used, end = "", 0, None
        reasoning = engine.generate(prompt_ids, thinking, f"{request_id}-reason")
        async with contextlib.aclosing(reasoning) as outputs:  # closed (aborted) if we are
            async for out in outputs:
                for d in out.choices:
                    text += d.text
                    used += len(d.token_ids)
                    if d.finish_reason is not None:
                        end = d
                        d = ChoiceDelta(  # not finished yet
                            index=0, text=d.text, token_ids=d.token_ids, logprobs=d.logprobs
                        )
                    yield EngineOutput(request_id, n_prompt, [d], False)
        closed = end is not None and end.stop_reason == CLOSE_TAG
        if end is None or end.finish_reason == "length" or used >= sampling.max_tokens:
            yield self._finish(request_id, n_prompt, "length")
            return
        if end.finish_reason != "stop" or end.stop_reason in sampling.stop:
            yield self._finish(request_id, n_prompt, end.finish_reason, end.stop_reason)
            return
        # Reasoning is over: closed by the model, or ended without the tag (close it here).
        inserted = "\n\n" if closed else CLOSING
        closing = ChoiceDelta(index=0, text=inserted, token_ids=[])
        yield EngineOutput(request_id, n_prompt, [closing], False)
        context = prompt_ids + await engine.tokenize(text.removesuffix(CLOSE_TAG) + CLOSING)
        budget = min(sampling.max_tokens - used, engine.max_model_len - len(context))
        if budget <= 0:
            yield self._finish(request_id, n_prompt, "length")
            return
        answering = replace(sampling, max_tokens=budget)
        answer = engine.generate(context, answering, f"{request_id}-answer")
        async with contextlib.aclosing(answer) as outputs:
            async for out in outputs:
                for d in out.choices:
                    yield EngineOutput(request_id, n_prompt, [d], out.finished)

    @staticmethod
    def _finish(
        rid: str, n_prompt: int, reason: FinishReason | None, stop: str | int | None = None
    ) -> EngineOutput:
        delta = ChoiceDelta(
            index=0, text="", token_ids=[], finish_reason=reason or "stop", stop_reason=stop
        )
        return EngineOutput(rid, n_prompt, [delta], True)


class CotEditServing:
    def __init__(self, chat: ChatServing, memory: MemoryService | None) -> None:
        self.chat = chat
        self.memory = memory

    async def create(self, request: CotEditRequest, tenant: str = DEFAULT_TENANT) -> Any:
        """The continued answer; with ``remember``, room in the tenant's memory quota is
        reserved first (a full memory is a 429 before anything is generated)."""
        reservation: Reservation | None = None
        try:
            model = check_model(request.model or self.chat.engine.model_id, self.chat.engine)
            if request.remember and self.memory is None:
                raise RequestError(
                    "the correction memory is off on this server; send remember=false",
                    param="remember",
                    code="memory_off",
                )
            chat_request = request.chat_request()
            if request.remember and self.memory is not None:
                reservation = self.memory.reserve(tenant, request.known_bytes(model))
        except RequestError as e:
            return ErrorResponse.of(e)
        messages = [m.to_template() for m in chat_request.messages]
        plan = Plan(ContinueReasoning(request.edited_reasoning), messages, route=ROUTE)
        if reservation is not None:
            plan.on_finish = self._store_hook(request, tenant, model, reservation)
        try:
            result = await self.chat.respond(chat_request, plan, model, tenant)
        except BaseException:
            if reservation is not None:
                reservation.release()
            raise
        return holding(result, reservation) if reservation is not None else result

    def _store_hook(
        self, request: CotEditRequest, tenant: str, model: str, reservation: Reservation
    ) -> FinishHook:
        """Store the correction once the answer is complete; its id goes in the response.
        What the model wrote is cut to the store's limits rather than refused after the work."""
        memory = self.memory
        assert memory is not None

        async def store(reasoning: str, content: str) -> dict[str, Any]:
            corrected = reasoning.strip() or request.edited_reasoning
            record = await memory.remember(
                tenant,
                reservation,
                question=request.question,
                reasoning=request.mistake,
                corrected_reasoning=corrected[: TEXT_LIMITS["corrected_reasoning"]],
                answer=content.strip()[: TEXT_LIMITS["answer"]] or None,
                feedback=request.feedback,
                model=model,
            )
            return {"memory_id": record.id}

        return store


def holding(result: Any, reservation: Reservation) -> Any:
    """``result`` with ``reservation`` given back once the request is over: at once for JSON
    or an error, when a stream ends or is closed (a disconnect) for SSE."""
    if not isinstance(result, AsyncIterator):
        reservation.release()
        return result

    async def stream() -> AsyncIterator[str]:
        async with aclosing(result):  # closing this closes the chat stream: it aborts at once
            try:
                async for data in result:
                    yield data
            finally:
                reservation.release()

    return stream()
