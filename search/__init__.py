"""Deliberative search: backends, the search-read-answer loop, result filtering and
confidence calibration.

Backends come from spec strings (``load_backend("local:builtin")``); ``DeliberativeSearch``
is the server strategy; ``Calibration`` maps raw confidences. Heavy modules (FAISS, vLLM)
load only when a backend or evaluation needs them.
"""

from .base import (
    BackendContext,
    Document,
    DocumentNotFound,
    SearchBackend,
    SearchError,
    SearchResult,
    SearchTimeout,
    load_backend,
)
from .calibration import Calibration, CalibrationMap, expected_calibration_error
from .deliberative import DeliberativeSearch, SearchConfig

__all__ = [
    "BackendContext",
    "Calibration",
    "CalibrationMap",
    "DeliberativeSearch",
    "Document",
    "DocumentNotFound",
    "SearchBackend",
    "SearchConfig",
    "SearchError",
    "SearchResult",
    "SearchTimeout",
    "expected_calibration_error",
    "load_backend",
]
