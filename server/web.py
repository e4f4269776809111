"""The web chat page at ``/``: static files shipped in ``safework.clients`` (``clients/web/``).

The page is plain HTML, CSS and JavaScript modules, with no build step, so the files served
are the files in the repository. It and its assets load without an API key (the page asks
for one and sends it with every API call); everything else stays behind the auth
middleware. A strict Content-Security-Policy keeps the page to its own scripts and to this
server's API, whatever text a model or a search result puts on it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

PREFIX = "/ui"
"""Where the page's assets are served."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def web_root() -> Path:
    return Path(str(resources.files("safework.clients") / "web"))


class _PageFiles(StaticFiles):
    """Static files with the page's security and caching headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        return _secure(await super().get_response(path, scope))


def _secure(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"  # revalidate: a new release shows at once
    return response


def mount_web(app: FastAPI) -> None:
    """``GET /`` serves the page and ``/ui/*`` its assets."""
    root = web_root()

    async def index() -> Response:
        return _secure(FileResponse(root / "index.html", media_type="text/html"))

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.mount(PREFIX, _PageFiles(directory=root), name="ui")
