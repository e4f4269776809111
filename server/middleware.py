"""Pure-ASGI middleware: request metrics, Host check, API-key authentication, body size limit.

Pure ASGI (not ``BaseHTTPMiddleware``) so streaming responses pass through untouched and
client disconnects still reach the route. Order, outermost first: metrics (sees every
status, 400, 401 and 413 included), Host check (Starlette's ``TrustedHostMiddleware``, with
an OpenAI error body; only when ``allowed_hosts`` is not ``*``), auth (an unauthenticated
body is never read), body limit.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from safework.errors import AuthenticationError, PayloadTooLargeError, RequestError

from .config import DEFAULT_TENANT
from .metrics import ServerMetrics


async def send_error(send: Send, exc: RequestError) -> None:
    body = json.dumps(
        {"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if exc.status_code == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        gauge = self.metrics.in_progress
        gauge.inc()
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            gauge.dec()
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, str(status)).inc()


class HostCheckMiddleware(TrustedHostMiddleware):
    """Starlette's ``TrustedHostMiddleware`` (its matching, no ``www.`` redirect), answering a
    refused ``Host`` with an OpenAI error body instead of plain text."""

    _PASSED = "safework.host_ok"

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...]) -> None:
        async def passed(scope: Scope, receive: Receive, send: Send) -> None:
            scope[self._PASSED] = True
            await app(scope, receive, send)

        super().__init__(passed, allowed_hosts=list(allowed_hosts), www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_or_refuse(message: Message) -> None:
            if scope.get(self._PASSED):
                await send(message)
            elif message["type"] == "http.response.start":  # Starlette's plain 400: ours
                await send_error(send, self.refusal(scope))

        await super().__call__(scope, receive, send_or_refuse)

    @staticmethod
    def refusal(scope: Scope) -> RequestError:
        host = dict(scope.get("headers", ())).get(b"host", b"").decode("latin-1")[:100]
        return RequestError(
            f"This server does not answer for the host {host!r}; the operator can allow a "
            "name with --allowed-host.",
            code="invalid_host",
        )


class AuthMiddleware:
    """``Authorization: Bearer KEY`` -> ``scope["state"]["tenant"]``; 401 otherwise."""

    def __init__(
        self,
        app: ASGIApp,
        api_keys: dict[str, str],
        open_paths: frozenset[str],
        open_prefixes: tuple[str, ...] = (),
    ):
        self.app = app
        self.keys = [(k.encode(), t) for k, t in api_keys.items()]
        self.open_paths = open_paths
        self.open_prefixes = open_prefixes

    def is_open(self, path: str) -> bool:
        return path in self.open_paths or path.startswith(self.open_prefixes)

    def tenant_for(self, authorization: str | None) -> str | None:
        if not self.keys:
            return DEFAULT_TENANT
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        given = token.strip().encode()
        tenant = None
        for key, name in self.keys:  # compare with every key: no early exit, no timing leak
            if hmac.compare_digest(given, key):
                tenant = name
        return tenant

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw = headers.get(b"authorization")
        tenant = self.tenant_for(raw.decode("latin-1") if raw else None)
        if tenant is None and not self.is_open(scope["path"]):
            await send_error(
                send,
                AuthenticationError(
                    "Missing API key: send `Authorization: Bearer <key>`."
                    if raw is None
                    else "Incorrect API key provided."
                ),
            )
            return
        scope.setdefault("state", {})["tenant"] = tenant
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413, by header or by counting a chunked body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"Request body is larger than the server's limit of {self.max_bytes} bytes.",
            code="request_too_large",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = self.max_bytes + 1
            if declared > self.max_bytes:
                await send_error(send, self._too_large())
                return
            await self.app(scope, receive, send)
            return
        # No length given (chunked): read it all here, within the limit, then replay it.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_error(send, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
