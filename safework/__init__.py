"""SafeWork: an OpenAI-compatible server and training kit for safety-aligned reasoning models.

Subpackages (each a folder at the repository root):
``engine`` (model runtime), ``server`` (FastAPI app), ``value_models``, ``search``,
``memory``, ``training`` and ``clients``. ``safework.cli`` is the ``safework`` command.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
