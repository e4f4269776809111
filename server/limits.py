"""Limits on what one request or one API key may make the server do (issue 17, finding 10).

- ``RequestLimits``: per-request bounds the serving layers check before anything reaches the
  engine: the server-wide ``max_tokens`` cap (``--max-tokens-cap``; through
  ``sampling.resolve_max_tokens``, so chat, completions, ``/cot/edit`` and every strategy's
  sub-requests, which split the request's budget, are bounded by it), prompts × ``n`` of a
  text completion (``--max-prompts-times-n``), and ``ignore_eos`` (``--allow-ignore-eos``).
  A refusal is a 400 naming the field.
- ``ConcurrencyLimitMiddleware``: at most ``--max-concurrent-per-key`` requests of one tenant
  in flight; the next is a 429 with ``Retry-After`` and an OpenAI error body, other tenants
  are unaffected. Pure ASGI, inside the auth middleware (it needs the tenant): the slot is
  taken before the body is read and released in a ``finally`` when the app returns, which
  for a stream is when it ends or the client disconnects, and on any exception.
  ``/health``, ``/metrics`` and the web page are never limited.

Without API keys every client is the one tenant ``default``, so the per-key limit is then a
limit on the whole server.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from safework.errors import RateLimitError, RequestError

from .middleware import send_error

if TYPE_CHECKING:
    from .config import ServerConfig
    from .sampling import SamplingRequest

RETRY_AFTER_S = 1
"""What a refused request is told to wait (``Retry-After``): the OpenAI SDKs honour it."""


@dataclass(frozen=True)
class RequestLimits:
    """Per-request amplification bounds, from ``ServerConfig``."""

    max_tokens_cap: int | None = None
    """Most tokens one request may generate; ``None``: the model's context is the bound."""
    max_prompts_times_n: int = 64
    """Most choices one text completion may ask for: prompts × ``n``."""
    allow_ignore_eos: bool = False
    """Accept ``ignore_eos`` (generate exactly ``max_tokens``; for benchmarks)."""

    @classmethod
    def of(cls, config: ServerConfig) -> RequestLimits:
        return cls(config.max_tokens_cap, config.max_prompts_times_n, config.allow_ignore_eos)

    def check_sampling(self, request: SamplingRequest) -> None:
        """Refuse what amplifies a request past its answer: ``ignore_eos`` unless allowed."""
        if request.ignore_eos and not self.allow_ignore_eos:
            raise RequestError(
                "ignore_eos is not allowed on this server (it makes every request generate "
                "max_tokens); the operator can allow it with --allow-ignore-eos.",
                param="ignore_eos",
            )

    def check_batch(self, prompts: int, n: int) -> None:
        """Refuse a text completion of more than ``max_prompts_times_n`` choices."""
        if prompts * n > self.max_prompts_times_n:
            raise RequestError(
                f"{prompts} prompts × n={n} is {prompts * n} completions, more than this server "
                f"allows in one request ({self.max_prompts_times_n}); send fewer prompts or a "
                "smaller n.",
                param="prompt",
            )


class ConcurrencyLimiter:
    """Counts each tenant's requests in flight; ``max_per_key`` 0 means no limit."""

    def __init__(self, max_per_key: int) -> None:
        self.max_per_key = max_per_key
        self.active: Counter[str] = Counter()

    def try_acquire(self, tenant: str) -> bool:
        if self.max_per_key and self.active[tenant] >= self.max_per_key:
            return False
        self.active[tenant] += 1
        return True

    def release(self, tenant: str) -> None:
        self.active[tenant] -= 1
        if self.active[tenant] <= 0:
            del self.active[tenant]  # no entry per tenant ever seen: the map stays small

    def refusal(self) -> RateLimitError:
        return RateLimitError(
            f"Too many concurrent requests for this API key (at most {self.max_per_key} at "
            f"once); retry after {RETRY_AFTER_S} s, or wait for your other requests to finish.",
            retry_after=RETRY_AFTER_S,
        )


class ConcurrencyLimitMiddleware:
    """A 429 for a tenant's request beyond its ``limiter.max_per_key`` in flight."""

    def __init__(
        self,
        app: ASGIApp,
        limiter: ConcurrencyLimiter,
        open_paths: frozenset[str],
        open_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.open_paths = open_paths
        self.open_prefixes = open_prefixes

    def _limited(self, scope: Scope) -> str | None:
        """The tenant whose slot this request takes, or None for an unlimited request."""
        if scope["type"] != "http" or not self.limiter.max_per_key:
            return None
        path = scope["path"]
        if path in self.open_paths or path.startswith(self.open_prefixes):
            return None
        return scope.get("state", {}).get("tenant")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tenant = self._limited(scope)
        if tenant is None:
            await self.app(scope, receive, send)
            return
        if not self.limiter.try_acquire(tenant):
            await send_error(send, self.limiter.refusal())
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.limiter.release(tenant)
