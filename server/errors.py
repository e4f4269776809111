"""Exception handlers: every error leaves the server as an OpenAI error body.

Validation errors (malformed JSON, wrong types, out-of-range values) are 400 with the
offending field in ``param``; unknown routes 404; wrong methods 405; anything unexpected is
logged and answered 500 without internals.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from safework.errors import EngineError, RequestError, UnavailableError

from .protocol import ErrorInfo, ErrorResponse

logger = logging.getLogger("safework.server")


def error_response(err: ErrorResponse) -> JSONResponse:
    return JSONResponse(err.model_dump(), status_code=err.status_code, headers=err.headers or None)


def _error(status: int, message: str, type_: str, param: str | None = None, code=None):
    info = ErrorInfo(message=message, type=type_, param=param, code=code)
    return error_response(ErrorResponse(error=info, status_code=status))


def describe_validation_error(exc: RequestValidationError) -> tuple[str, str | None]:
    """A one-line message and the ``param`` (dotted path) of the first problem."""
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return f"Malformed JSON body: {first.get('ctx', {}).get('error', 'cannot parse')}.", None
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid value").removeprefix("Value error, ")
    if first.get("type") == "missing":
        return f"Missing required parameter: '{param}'.", param
    return (f"Invalid value for '{param}': {msg}." if param else f"Invalid request: {msg}."), param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = describe_validation_error(exc)
        return _error(400, message, "invalid_request_error", param)

    @app.exception_handler(RequestError)
    async def _request(_: Request, exc: RequestError) -> JSONResponse:
        return error_response(ErrorResponse.of(exc))

    @app.exception_handler(EngineError)
    async def _engine(_: Request, exc: EngineError) -> JSONResponse:
        return error_response(ErrorResponse.of(exc))

    @app.exception_handler(UnavailableError)
    async def _unavailable(_: Request, exc: UnavailableError) -> JSONResponse:
        return error_response(ErrorResponse.of(exc))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return _error(exc.status_code, str(exc.detail), kind)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return _error(500, "The server had an error while processing your request.", "server_error")
