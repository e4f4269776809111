"""SafeWork's exception hierarchy, in one place.

::

    SafeWorkError
    ├── ConfigError            bad options or configuration; names the fix
    ├── FetchError             a pinned package or file could not be fetched or verified
    ├── EngineError            the model runtime failed (HTTP 500)
    ├── UnavailableError       a store cannot save now: disk full, database locked (503)
    └── RequestError           a client's request cannot be served (HTTP 4xx)
        ├── AuthenticationError     missing or wrong API key (401)
        ├── NotFoundError           unknown model, route or record (404)
        ├── PayloadTooLargeError    body over the configured limit (413)
        └── ContextLengthError      prompt plus completion exceed the context (400)

``RequestError`` carries what the OpenAI error body needs (``message``, ``type``,
``param``, ``code``) and its HTTP status, so every layer can raise it and the server turns
it into ``{"error": {...}}`` in one place.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "ContextLengthError",
    "EngineError",
    "FetchError",
    "NotFoundError",
    "PayloadTooLargeError",
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
