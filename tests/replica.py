"""One server replica on a fake engine and a shared memory store, as a process of its own.

``python -m tests.replica --port P --store URL --folder DIR`` serves the test site
(``web_server.site_config``: tenants ``alice`` and ``bob``) with its correction memory in
PostgreSQL at ``URL`` and its indexes in ``DIR``, until killed. ``test_memory_replicas.py``
SIGKILLs it while corrections are posted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from safework.server import ServerConfig, create_app
from safework.server.memory.serving import MemorySettings

from .web_server import WebEngine, fakes_installed, site_config


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--folder", type=Path, required=True)
    args = p.parse_args()
    engine = WebEngine(step_delay=0.0)
    with fakes_installed():
        memory = MemorySettings(folder=args.folder, store=args.store)
        config = site_config(None) | {"memory": memory}
        app = create_app(ServerConfig(**config), engine_factory=lambda _: engine)
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
