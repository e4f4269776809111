"""The correction record, its validation, and its export row.

A record is what a user's ``POST /cot/edit`` leaves behind: the question (the retrieval key),
the model's reasoning, the user's corrected reasoning, the answer that followed, optional
feedback, and which model it was. ``MemoryStore`` (``store.py``) keeps records; this module
only describes and checks them, so the server can reuse the checks and limits in its own
request models.
"""

from __future__ import annotations

import base64
import math
import re
import secrets
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "CORRECTION",
    "DEFAULT_ENCODER_NAME",
    "FIELDS",
    "ID_PATTERN",
    "KINDS",
    "MAX_PREFERENCES",
    "MAX_TENANT_CHARS",
    "MISTAKE",
    "PREFERENCE",
    "PREFERENCE_CHARS",
    "QUESTION",
    "TEXT_LIMITS",
    "CorrectionRecord",
    "MemoryHit",
    "PreferenceLimitError",
    "check_created_at",
    "check_fields",
    "check_id",
    "check_kind",
    "check_tenant",
    "decode_vector",
    "encode_vector",
    "encoder_name",
    "is_id",
    "new_id",
    "unit_rows",
]

ID_PATTERN = re.compile(r"mem_[0-9a-f]{24}")
MAX_TENANT_CHARS = 256
TEXT_LIMITS = {
    "question": 8_000,
    "reasoning": 64_000,
    "corrected_reasoning": 64_000,
    "answer": 32_000,
    "feedback": 8_000,
    "model": 256,
}
"""Longest accepted value of each text field, in characters."""
FIELDS = (
    "id, tenant, question, reasoning, corrected_reasoning, answer, feedback, model, created_at, "
    "kind"
)
"""The record's columns in the database, in the order of ``CorrectionRecord``'s fields."""
REQUIRED = ("question", "corrected_reasoning")
OPTIONAL = ("answer", "feedback")
DEFAULT_ENCODER_NAME = "all-MiniLM-L6-v2"
CORRECTION, PREFERENCE = "correction", "preference"
QUESTION, MISTAKE = "question", "mistake"
"""The two keys a correction is found by (``MemoryHit.kind``)."""
KINDS = (CORRECTION, PREFERENCE)
"""A ``correction`` guides answers to similar questions; a ``preference`` guides every answer
of its tenant (``MemoryStore.preferences``) and is never a search hit."""
MAX_PREFERENCES = 20
"""Preferences one tenant may keep: all of them go into every prompt."""
PREFERENCE_CHARS = 1_000
"""Longest preference text: it is read before every answer."""


def encoder_name(encoder: object) -> str:
    """A name for the model behind ``encoder``: its ``name`` attribute, else a class name."""
    name = getattr(encoder, "name", None)
    if isinstance(name, str) and name:
        return name
    cls = type(encoder)
    if cls.__module__ == "safework.engine.embedder" and cls.__name__ == "Embedder":
        return DEFAULT_ENCODER_NAME
    return f"{cls.__module__}.{cls.__qualname__}"


class PreferenceLimitError(ValueError):
    """The tenant keeps ``MAX_PREFERENCES`` preferences already."""


@dataclass(frozen=True)
class CorrectionRecord:
    """One stored correction of a model's chain-of-thought."""

    id: str
    """``mem_`` and 24 random hex digits: unique and unguessable."""
    tenant: str
    """The owner (the API key's tenant). Never shown to clients."""
    question: str
    """The user's question: what later questions are matched against."""
    reasoning: str
    """What the model reasoned (the mistake)."""
    corrected_reasoning: str
    """The user's corrected reasoning."""
    answer: str | None
    """The final answer after the correction."""
    feedback: str | None
    model: str
    created_at: float
    """Unix seconds."""
    kind: str = CORRECTION
    """``correction`` or ``preference`` (``KINDS``)."""

    @property
    def text(self) -> str:
        """What a preference asks for: its feedback, else its corrected reasoning."""
        return self.feedback or self.corrected_reasoning

    def to_json(self) -> dict[str, Any]:
        """The record as a client sees it: every field but ``tenant``."""
        data = asdict(self)
        del data["tenant"]
        return data


@dataclass(frozen=True)
class MemoryHit:
    record: CorrectionRecord
    similarity: float
    """Cosine similarity of the query and the record's question (or mistake), in [-1, 1]."""
    kind: str = "question"
    """``question``: found by the question asked; ``mistake``: by a draft step that resembles
    the step the record corrected (``mistakes.py``)."""


def new_id() -> str:
    return f"mem_{secrets.token_hex(12)}"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_id(value: object) -> bool:
    """Whether ``value`` has the shape of a record id (``mem_`` and 24 lowercase hex digits)."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def check_id(record_id: object) -> str:
    """``record_id`` if it has the shape of a record id; else ValueError."""
    if not is_id(record_id):
        raise ValueError(
            f"invalid memory id {_show(record_id)}: expected 'mem_' and 24 lowercase hex digits"
        )
    return record_id


def check_tenant(tenant: object) -> str:
    if not isinstance(tenant, str) or not tenant.strip():
        raise ValueError("tenant must be a non-empty string")
    if len(tenant) > MAX_TENANT_CHARS:
        raise ValueError(f"tenant is longer than {MAX_TENANT_CHARS} characters")
    if "\x00" in tenant:
        raise ValueError("tenant must not contain NUL characters")
    return tenant


def check_fields(**fields: Any) -> dict[str, Any]:
    """Check the text fields of a record (names as in ``TEXT_LIMITS``); return them.

    ``question`` and ``corrected_reasoning`` must be non-blank; ``answer`` and ``feedback`` may
    be None; every value must be a string within its limit. Errors are ValueErrors whose message
    names the field, fit for an HTTP 400.
    """
    for name, value in fields.items():
        limit = TEXT_LIMITS[name]
        if value is None and name in OPTIONAL:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string")
        if name in REQUIRED and not value.strip():
            raise ValueError(f"{name} must not be empty")
        if "\x00" in value:  # PostgreSQL's text cannot hold it: refused by every store alike
            raise ValueError(f"{name} must not contain NUL characters")
        if len(value) > limit:
            raise ValueError(f"{name} is longer than {limit} characters ({len(value)})")
    return fields


def check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} (got {_show(kind)})")
    return kind  # type: ignore[return-value]


def check_created_at(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("created_at must be a number of unix seconds")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"created_at must be finite and >= 0 (got {value})")
    return float(value)


def encode_vector(blob: bytes) -> str:
    """A stored embedding (float32 bytes) as base64 text for an export row."""
    return base64.b64encode(blob).decode("ascii")


def decode_vector(value: object, dim: int) -> np.ndarray | None:
    """An export row's ``embedding`` (base64 of float32, or a list of numbers) as a unit row.

    Returns None when it is absent; ValueError when it has the wrong size or is not finite.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            vec = np.frombuffer(base64.b64decode(value, validate=True), dtype="<f4")
        except ValueError as e:
            raise ValueError(f"embedding is not valid base64 ({e})") from None
    else:
        try:
            vec = np.asarray(value, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError("embedding must be base64 text or a list of numbers") from None
    if vec.shape != (dim,):
        raise ValueError(f"embedding has {vec.size} values, expected {dim}")
    return unit_rows(vec.reshape(1, dim))[0]


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` (N, dim) as float32 rows of norm 1; ValueError on non-finite or zero rows."""
    vectors = np.array(vectors, dtype=np.float32, copy=True)  # (N, dim)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (N, 1)
    if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
        raise ValueError("embedding rows must be finite and non-zero")
    # rows already of norm 1 are kept bit for bit (dividing again can move the last bit)
    return np.where(np.abs(norms - 1.0) <= 1e-6, vectors, vectors / norms)
