"""Routes: the OpenAI endpoints, health and metrics. Each picks JSON or SSE, nothing more.

A client that goes away cancels its generation request, stream or not, and every engine
request it started is aborted: ``disconnect.CancelOnDisconnect`` does it for these routes.
Once the engine is dead, generation routes and ``/health`` answer 503 (``lifecycle.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse

from safework.errors import EngineDeadError, EngineError, NotFoundError

from .chat.protocol import ChatCompletionRequest
from .completions.protocol import CompletionRequest
from .cot.protocol import CotEditRequest
from .errors import error_response
from .memory.protocol import MemoryCreate, MemoryDeleted, MemoryList, MemoryRecordOut
from .memory.serving import MemoryService
from .moderations.protocol import ModerationRequest
from .protocol import ErrorResponse, ModelCard, ModelList

router = APIRouter()


async def engine_alive(request: Request) -> None:
    """Refuse generation on a dead engine: 503, ``code: engine_dead``."""
    request.app.state.monitor.ensure_alive()


ALIVE = [Depends(engine_alive)]


def respond(result: Any) -> Response:
    if isinstance(result, ErrorResponse):
        return error_response(result)
    if isinstance(result, AsyncIterator):
        return EventSourceResponse(result, sep="\n", ping=15)
    return JSONResponse(result.model_dump(exclude_none=True))


@router.get("/health")
async def health(request: Request) -> Response:
    """200 while the engine serves; 503 (an OpenAI error body) once it is dead or fails its
    check, as ``vllm serve``'s ``/health``."""
    try:
        await request.app.state.engine.check_health()
    except EngineError as e:
        return error_response(ErrorResponse.of(e if e.status_code == 503 else _unhealthy(e)))
    return Response(status_code=200)


def _unhealthy(e: EngineError) -> EngineDeadError:
    return EngineDeadError(f"The engine failed its health check: {e}")


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


@router.post("/v1/chat/completions", dependencies=ALIVE)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    work = request.app.state.chat.create(body, tenant(request))
    return respond(await work)


@router.post("/cot/edit", dependencies=ALIVE)
async def cot_edit(body: CotEditRequest, request: Request) -> Response:
    work = request.app.state.cot.create(body, tenant(request))
    return respond(await work)


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
    kind: Literal["correction", "preference"] | None = Query(
        default=None, description="Only corrections, or only standing preferences."
    ),
) -> MemoryList:
    """The tenant's corrections and preferences, newest first; page with ``after=<last id>``."""
    records, more = await _memory(request).list(tenant(request), limit, after, q, kind)
    data = [MemoryRecordOut.of(r) for r in records]
    return MemoryList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=more,
    )


@router.post("/v1/memory", response_model=MemoryRecordOut)
async def create_memory(body: MemoryCreate, request: Request) -> MemoryRecordOut:
    """A standing preference of this API key's tenant: it guides every later answer."""
    model = request.app.state.engine.model_id
    record = await _memory(request).add_preference(tenant(request), body.text, model)
    return MemoryRecordOut.of(record)


@router.get("/v1/memory/{memory_id}", response_model=MemoryRecordOut)
async def get_memory(memory_id: str, request: Request) -> MemoryRecordOut:
    return MemoryRecordOut.of(await _memory(request).get(tenant(request), memory_id))


@router.delete("/v1/memory/{memory_id}", response_model=MemoryDeleted)
async def delete_memory(memory_id: str, request: Request) -> MemoryDeleted:
    await _memory(request).delete(tenant(request), memory_id)
    return MemoryDeleted(id=memory_id)


@router.post("/v1/moderations", dependencies=ALIVE)
async def moderations(body: ModerationRequest, request: Request) -> Response:
    return respond(await request.app.state.moderations.create(body))


@router.post("/v1/completions", dependencies=ALIVE)
async def completions(body: CompletionRequest, request: Request) -> Response:
    work = request.app.state.completions.create(body, tenant(request))
    return respond(await work)
