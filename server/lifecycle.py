"""The server's life: engine death answers 503 and ends the process non-zero to be restarted.

When vLLM's engine core process exits, the API process cannot recover it: ``vllm serve`` shuts
down, and so does ``safework serve``. ``EngineMonitor`` learns of the death three ways: an
``EngineDeadError`` from any engine call (``ServedEngine`` reports it), ``/health`` asking the
engine, and a watchdog that polls ``Engine.is_dead`` every ``interval_s`` (vLLM's API server
polls every 5 s), for a death while no request runs; the watchdog also watches the engines
of value models that run their own (``judge:MODEL``). Then it

- answers every later generation request with a 503 OpenAI error (``code: engine_dead``),
  ``/health`` with 503, and ends running streams with that error event and ``[DONE]``;
- asks the server to stop through ``Shutdown``: ``safework serve`` attaches uvicorn's
  ``should_exit``, so uvicorn finishes open responses (up to its graceful timeout), runs the
  lifespan shutdown and returns, and the command exits with status 1 for a supervisor
  (systemd, Docker ``--restart``, Kubernetes) to start it again.

``run_server`` is that serve path: uvicorn on the app, ``Shutdown`` attached, and the exit
status. An app built without it (tests, an embedding program) gets a ``Shutdown`` with nothing
attached: it records the request (``app.state.shutdown``) and logs it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from safework.engine.base import Engine
from safework.errors import EngineDeadError

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

logger = logging.getLogger("safework.server")
EXIT_ENGINE_DEAD = 1
"""The process's exit status after engine death."""
EXIT_STARTUP_FAILURE = 3
"""The status when the server never started (uvicorn's own, e.g. the engine failed to load)."""
WATCHDOG_INTERVAL_S = 1.0
"""How often the watchdog asks the engine whether it died."""


class Shutdown:
    """How the app asks its server to stop, and the exit status the process should end with."""

    def __init__(self) -> None:
        self.exit_code: int | None = None
        """``None`` until a stop is requested."""
        self.reason = ""
        self._stop: Callable[[], None] | None = None

    def attach(self, stop: Callable[[], None]) -> None:
        """What stops the server (``safework serve``: set uvicorn's ``should_exit``)."""
        self._stop = stop

    def request(self, exit_code: int, reason: str) -> None:
        """Stop the server once; later requests change nothing."""
        if self.exit_code is not None:
            return
        self.exit_code, self.reason = exit_code, reason
        if self._stop is None:
            logger.error("shutdown requested (%s), but no server is attached to stop", reason)
            return
        logger.info("stopping the server (exit status %d): %s", exit_code, reason)
        self._stop()


class EngineMonitor:
    """Knows whether the engine is dead, and stops the server when it dies."""

    def __init__(self, engine: Engine, shutdown: Shutdown, interval_s: float | None = None) -> None:
        self.engine = engine
        self.others: list[Engine] = []
        """Engines the server owns besides the served one (a ``judge:MODEL`` value model's):
        the watchdog stops the server when one of them dies too."""
        self.shutdown = shutdown
        self.interval_s = WATCHDOG_INTERVAL_S if interval_s is None else interval_s
        self.dead = False

    def report(self, reason: str = "the engine died") -> None:
        """The engine is dead: refuse from now on and stop the server (once)."""
        if self.dead:
            return
        self.dead = True
        logger.critical("%s: answering 503 and shutting down", reason)
        self.shutdown.request(EXIT_ENGINE_DEAD, reason)

    def poll(self) -> bool:
        """Ask the engine (cheaply) whether it died; ``True`` if it is dead."""
        if not self.dead and self.engine.is_dead:
            self.report("the engine process exited")
        elif not self.dead and any(e.is_dead for e in self.others):
            self.report("a value model's engine process exited")
        return self.dead

    def ensure_alive(self) -> None:
        """Raise ``EngineDeadError`` (503) if the engine is known or found dead."""
        if self.poll():
            raise EngineDeadError()

    async def check(self) -> None:
        """``/health``: the engine's own check; raises ``EngineDeadError`` if it is dead."""
        self.ensure_alive()
        try:
            await self.engine.check_health()
        except EngineDeadError:
            self.report("the engine failed its health check")
            raise

    async def watch(self) -> None:
        """Poll until the engine dies (a lifespan task; cancelled at shutdown)."""
        while not self.poll():  # noqa: ASYNC110 - polling is the point: nothing signals death
            await asyncio.sleep(self.interval_s)


def build_server(app: FastAPI, shutdown: Shutdown, **options: Any) -> uvicorn.Server:
    """uvicorn on ``app`` (``options``: ``uvicorn.Config``'s), stopped by ``shutdown``."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, **options))
    shutdown.attach(lambda: setattr(server, "should_exit", True))
    return server


def exit_status(server: uvicorn.Server, shutdown: Shutdown) -> int:
    """0 after an ordinary stop (Ctrl-C, SIGTERM), ``EXIT_ENGINE_DEAD`` after engine death,
    ``EXIT_STARTUP_FAILURE`` if it never started."""
    if shutdown.exit_code is not None:
        return shutdown.exit_code
    return 0 if server.started else EXIT_STARTUP_FAILURE


def run_server(app: FastAPI, shutdown: Shutdown, **options: Any) -> int:
    """Serve until stopped (blocking, as ``uvicorn.run``); the process's exit status."""
    server = build_server(app, shutdown, **options)
    server.run()
    return exit_status(server, shutdown)
