"""``POST /cot/edit``: the model continues from the user's corrected reasoning.

The conversation is rendered with a final assistant message that is left open: ``<think>``
followed by the corrected reasoning, and the ``continue`` strategy (``ContinueReasoning``,
``continuation.py``) streams that prefix, lets the model finish its reasoning and answer.

The answer goes back as a ``chat.completion`` (or its stream) through the chat serving
layer; with ``remember`` room in the tenant's memory quota is reserved before anything is
generated (``memory/quota.py``), the correction is stored once the answer is complete, and
the response (or the stream's last chunk) carries its ``memory_id``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from safework.errors import RequestError
from safework.memory.records import TEXT_LIMITS

from ..chat.plan import FinishHook
from ..chat.serving import ChatServing
from ..chat.strategies import STRATEGIES
from ..config import DEFAULT_TENANT
from ..memory.quota import Reservation
from ..memory.serving import MemoryService
from ..protocol import ErrorResponse
from ..serving_common import check_model
from .protocol import CotEditRequest


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
            await self.chat.load_images(chat_request, model)
            if request.remember and self.memory is not None:
                reservation = self.memory.reserve(tenant, request.known_bytes(model))
        except RequestError as e:
            return ErrorResponse.of(e)
        messages = self.chat.template_messages(chat_request)
        plan = STRATEGIES["continue"].factory(
            self.chat.services, chat_request, messages, tenant, request
        )
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
                kind="preference" if request.scope == "always" else "correction",
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
