"""The server side of deliberative search: configured backends -> a search strategy.

``SearchService`` holds the backends loaded at start-up (``--search-backend NAME=SPEC``, the
first is the default), the sentence encoder the filters use, the model's fitted confidence
calibration (``safework-train calibrate``, or ``--calibration FILE``; re-read when the file
changes) and the default settings. With ``calibration_mode="fit"`` (``safework serve`` on the
default model) a missing calibration is fitted at start on the served engine, once, into the
cache (``search/fit_calibration.py``). ``config_for`` merges a request's ``safework.search``
block over them and checks it against the server's limits, so a bad setting is a 400
before anything is generated.
``<model>:search`` is the profile that selects it without an extension field.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from safework.engine.base import Engine
from safework.engine.embedder import Encoder
from safework.errors import ConfigError, RequestError
from safework.search.base import BackendContext, SearchBackend, load_backend
from safework.search.calibration import CalibrationFile, model_calibration_path
from safework.search.deliberative import DeliberativeSearch, SearchConfig, SearchStats
from safework.search.fit_calibration import FIT_BACKEND, FitRecipe, ensure_calibration

from .metrics import ServerMetrics
from .protocol import SearchOptions
from .serving_common import default_encoder

logger = logging.getLogger("safework.server")
SETTING_KEYS = {f.name for f in fields(SearchConfig)}
CalibrationMode = Literal["read", "fit", "off"]


@dataclass
class SearchSettings:
    """What ``ServerConfig`` carries for search (filled from ``safework serve`` flags)."""

    backends: dict[str, str] = field(default_factory=dict)
    """Name -> spec, in order: the first is the default."""
    options: dict[str, str] = field(default_factory=dict)
    """Backend options (``--search-option mode=bm25``)."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """Default ``SearchConfig`` settings."""
    max_turns: int = 8
    """Largest ``safework.search.max_turns`` a request may ask for."""
    max_top_k: int = 10
    timeout_s: float = 10.0
    retries: int = 2
    calibration: Path | None = None
    """A calibration file; default: the one fitted for the served model, if any."""
    calibration_mode: CalibrationMode = "read"
    """``read``: apply the calibration file if there is one; ``fit``: fit the served model's
    into the cache first when there is none (needs a ``local:builtin`` backend); ``off``:
    raw confidences only (``--no-calibration``)."""

    def __post_init__(self) -> None:
        unknown = set(self.defaults) - SETTING_KEYS
        if unknown:
            raise ConfigError(f"unknown search settings {sorted(unknown)}")
        if self.max_turns < 1:
            raise ConfigError("--search-max-turns must be at least 1")
        if self.calibration_mode not in ("read", "fit", "off"):
            raise ConfigError(f"unknown calibration mode {self.calibration_mode!r}")


class SearchService:
    def __init__(
        self,
        backends: dict[str, SearchBackend],
        settings: SearchSettings,
        encoder: Encoder | None = None,
        calibration: CalibrationFile | None = None,
    ) -> None:
        self.backends = backends
        self.settings = settings
        self.encoder = encoder
        self.calibration = calibration
        # The loop's own guard: every retry of the backend's per-call timeout, and a second.
        guard = settings.timeout_s * (settings.retries + 1) + 1.0
        self.default_settings = {"backend_timeout_s": guard, **settings.defaults}
        try:
            self.defaults = SearchConfig(**self.default_settings)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad default search settings: {e}") from e

    @classmethod
    async def load(
        cls, settings: SearchSettings, engine: Engine, cache: Path | None = None
    ) -> SearchService:
        """Build every configured backend (local indexes may be built now, in a thread), and
        find (or, in ``fit`` mode, fit) the served model's calibration."""
        if not settings.backends:
            return cls({}, settings)
        ctx = BackendContext(
            cache=cache,
            timeout_s=settings.timeout_s,
            retries=settings.retries,
            options=dict(settings.options),
        )
        backends = {}
        for name, spec in settings.backends.items():
            logger.info("loading search backend %s = %s", name, spec)
            backends[name] = await asyncio.to_thread(load_backend, spec, name, ctx)
        encoder = await asyncio.to_thread(default_encoder, cache)
        service = cls(backends, settings, encoder)
        service.calibration = await service._load_calibration(engine, cache)
        return service

    async def _load_calibration(self, engine: Engine, cache: Path | None) -> CalibrationFile | None:
        settings = self.settings
        if settings.calibration_mode == "off":
            logger.info("confidence calibration off: search answers carry raw confidences only")
            return None
        path = settings.calibration or await asyncio.to_thread(
            model_calibration_path, engine.model_id, engine.model_path, cache
        )
        if settings.calibration_mode == "fit" and not path.exists():
            await self._fit(engine, path)
        calibration = CalibrationFile(path)
        if calibration.current() is None:
            logger.info(
                "no confidence calibration for %s at %s: search answers carry raw confidences "
                "(calibrated: null). Fit one with `safework-train calibrate --model <the model "
                "folder you serve>` (a few minutes); the server picks it up without a restart",
                engine.model_id,
                path,
            )
        return calibration

    async def _fit(self, engine: Engine, path: Path) -> None:
        """Fit the calibration on the configured ``local:builtin`` backend (the questions'
        answers are in its documents), with the server's default search settings; a failed
        fit is logged and the server serves on."""
        names = [n for n, spec in self.settings.backends.items() if spec == FIT_BACKEND]
        if not names:
            logger.info("no %s backend to fit a calibration on", FIT_BACKEND)
            return
        assert self.encoder is not None
        try:
            recipe = FitRecipe(settings=dict(self.settings.defaults))
            backend = self.backends[names[0]]
            await ensure_calibration(engine, backend, self.encoder, path, recipe, progress=True)
        except Exception:
            logger.exception("fitting the confidence calibration failed")

    @property
    def enabled(self) -> bool:
        return bool(self.backends)

    def config_for(self, options: SearchOptions | None) -> tuple[SearchConfig, SearchBackend]:
        """The request's settings over the server's defaults, within the server's limits."""
        if not self.enabled:
            raise RequestError(
                "search is off on this server (start it without --no-search, or with "
                "--search-backend)",
                param="safework.search",
            )
        options = options or SearchOptions()
        name = options.backend or next(iter(self.backends))
        if name not in self.backends:
            raise RequestError(
                f"unknown search backend {name!r}; configured: {sorted(self.backends)}",
                param="safework.search.backend",
            )
        overrides = options.model_dump(exclude_none=True, exclude={"backend"})
        for key, limit in (
            ("max_turns", self.settings.max_turns),
            ("top_k", self.settings.max_top_k),
        ):
            if overrides.get(key, 0) > limit:
                raise RequestError(
                    f"{key} may be at most {limit} on this server", param=f"safework.search.{key}"
                )
        settings = {**self.default_settings, **overrides}
        try:
            return SearchConfig(**settings), self.backends[name]
        except ValueError as e:
            raise RequestError(str(e), param="safework.search") from e

    def session(
        self,
        options: SearchOptions | None,
        messages: Sequence[dict[str, Any]],
        question: str,
        in_reasoning: bool,
        tenant: str | None = None,
    ) -> DeliberativeSearch:
        """A search session for one request; with a ``tenant`` its backend is that tenant's
        view (``SearchBackend.scoped``), so reads never see another tenant's results."""
        config, backend = self.config_for(options)
        if not question.strip():
            raise RequestError(
                "search needs a user question (the last user message)", param="messages"
            )
        assert self.encoder is not None
        return DeliberativeSearch(
            config,
            backend if tenant is None else backend.scoped(tenant),
            messages,
            question,
            self.encoder,
            calibration=self.calibration.current() if self.calibration else None,
            in_reasoning=in_reasoning,
        )

    async def close(self) -> None:
        for backend in self.backends.values():
            try:
                await backend.close()
            except Exception:
                logger.exception("closing search backend %s", backend.name)


def record_search(metrics: ServerMetrics, backend: str, stats: SearchStats) -> None:
    metrics.search_queries.labels(backend).inc(stats.searches)
    metrics.search_reads.labels(backend).inc(stats.reads)
    metrics.search_turns.observe(stats.turns)
    if stats.fallback:
        metrics.search_fallbacks.inc()
    metrics.search_filtered.labels("irrelevant").inc(stats.dropped)
    metrics.search_filtered.labels("instruction").inc(stats.neutralised)
    for op, kind in stats.errors:
        metrics.search_errors.labels(backend, op, kind).inc()
    for op, seconds in stats.latencies:
        metrics.search_latency.labels(backend, op).observe(seconds)
