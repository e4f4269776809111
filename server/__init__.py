"""The FastAPI server: OpenAI routes, auth, metrics, health; ``safework serve``.

``create_app(config, shutdown=Shutdown())`` for a program that serves the app itself: its
``Shutdown`` records (and, once attached, performs) the stop that engine death asks for.
"""

from .app import create_app
from .config import ServerConfig
from .lifecycle import Shutdown

__all__ = ["ServerConfig", "Shutdown", "create_app"]
