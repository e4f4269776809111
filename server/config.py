"""Server configuration: one dataclass, filled from CLI flags and environment variables.

API keys come from ``--api-key KEY[:TENANT]`` (repeatable) and from ``SAFEWORK_API_KEYS``
(comma-separated, same syntax). A key without ``:TENANT`` is its own tenant, named after a
short hash of the key so that logs never show a key. No keys at all means an open server
whose single tenant is ``default``: allowed on a loopback address, refused elsewhere unless
``allow_unauthenticated`` (``--allow-unauthenticated``) says anyone who reaches it may use it.
``safework serve`` also turns the correction memory off without keys (one client's
corrections would reach every client) unless ``--shared-memory`` or ``--memory-dir`` asks
for it, and on a loopback address serves only ``Host`` headers naming loopback
(``allowed_hosts_for``: a web page on another name that rebinds its DNS to 127.0.0.1 is
refused); ``--allowed-host`` adds names (issue 17, finding 6).

The product's defaults live with the command, not in the dataclass: ``ServerConfig()`` is a
plain server that serves what it is given (tests and embedders build it field by field),
while ``safework serve`` (``cli.py``) turns the features on unless a flag turns them off:
alignment with ``DEFAULT_VALUE_MODELS`` (``--no-alignment``), search on
``DEFAULT_SEARCH_BACKENDS`` (``--no-search``), and on the default model a calibration fitted
at the first start (``--no-calibration``), as ``vllm serve`` serves with no flags at all.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Literal

from safework.engine.options import EngineOptions
from safework.errors import ConfigError
from safework.value_models.registry import ValueModelEntry, ValueModelsConfig

from .images import ImageSettings
from .memory.serving import MemorySettings
from .search import SearchSettings

DEFAULT_TENANT = "default"
DEFAULT_VALUE_MODELS: dict[str, tuple[str, float]] = {
    "safety": ("builtin:safety", 0.6),
    "values": ("builtin:values", 0.4),
}
"""Name -> (spec, weight) of the value models ``safework serve`` aligns with when none are
named. No threshold is set here: each built-in model brings its own."""
DEFAULT_SEARCH_BACKENDS: tuple[str, ...] = ("local:builtin",)
"""The search backends ``safework serve`` uses when none are named: the built-in corpus."""


LOOPBACK_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]")
"""``Host`` header names of this machine, always served: a page on another origin cannot
make a browser send them (``[::1]`` with brackets, as Starlette parses a ``Host``)."""


def is_loopback(host: str) -> bool:
    """Whether a bind address only listens on this machine (``localhost``, 127/8, ``::1``).

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::", "10.0.0.2")]
    [True, True, True, False, False, False]
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(host: str, extra: list[str]) -> tuple[str, ...]:
    """The ``Host`` names ``safework serve`` answers when bound to ``host``.

    The loopback names, the bind address itself and ``extra`` (``--allowed-host``); bound
    to a non-loopback address with no ``extra``, any name (``*``: the names it is reached by
    are unknown here, and such a server needs keys, which a rebinding page does not have).

    >>> allowed_hosts_for("127.0.0.1", [])
    ('localhost', '127.0.0.1', '[::1]')
    >>> allowed_hosts_for("0.0.0.0", [])
    ('*',)
    >>> allowed_hosts_for("0.0.0.0", ["api.example.com"])
    ('localhost', '127.0.0.1', '[::1]', 'api.example.com')
    """
    if "*" in extra or (not extra and not is_loopback(host)):
        return ("*",)
    bound = f"[{host}]" if ":" in host else host
    names = [*LOOPBACK_NAMES, *([bound] if is_loopback(host) else []), *extra]
    return tuple(dict.fromkeys(n.lower() for n in names))


def _host_pattern_ok(pattern: str) -> bool:
    """A pattern Starlette's ``TrustedHostMiddleware`` accepts: ``*``, ``*.name`` or a name."""
    if pattern == "*":
        return True
    rest = pattern.removeprefix("*.") if pattern.startswith("*.") else pattern
    return bool(rest) and "*" not in rest


def default_value_models() -> dict[str, ValueModelEntry]:
    """``DEFAULT_VALUE_MODELS`` as registry entries (fresh objects each call)."""
    return {
        name: ValueModelEntry(spec, weight=weight)
        for name, (spec, weight) in DEFAULT_VALUE_MODELS.items()
    }


def parse_api_keys(specs: list[str]) -> dict[str, str]:
    """``["k1:alice", "k2"]`` -> ``{"k1": "alice", "k2": "key-<hash>"}``."""
    keys: dict[str, str] = {}
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        key, _, tenant = spec.partition(":")
        if len(key) < 8:
            raise ConfigError(f"API keys must be at least 8 characters (got {len(key)})")
        if not tenant:
            tenant = "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]
        if key in keys and keys[key] != tenant:
            raise ConfigError("the same API key is given for two tenants")
        keys[key] = tenant
    return keys


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: dict[str, str] = field(default_factory=dict)
    """API key -> tenant."""
    max_body_bytes: int = 4 * 1024 * 1024
    max_n: int = 16
    """Largest ``n`` a request may ask for."""
    engine: EngineOptions = field(default_factory=EngineOptions)
    value_models: ValueModelsConfig = field(default_factory=ValueModelsConfig)
    """Value models for guided decoding and moderation (``--value-model NAME=SPEC``)."""
    max_candidates: int = 16
    """Largest ``safework.alignment.candidates`` a request may ask for."""
    max_beam_width: int = 4
    search: SearchSettings = field(default_factory=SearchSettings)
    """Search backends and settings for the ``search`` strategy (``--search-backend``)."""
    memory: MemorySettings | None = field(default_factory=MemorySettings)
    """The correction memory (``--memory-dir``); ``None``: off (``--no-memory``)."""
    reasoning_output: Literal["fields", "think"] = "fields"
    """How replies carry reasoning (``--reasoning-output``): ``reasoning_content`` fields, or
    inline ``<think>`` tags in ``content``."""
    web_ui: bool = True
    """Serve the web chat page at ``/`` (``--no-web-ui``: API only)."""
    trust_request_chat_template: bool = False
    """Accept a request's own ``chat_template`` and special-token overrides
    (``--trust-request-chat-template``); off, they are a 400."""
    allow_unauthenticated: bool = False
    """Serve a non-loopback ``host`` without API keys (``--allow-unauthenticated``); off, such
    a configuration is refused."""
    allowed_hosts: tuple[str, ...] = ("*",)
    """``Host`` header names served (Starlette's ``TrustedHostMiddleware`` patterns: a name,
    ``*.example.com`` or ``*``); others are a 400. ``("*",)``: any, the plain server's default;
    ``safework serve`` sets ``allowed_hosts_for(host, --allowed-host)``."""
    metrics_admin_tenants: frozenset[str] = frozenset()
    """Tenants whose keys see series that name tenants at ``/metrics`` (``--metrics-admin``);
    every other key sees totals only."""
    max_concurrent_per_key: int = 16
    """Requests of one tenant in flight at once (``--max-concurrent-per-key``); the next is a
    429 with ``Retry-After``. 0: no limit."""
    max_prompts_times_n: int = 64
    """Most choices of one text completion, prompts × ``n`` (``--max-prompts-times-n``)."""
    max_tokens_cap: int | None = None
    """Most tokens one request may generate (``--max-tokens-cap``); a request asking more is a
    400, one asking nothing gets at most this. ``None``: the model's context is the bound."""
    allow_ignore_eos: bool = False
    """Accept the ``ignore_eos`` request field (``--allow-ignore-eos``); off, it is a 400."""
    images: ImageSettings = field(default_factory=ImageSettings)
    """What image parts of chat messages may be (``--max-images``, ``--image-fetch``...)."""
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError("--port must be between 1 and 65535")
        if self.max_body_bytes < 1024:
            raise ConfigError("--max-body-bytes must be at least 1024")
        if self.max_n < 1:
            raise ConfigError("--max-n must be at least 1")
        if not self.api_keys and not is_loopback(self.host) and not self.allow_unauthenticated:
            raise ConfigError(
                f"refusing to serve on {self.host} without API keys: anyone who reaches it "
                "could use it. Give keys (--api-key KEY[:TENANT] or SAFEWORK_API_KEYS="
                "k1:t1,k2:t2), bind to 127.0.0.1, or pass --allow-unauthenticated"
            )
        for pattern in self.allowed_hosts:
            if not _host_pattern_ok(pattern):
                raise ConfigError(f"--allowed-host {pattern!r}: give a name, *.example.com or *")
        self._check_limits()
        self.metrics_admin_tenants = frozenset(self.metrics_admin_tenants)
        unknown = self.metrics_admin_tenants - set(self.api_keys.values())
        if unknown:
            raise ConfigError(
                f"--metrics-admin {', '.join(sorted(unknown))}: no API key has this tenant; "
                "give the admin a key with --api-key KEY:TENANT"
            )

    def _check_limits(self) -> None:
        if self.max_concurrent_per_key < 0:
            raise ConfigError("--max-concurrent-per-key must be at least 0 (0: no limit)")
        if self.max_prompts_times_n < self.max_n:
            raise ConfigError(
                f"--max-prompts-times-n {self.max_prompts_times_n} is less than --max-n "
                f"{self.max_n}: one prompt could not ask for n={self.max_n}; raise it or lower "
                "--max-n"
            )
        if self.max_tokens_cap is not None and self.max_tokens_cap < 1:
            raise ConfigError("--max-tokens-cap must be at least 1")

    @staticmethod
    def keys_from_env() -> list[str]:
        return os.environ.get("SAFEWORK_API_KEYS", "").split(",")
