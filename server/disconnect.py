"""A client that goes away cancels its request, and every engine request it started is aborted.

``CancelOnDisconnect`` (pure ASGI middleware, on the generation routes) runs the request as a
task and, once the body has been read, listens for ``http.disconnect``. A disconnect before
the response is complete cancels the task (vLLM's ``with_cancellation``, for streams as well):
the handler and its strategy unwind, and each engine stream they hold is closed in a
``finally`` or ``aclosing``, which aborts it in the engine. The response never started is
reported as 499 (the server discards it; metrics count it).

As a backstop that does not depend on every strategy closing its streams, the request runs in
a ``RequestScope``, a context variable that the tasks it starts inherit: ``ServedEngine``
records every engine request begun under it until its stream ends, and when the HTTP request
ends (answered, failed or cancelled) whatever is still open is aborted. So a stream held by a
generator that was dropped without being closed does not run on until garbage collection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from safework.engine.base import Engine

logger = logging.getLogger("safework.server")
GONE_STATUS = 499
"""The status a request whose client left is counted with (nginx's "client closed request")."""


class RequestScope:
    """The engine requests one HTTP request has begun and not yet ended."""

    def __init__(self) -> None:
        self._open: dict[str, Engine] = {}
        self.images: list[Any] = []
        """The request's decoded images (``images.py``): ``ServedEngine`` gives them to every
        engine request whose prompt holds their placeholders, whichever strategy starts it."""
        self.image_tokens_added = 0
        """Prompt tokens the engine counted for those images beyond their placeholders (known
        once an engine request with them has answered): usage counts them for strategies that
        report their prompt as its placeholder tokens (``generation.py``)."""

    @property
    def open_ids(self) -> list[str]:
        return list(self._open)

    def opened(self, engine: Engine, request_id: str) -> None:
        self._open[request_id] = engine

    def ended(self, request_id: str) -> None:
        self._open.pop(request_id, None)

    async def close(self) -> None:
        """Abort every engine request still open (shielded: it runs while being cancelled)."""
        with anyio.CancelScope(shield=True):
            while self._open:
                request_id, engine = self._open.popitem()
                logger.debug("aborting %s, left open by its request", request_id)
                try:
                    await engine.abort(request_id)
                except Exception:
                    logger.exception("aborting %s failed", request_id)


_SCOPE: ContextVar[RequestScope | None] = ContextVar("safework_request_scope", default=None)


def current_scope() -> RequestScope | None:
    """The scope of the HTTP request this code runs for, if any (none in tests of strategies
    alone, training, or routes without ``CancelOnDisconnect``)."""
    return _SCOPE.get()


@contextlib.asynccontextmanager
async def request_scope() -> AsyncIterator[RequestScope]:
    """Run the block (and the tasks it starts) in a new scope; abort what it leaves open."""
    scope = RequestScope()
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)
        await scope.close()


class _Connection:
    """One request's ASGI channel: the body passes through, then a listener waits for the
    disconnect; the app's later ``receive()`` calls wait for the same."""

    def __init__(self, receive: Receive, send: Send, on_gone: Callable[[], None]) -> None:
        self._receive, self._send, self._on_gone = receive, send, on_gone
        self.gone = asyncio.Event()
        self.started = False
        self.complete = False
        self.listener: asyncio.Task[None] | None = None

    async def receive(self) -> Message:
        if self.listener is not None or self.gone.is_set():  # the body is read
            await self.gone.wait()
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._left()
        elif not message.get("more_body", False):
            self.listener = asyncio.create_task(self._listen())
        return message

    async def _listen(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._left()

    def _left(self) -> None:
        self.gone.set()
        if not self.complete:  # after the last byte, a "disconnect" is just the end
            self._on_gone()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True
        await self._send(message)


class CancelOnDisconnect:
    """Cancel a request on ``paths`` when its client disconnects; abort what it left open."""

    def __init__(self, app: ASGIApp, paths: frozenset[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        async with request_scope():
            await self._run(scope, receive, send)

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        task: asyncio.Task[None] | None = None

        def cancel() -> None:
            if task is not None:
                task.cancel("the client disconnected")

        conn = _Connection(receive, send, cancel)
        task = asyncio.ensure_future(self.app(scope, conn.receive, conn.send))
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not conn.gone.is_set() or (current is not None and current.cancelling()):
                raise  # the server itself is being stopped
            if not conn.started:
                await send({"type": "http.response.start", "status": GONE_STATUS, "headers": []})
                await send({"type": "http.response.body", "body": b""})
        finally:
            if conn.listener is not None:
                conn.listener.cancel()
