"""The FastAPI server: OpenAI routes, auth, metrics, health; ``safework serve``."""

from .app import create_app
from .config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
