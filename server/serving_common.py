"""Small pieces every serving module uses: model lookup, engine failures, SSE payloads, the
per-tenant prefix-cache salt, and the sentence encoder search and the memory share."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from pydantic import BaseModel

from safework.engine.base import Engine
from safework.engine.embedder import Encoder
from safework.errors import EngineError, NotFoundError, RequestError

logger = logging.getLogger("safework.server")


def default_encoder(cache: Path | None = None) -> Encoder:
    """The sentence encoder search and the memory share: all-MiniLM-L6-v2 from its package
    (``engine/embedder.py``), one per cache folder and process. Each service calls it through
    its own module (``search.default_encoder``, ``memory.serving.default_encoder``), where tests
    put a small fake in its place."""
    from safework.engine.embedder import get_embedder

    return get_embedder(cache)


def check_model(requested: str | None, engine: Engine) -> str:
    """The served model id for ``requested`` (``None`` means the served model)."""
    if requested is None or requested == engine.model_id:
        return engine.model_id
    raise NotFoundError(
        f"The model `{requested}` does not exist. Available: {engine.model_id}.",
        param="model",
        code="model_not_found",
    )


def check_n(n: int, max_n: int) -> None:
    if n > max_n:
        raise RequestError(
            f"n={n} is more than this server allows ({max_n}); ask for fewer choices.",
            param="n",
        )


def check_token_ids(ids: list[int], vocab_size: int | None) -> None:
    """A prompt given as token ids must name tokens the model has: an id past the embedding
    would fail inside the engine, for every request in its batch.

    >>> check_token_ids([0, 5], 6)
    >>> check_token_ids([6], 6)
    Traceback (most recent call last):
    ...
    safework.errors.RequestError: Token id 6 is out of the model's vocabulary (0..5).
    """
    if not ids or vocab_size is None:
        return
    bad = next((i for i in ids if not 0 <= i < vocab_size), None)
    if bad is not None:
        raise RequestError(
            f"Token id {bad} is out of the model's vocabulary (0..{vocab_size - 1}).",
            param="prompt",
        )


def engine_failure(exc: BaseException) -> RequestError | EngineError:
    """Turn an unexpected exception from the engine into an error to report (and log it)."""
    if isinstance(exc, RequestError | EngineError):
        return exc
    logger.exception("engine failure", exc_info=exc)
    return EngineError(f"The engine failed to serve this request ({type(exc).__name__}).")


def sse_data(payload: BaseModel) -> str:
    """One SSE ``data:`` payload: the model as compact JSON without unset optional fields."""
    return payload.model_dump_json(exclude_none=True)


def sse_done() -> str:
    return "[DONE]"


def tenant_cache_salt(tenant: str) -> str:
    """The tenant's prefix-cache salt (``SamplingConfig.cache_salt``): requests of different
    tenants never share cached prompt blocks, so ``cached_tokens`` reveals nothing across
    tenants."""
    return hashlib.sha256(f"safework-tenant\0{tenant}".encode()).hexdigest()[:32]
