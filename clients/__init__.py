"""Clients that speak HTTP to a SafeWork server: the Python client (on the official ``openai``
SDK), the ``safework chat`` terminal client, and the web page the server serves at ``/``
(``clients/web/``)."""

from .client import AsyncSafeWork, SafeWork
from .options import safework_block
from .stream import AsyncChatStream, ChatStream, IncompleteStreamError, StreamState
from .types import (
    AlignmentInfo,
    AlignmentOptions,
    AlignmentStep,
    Confidence,
    MemoryDeleted,
    MemoryHit,
    MemoryOptions,
    MemoryRecord,
    SafeWorkCompletion,
    SafeWorkInfo,
    ScoredText,
    SearchInfo,
    SearchOptions,
    Source,
    ValueModelSetting,
    reasoning_of,
)

__all__ = [
    "AlignmentInfo",
    "AlignmentOptions",
    "AlignmentStep",
    "AsyncChatStream",
    "AsyncSafeWork",
    "ChatStream",
    "Confidence",
    "IncompleteStreamError",
    "MemoryDeleted",
    "MemoryHit",
    "MemoryOptions",
    "MemoryRecord",
    "SafeWork",
    "SafeWorkCompletion",
    "SafeWorkInfo",
    "ScoredText",
    "SearchInfo",
    "SearchOptions",
    "Source",
    "StreamState",
    "ValueModelSetting",
    "reasoning_of",
    "safework_block",
]
