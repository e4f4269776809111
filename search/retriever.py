"""A Search-R1-compatible retriever server over any search backend: ``POST /retrieve``.

The server (through the ``http:URL`` backend) and Search-R1-style training rollouts can then
ask the same retriever, and tests can drive ``HTTPBackend`` against a real app::

    python -m safework.search.retriever local:builtin --port 8001
    python -m safework.search.retriever duckduckgo --port 8001 --option region=us-en
    safework serve --search-backend http:http://127.0.0.1:8001

``POST /retrieve {"queries": [...], "topk": 3, "return_scores": true}`` answers
``{"result": [[{"document": {"id", "contents"}, "score"}, ...], ...]}`` (plain documents when
``return_scores`` is false), ``contents`` being ``"Title"\\n`` and the result's snippet, or
the whole document read through the backend with ``--full-text``. Documents with a url carry
it as an extra ``url`` field. ``GET /health`` says which backend answers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints

from safework.errors import ConfigError

from .base import (
    BackendContext,
    SearchBackend,
    SearchError,
    SearchResult,
    SearchTimeout,
    load_backend,
)
from .http import format_contents

__all__ = ["RetrieveRequest", "create_retriever_app", "main"]

logger = logging.getLogger("safework.search.retriever")

MAX_QUERIES = 64
MAX_TOPK = 50

Query = Annotated[str, StringConstraints(pattern=r"\S")]
"""A query with at least one non-space character."""


class RetrieveRequest(BaseModel):
    """Search-R1's request body (unknown fields are ignored, as Search-R1's server does)."""

    queries: list[Query] = Field(max_length=MAX_QUERIES, description="one result list each")
    topk: int = Field(3, ge=1, le=MAX_TOPK, description="results per query")
    return_scores: bool = Field(False, description="wrap each document with its score")


def create_retriever_app(backend: SearchBackend, *, full_text: bool = False) -> FastAPI:
    """The retriever app over ``backend``, which it owns: it is closed when the app stops."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await backend.close()

    app = FastAPI(title="SafeWork retriever", lifespan=lifespan)
    app.state.backend = backend

    @app.post("/retrieve")
    async def retrieve(body: RetrieveRequest) -> dict[str, Any]:
        results = await backend.search_many(body.queries, body.topk)
        lists = [rs[: body.topk] for rs in results]
        texts = await asyncio.gather(*(_texts(backend, rs, full_text) for rs in lists))
        return {
            "result": [
                [_entry(r, text, body.return_scores) for r, text in zip(rs, ts, strict=True)]
                for rs, ts in zip(lists, texts, strict=True)
            ]
        }

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "backend": backend.name}

    @app.exception_handler(SearchError)
    async def search_failed(_: Request, exc: Exception) -> JSONResponse:
        status = 504 if isinstance(exc, SearchTimeout) else 502
        body = {"error": {"message": str(exc), "type": "search_error"}}
        return JSONResponse(body, status_code=status)

    return app


async def _texts(backend: SearchBackend, results: list[SearchResult], full: bool) -> list[str]:
    """The text each result's ``contents`` carries: its snippet, or the whole document."""
    if not full:
        return [r.snippet for r in results]
    return list(await asyncio.gather(*(_full_text(backend, r) for r in results)))


async def _full_text(backend: SearchBackend, result: SearchResult) -> str:
    try:
        return (await backend.read(result.id)).text
    except SearchError as e:
        logger.warning("reading %r failed, sending its snippet: %s", result.id, e)
        return result.snippet


def _entry(result: SearchResult, text: str, with_score: bool) -> dict[str, Any]:
    document: dict[str, Any] = {"id": result.id, "contents": format_contents(result.title, text)}
    if result.url:
        document["url"] = result.url
    return {"document": document, "score": result.score} if with_score else document


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m safework.search.retriever",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", help="a search backend: duckduckgo, local:PATH, local:builtin, http:URL")
    p.add_argument("--name", help="the backend's name in logs (default: its kind)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default %(default)s)")
    p.add_argument("--port", type=int, default=8001, help="port (default %(default)s)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-call timeout, seconds")
    p.add_argument("--retries", type=int, default=2, help="extra attempts after a failure")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a backend option (repeatable), e.g. region=us-en, safesearch=off",
    )
    p.add_argument(
        "--full-text", action="store_true", help="send whole documents instead of snippets"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def parse_options(items: Sequence[str]) -> dict[str, str]:
    """``["region=us-en"]`` -> ``{"region": "us-en"}``; ConfigError without ``=``."""
    options: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option takes KEY=VALUE (got {item!r})")
        options[key] = value
    return options


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    args = build_parser().parse_args(argv)
    try:
        options = parse_options(args.option)
        ctx = BackendContext(timeout_s=args.timeout, retries=args.retries, options=options)
        backend = load_backend(args.spec, args.name, ctx)
    except ConfigError as e:
        print(f"safework.search.retriever: {e}", file=sys.stderr)
        return 2
    app = create_retriever_app(backend, full_text=args.full_text)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
