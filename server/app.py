"""``create_app(config)``: the FastAPI application, with the engine started in ``lifespan``.

Nothing happens at import: the engine (vLLM by default) is created when the app starts, or
injected by tests through ``engine_factory``. ``app.state`` holds the engine, metrics and
the serving objects the routes call. Every service gets the engine wrapped in
``ServedEngine``: its requests are aborted when their client leaves (``disconnect.py``) and
its death answers 503 and stops the server (``lifecycle.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from safework import __version__
from safework.engine.base import Engine
from safework.value_models.registry import LoadContext

from .alignment import Alignment
from .chat.serving import ChatServing
from .completions.serving import CompletionServing
from .config import ServerConfig
from .cot.serving import CotEditServing
from .disconnect import CancelOnDisconnect
from .errors import install_error_handlers
from .lifecycle import EngineMonitor, Shutdown
from .limits import ConcurrencyLimiter, ConcurrencyLimitMiddleware, RequestLimits
from .memory.serving import MemoryService
from .metrics import ServerMetrics
from .middleware import (
    AuthMiddleware,
    BodyLimitMiddleware,
    HostCheckMiddleware,
    MetricsMiddleware,
)
from .moderations.serving import ModerationServing
from .routes import router
from .search import SearchService
from .served_engine import ServedEngine
from .web import PREFIX, mount_web

logger = logging.getLogger("safework.server")
OPEN_PATHS = frozenset({"/health", "/"})
"""Served without an API key: the health check and the web page (with its assets under
``/ui/``)."""
GENERATION_PATHS = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/moderations", "/cot/edit"}
)
"""Cancelled when their client disconnects (``disconnect.py``)."""
UNLIMITED_PATHS = OPEN_PATHS | {"/metrics"}
"""Never refused by the per-key concurrency limit (nor are the web page's assets)."""

EngineFactory = Callable[[ServerConfig], Engine]


def _vllm_engine(config: ServerConfig) -> Engine:
    from safework.engine.vllm_engine import VLLMEngine

    return VLLMEngine.create(config.engine)


def _owns_engine(model: object) -> bool:
    """A value model that runs an engine of its own (``judge:MODEL``)."""
    return bool(getattr(model, "owns_engine", False))


def _image_fetcher(config: ServerConfig) -> Any:
    """A ``SafeFetcher`` for http(s) image URLs when ``--image-fetch`` allows them."""
    if not config.images.fetch:
        return None
    from safework.search.webfetch import SafeFetcher

    images = config.images
    return SafeFetcher(timeout_s=images.fetch_timeout_s, max_bytes=images.max_bytes)


def create_app(
    config: ServerConfig,
    engine_factory: EngineFactory = _vllm_engine,
    shutdown: Shutdown | None = None,
) -> FastAPI:
    """The app; ``shutdown`` is how it stops its server when the engine dies (``safework
    serve`` attaches uvicorn to it; without one the request is only recorded)."""
    metrics = ServerMetrics()
    limits = RequestLimits.of(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        inner = engine_factory(config)
        monitor = EngineMonitor(inner, app.state.shutdown)
        engine: Engine = ServedEngine(inner, monitor)  # type: ignore[assignment]
        alignment = Alignment.load(
            config.value_models,
            LoadContext(engine=engine),
            config.max_candidates,
            config.max_beam_width,
        )
        monitor.others = [m.engine for m in alignment.models.values() if _owns_engine(m)]
        search = await SearchService.load(config.search, engine)
        memory = await MemoryService.load(config.memory, metrics) if config.memory else None
        app.state.engine = engine
        app.state.monitor = monitor
        app.state.alignment = alignment
        app.state.search = search
        app.state.memory = memory
        image_fetcher = _image_fetcher(config)
        app.state.chat = ChatServing(
            engine,
            metrics,
            config.max_n,
            alignment,
            search,
            memory,
            config.reasoning_output,
            trust_request_chat_template=config.trust_request_chat_template,
            limits=limits,
            images=config.images,
            image_fetcher=image_fetcher,
        )
        app.state.cot = CotEditServing(app.state.chat, memory)
        app.state.completions = CompletionServing(engine, metrics, config.max_n, limits)
        app.state.moderations = ModerationServing(
            alignment, images=config.images, image_fetcher=image_fetcher
        )
        logger.info("serving %s (context %d tokens)", engine.model_id, engine.max_model_len)
        watchdog = asyncio.create_task(monitor.watch())
        try:
            yield
        finally:
            watchdog.cancel()
            if memory is not None:
                await memory.close()
            await search.close()
            if image_fetcher is not None:
                await image_fetcher.close()
            await alignment.close()
            await engine.shutdown()

    app = FastAPI(
        title="SafeWork",
        version=__version__,
        summary="OpenAI-compatible server for safety-aligned reasoning models",
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.metrics = metrics
    app.state.shutdown = shutdown or Shutdown()
    install_error_handlers(app)
    app.include_router(router)
    if config.web_ui:
        mount_web(app)
    # Added last = outermost: metrics, the Host check, auth, the per-key concurrency limit
    # (it needs the tenant), the body limit, then the cancellation of generation requests
    # whose client left.
    app.add_middleware(CancelOnDisconnect, paths=GENERATION_PATHS)
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.state.limiter = ConcurrencyLimiter(config.max_concurrent_per_key)
    app.add_middleware(
        ConcurrencyLimitMiddleware,
        limiter=app.state.limiter,
        open_paths=UNLIMITED_PATHS,
        open_prefixes=(PREFIX + "/",),
    )
    app.add_middleware(
        AuthMiddleware,
        api_keys=config.api_keys,
        open_paths=OPEN_PATHS,
        open_prefixes=(PREFIX + "/",),
    )
    if "*" not in config.allowed_hosts:
        app.add_middleware(HostCheckMiddleware, allowed_hosts=config.allowed_hosts)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
