"""Routes: the OpenAI endpoints, health and metrics. Each picks JSON or SSE, nothing more.

Generation routes run under ``cancel_on_disconnect``: a client that goes away while a
non-streaming completion is generated cancels it, which aborts the engine request. Streams
get the same from ``EventSourceResponse``, which cancels the generator on disconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse

from safework.errors import NotFoundError

from .chat.protocol import ChatCompletionRequest
from .completions.protocol import CompletionRequest
from .cot.protocol import CotEditRequest
from .errors import error_response
from .memory.protocol import MemoryDeleted, MemoryList, MemoryRecordOut
from .memory.serving import MemoryService
from .moderations.protocol import ModerationRequest
from .protocol import ErrorResponse, ModelCard, ModelList

router = APIRouter()
T = TypeVar("T")


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T | None:
    """Run ``work``; if the client disconnects first, cancel it and return ``None``."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()  # unwinds the generation, which aborts it in the engine
            await asyncio.wait({task})
    return None if task.cancelled() else task.result()


def respond(result: Any) -> Response:
    if isinstance(result, ErrorResponse):
        return error_response(result)
    if isinstance(result, AsyncIterator):
        return EventSourceResponse(result, sep="\n", ping=15)
    return JSONResponse(result.model_dump(exclude_none=True))


@router.get("/health")
async def health(request: Request) -> Response:
    await request.app.state.engine.check_health()
    return Response(status_code=200)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    admin = tenant(request) in request.app.state.config.metrics_admin_tenants
    return Response(
        request.app.state.metrics.exposition(with_tenants=admin),
        media_type="text/plain; version=0.0.4",
    )


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    """The served model, and its profiles (``:aligned``, ``:search``) when configured."""
    engine, state = request.app.state.engine, request.app.state
    ids = [engine.model_id]
    if state.alignment.enabled:
        ids.append(f"{engine.model_id}:aligned")
    if state.search.enabled:
        ids.append(f"{engine.model_id}:search")
    return ModelList(data=[ModelCard(id=i, max_model_len=engine.max_model_len) for i in ids])


def tenant(request: Request) -> str:
    """The tenant the API key maps to (set by the auth middleware)."""
    return request.state.tenant


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    work = request.app.state.chat.create(body, tenant(request))
    result = await cancel_on_disconnect(request, work)
    return respond(result) if result is not None else Response(status_code=499)


@router.post("/cot/edit")
async def cot_edit(body: CotEditRequest, request: Request) -> Response:
    work = request.app.state.cot.create(body, tenant(request))
    result = await cancel_on_disconnect(request, work)
    return respond(result) if result is not None else Response(status_code=499)


def _memory(request: Request) -> MemoryService:
    memory = request.app.state.memory
    if memory is None:
        raise NotFoundError("the correction memory is off on this server", code="not_found")
    return memory


@router.get("/v1/memory", response_model=MemoryList)
async def list_memory(
    request: Request,
    limit: int = Query(default=20, ge=1, le=100),
    after: str | None = Query(default=None, max_length=64),
    q: str | None = Query(default=None, max_length=500, description="Text the record contains."),
) -> MemoryList:
    """The tenant's corrections, newest first; page with ``after=<last id>``."""
    records, more = await _memory(request).list(tenant(request), limit, after, q)
    data = [MemoryRecordOut.of(r) for r in records]
    return MemoryList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=more,
    )


@router.get("/v1/memory/{memory_id}", response_model=MemoryRecordOut)
async def get_memory(memory_id: str, request: Request) -> MemoryRecordOut:
    return MemoryRecordOut.of(await _memory(request).get(tenant(request), memory_id))


@router.delete("/v1/memory/{memory_id}", response_model=MemoryDeleted)
async def delete_memory(memory_id: str, request: Request) -> MemoryDeleted:
    await _memory(request).delete(tenant(request), memory_id)
    return MemoryDeleted(id=memory_id)


@router.post("/v1/moderations")
async def moderations(body: ModerationRequest, request: Request) -> Response:
    return respond(await request.app.state.moderations.create(body))


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    work = request.app.state.completions.create(body, tenant(request))
    result = await cancel_on_disconnect(request, work)
    return respond(result) if result is not None else Response(status_code=499)
