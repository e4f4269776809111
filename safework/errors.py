"""SafeWork's exception hierarchy, in one place.

::

    SafeWorkError
    ├── ConfigError            bad options or configuration; names the fix
    ├── FetchError             a pinned package or file could not be fetched or verified
    ├── EngineError            the model runtime failed (HTTP 500)
    │   └── EngineDeadError         the engine process is gone for good (503; the server exits)
    ├── UnavailableError       a store cannot save now: disk full, database locked (503)
    └── RequestError           a client's request cannot be served (HTTP 4xx)
        ├── AuthenticationError     missing or wrong API key (401)
        ├── NotFoundError           unknown model, route or record (404)
        ├── PayloadTooLargeError    body over the configured limit (413)
        ├── ContextLengthError      prompt plus completion exceed the context (400)
        ├── RateLimitError          too many requests of one key at once (429, Retry-After)
        └── QuotaExceededError      a tenant's stored data is at its quota (429)

``RequestError`` carries what the OpenAI error body needs (``message``, ``type``,
``param``, ``code``) and its HTTP status, so every layer can raise it and the server turns
it into ``{"error": {...}}`` in one place; ``headers`` are the response headers it needs
(``Retry-After`` on a 429 that a retry can cure).
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "ContextLengthError",
    "EngineDeadError",
    "EngineError",
    "FetchError",
    "NotFoundError",
    "PayloadTooLargeError",
    "QuotaExceededError",
    "RateLimitError",
    "RequestError",
    "SafeWorkError",
    "UnavailableError",
]


class SafeWorkError(Exception):
    """Base of every error SafeWork raises on purpose."""


class ConfigError(SafeWorkError):
    """Invalid configuration; the message says which option to change."""


class FetchError(SafeWorkError):
    """A pinned package could not be downloaded, or a file failed its checksum."""


class EngineError(SafeWorkError):
    """The engine failed while serving a request."""

    status_code = 500
    type = "server_error"


ENGINE_DEAD_MESSAGE = (
    "The model engine has stopped; the server is shutting down (retry once it restarts)."
)


class EngineDeadError(EngineError):
    """The engine can no longer serve (vLLM's engine core process exited): every request
    answers 503 and the server shuts down so that a supervisor restarts it."""

    status_code = 503
    code = "engine_dead"

    def __init__(self, message: str = ENGINE_DEAD_MESSAGE):
        super().__init__(message)
        self.message = message


class UnavailableError(SafeWorkError):
    """The server cannot do this now (a store is full or locked); the client may retry.

    Raised only where a retry is safe: nothing of the failed operation was kept."""

    status_code = 503
    type = "server_error"

    def __init__(self, message: str, *, code: str | None = "service_unavailable"):
        super().__init__(message)
        self.message = message
        self.param: str | None = None
        self.code = code


class RequestError(SafeWorkError):
    """A request the server refuses, with the fields of an OpenAI error body."""

    status_code = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    @property
    def headers(self) -> dict[str, str]:
        """Response headers this error needs besides the JSON body (none by default)."""
        return {}


class AuthenticationError(RequestError):
    status_code = 401

    def __init__(self, message: str = "Invalid or missing API key.", **kw: str | None):
        kw.setdefault("code", "invalid_api_key")
        super().__init__(message, **kw)


class NotFoundError(RequestError):
    status_code = 404


class PayloadTooLargeError(RequestError):
    status_code = 413


class ContextLengthError(RequestError):
    def __init__(self, message: str, *, param: str | None = "messages"):
        super().__init__(message, param=param, code="context_length_exceeded")


class RateLimitError(RequestError):
    """Too many requests of one API key at once: retry after ``retry_after`` seconds (429,
    OpenAI's ``rate_limit_exceeded``)."""

    status_code = 429
    type = "requests"

    def __init__(self, message: str, *, retry_after: int = 1, **kw: str | None):
        kw.setdefault("code", "rate_limit_exceeded")
        super().__init__(message, **kw)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class QuotaExceededError(RequestError):
    """A tenant's stored data is at its quota (429 ``insufficient_quota``, as OpenAI answers an
    exhausted quota). A retry cannot cure it, so ``x-should-retry: false`` tells the OpenAI SDKs
    not to retry; freeing room (deleting records) or not storing does."""

    status_code = 429
    type = "insufficient_quota"

    @property
    def headers(self) -> dict[str, str]:
        return {"x-should-retry": "false"}
