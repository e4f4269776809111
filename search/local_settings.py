"""``LocalSettings``: how a local corpus is indexed and searched (``local.py``, ``index.py``).

The settings of the ``local:PATH`` backend on their own, so the index (``index.py``) and the
backend (``local.py``) both read them and neither imports the other's settings from it.
``safework serve --search-option mode=bm25`` and ``safework index --mode`` fill them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from safework.errors import ConfigError

__all__ = ["MODES", "LocalSettings"]

MODES = ("bm25", "dense", "hybrid")


@dataclass(frozen=True)
class LocalSettings:
    """How a local corpus is indexed and searched."""

    mode: str = "hybrid"
    passage_words: int = 120
    """Target passage length in words; passages run up to 1.25x this to end at a paragraph."""
    overlap_words: int = 20
    """Words repeated from the end of one passage at the start of the next."""
    hnsw_threshold: int = 200_000
    """Passage count from which the dense index is HNSW (approximate) instead of exact."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"local search mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.passage_words < 10:
            raise ConfigError(f"passage_words must be >= 10 (got {self.passage_words})")
        if not 0 <= self.overlap_words < self.passage_words // 2:
            raise ConfigError(
                f"overlap_words must be >= 0 and under half of passage_words "
                f"({self.passage_words}); got {self.overlap_words}"
            )
        if self.hnsw_threshold < 1:
            raise ConfigError(f"hnsw_threshold must be >= 1 (got {self.hnsw_threshold})")

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> LocalSettings:
        """Settings from ``key=value`` options; ConfigError names a bad value.

        Keys this backend does not know are ignored: one option set serves every configured
        backend (``--search-option region=de-de`` is for DuckDuckGo).
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in options:
                continue
            value = options[f.name]
            if f.name == "mode":
                values["mode"] = str(value)
                continue
            try:
                values[f.name] = int(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"local search option {f.name}={value!r}: expected an integer"
                ) from None
        return cls(**values)

    @property
    def needs_dense(self) -> bool:
        return self.mode in ("dense", "hybrid")
