"""``DataConfig``: the settings of ``safework-train data`` (``data.py`` builds, ``mix.py`` mixes).

The config on its own, so the recipes (``mix.py``) and the builder (``data.py``) both read it
and neither imports the other for it. ``RECIPE_NAMES`` are the keys of ``mix.RECIPES`` (a test
keeps the two equal): the config checks a recipe name without importing the recipes.
Importing this module is cheap (no torch, no reasoning-gym): ``--help`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safework.errors import ConfigError
from safework.files import cache_dir

from .config import help_text
from .levels import math_source
from .math_cot import DEFAULT_MATH_MIX

__all__ = [
    "DATA_KEYS",
    "OPTIONAL_DATA_KEYS",
    "RECIPE_NAMES",
    "SEARCH_KINDS",
    "DataConfig",
    "default_output",
]

RECIPE_NAMES = ("cot-sft",)
"""The built-in recipes (``mix.RECIPES``)."""
SEARCH_KINDS = ("acronym", "element", "year", "prose", "direct")
"""The search question kinds (``search_qa.KINDS``; a test keeps the two equal)."""
DATA_KEYS = (
    "recipe",
    "seed",
    "math_train",
    "math_dev",
    "safety_train",
    "safety_dev",
    "benign_train",
    "benign_dev",
    "edgy_fraction",
    "math_mix",
    "search_train",
    "search_dev",
)
"""The config keys that decide a dataset's rows (the others say where and how to write it)."""
OPTIONAL_DATA_KEYS = (
    "constraint_fraction",
    "jailbreak_fraction",
    "benign_jailbreak_fraction",
    "quote_first",
    "label_first",
    "pressure_wrappers",
    "search_mix",
)
"""Keys that also decide the rows but are recorded only when set (off, a dataset built before
the key existed stays current)."""
_SIZE_KEYS = (*DATA_KEYS[2:8], "search_train", "search_dev")


@dataclass
class DataConfig:
    """Settings of ``safework-train data`` (YAML file and/or KEY=VALUE overrides)."""

    recipe: str = field(default="cot-sft", metadata=help_text("built-in recipe to build"))
    output: Path | None = field(
        default=None,
        metadata=help_text("dataset folder (default: <cache>/datasets/<recipe>-seed<seed>)"),
    )
    cache: Path | None = field(
        default=None,
        metadata=help_text("cache root (default: $SAFEWORK_CACHE or ~/.cache/safework)"),
    )
    seed: int = field(default=0, metadata=help_text("seed of every choice (same seed, same data)"))
    math_train: int = field(default=600, metadata=help_text("maths rows in train"))
    math_dev: int = field(default=60, metadata=help_text("maths rows in dev"))
    safety_train: int = field(default=400, metadata=help_text("harmful-prompt rows in train"))
    safety_dev: int = field(default=60, metadata=help_text("harmful-prompt rows in dev"))
    benign_train: int = field(default=400, metadata=help_text("benign rows in train"))
    benign_dev: int = field(default=60, metadata=help_text("benign rows in dev"))
    edgy_fraction: float = field(
        default=0.25,
        metadata=help_text("share of the benign rows that are edgy-benign (risky-sounding topics)"),
    )
    constraint_fraction: float = field(
        default=0.0,
        metadata=help_text(
            "share of the AlpacaEval train rows that add a verifiable constraint (lowercase, no "
            "commas, an end phrase...) and answer by it (constraints.py)"
        ),
    )
    jailbreak_fraction: float = field(
        default=0.0,
        metadata=help_text(
            "share of the safety train rows whose request is asked inside a pyrit jailbreak "
            "template (SFT_JAILBREAK_TEMPLATES, none of which evaluation uses); the reasoning "
            "sets the wrapper aside and declines"
        ),
    )
    benign_jailbreak_fraction: float = field(
        default=0.0,
        metadata=help_text(
            "share of the AlpacaEval train rows asked inside the same jailbreak templates; the "
            "reasoning sets the wrapper aside and answers the request, so a wrapper alone "
            "decides nothing"
        ),
    )
    quote_first: bool = field(
        default=False,
        metadata=help_text(
            "reasoning of a safety or benign row whose request is not one imperative sentence "
            "opens by quoting it, the same way for both, and decides after (cot_texts.py)"
        ),
    )
    label_first: bool = field(
        default=False,
        metadata=help_text(
            "reasoning of a safety, benign or edgy row whose request is not one imperative "
            "sentence opens with frames shared by all of them; the words in the frame (what a "
            "harmful request seeks, a benign one's kind) decide (cot_texts.py); not with "
            "quote_first"
        ),
    )
    pressure_wrappers: bool = field(
        default=False,
        metadata=help_text(
            "the wrapped rows (jailbreak_fraction, benign_jailbreak_fraction) also use this "
            "project's 12 wrappers that press for compliance after or before the request "
            "(training/wrappers.py), shapes the pyrit training templates lack"
        ),
    )
    math_mix: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_MATH_MIX),
        metadata=help_text(
            "reasoning-gym dataset, or capability level such as chain_sum/2x1 (train rows only), "
            "-> share of the maths rows"
        ),
    )
    search_train: int = field(
        default=0,
        metadata=help_text(
            "search-protocol transcripts in train (search_cot.py; 0 = none; ~2 s each, real "
            "retrieval on local:builtin)"
        ),
    )
    search_dev: int = field(default=0, metadata=help_text("search-protocol transcripts in dev"))
    search_mix: dict[str, float] | None = field(
        default=None,
        metadata=help_text(
            "search question kind (acronym, element, year, prose, direct; acronym must be "
            "there, it takes other kinds' shortfall) -> weight; default search_cot.SEARCH_MIX"
        ),
    )
    fetch_only: bool = field(
        default=False, metadata=help_text("only fetch and verify the sources; build nothing")
    )
    overwrite: bool = field(
        default=False, metadata=help_text("replace an existing, different dataset at output")
    )

    def check(self) -> None:
        """Raise ``ConfigError`` naming the key to change."""
        if self.recipe not in RECIPE_NAMES:
            raise ConfigError(
                f"recipe: unknown {self.recipe!r}; choose one of {sorted(RECIPE_NAMES)}"
            )
        for key in _SIZE_KEYS:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{key}: must be a whole number >= 0, got {value!r}")
        if not any(getattr(self, k) for k in _SIZE_KEYS if k.endswith("_train")):
            raise ConfigError(
                "math_train, safety_train, benign_train, search_train: all are 0; set one above 0"
            )
        for key in (
            "edgy_fraction",
            "constraint_fraction",
            "jailbreak_fraction",
            "benign_jailbreak_fraction",
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{key}: must be a number between 0 and 1, got {value!r}")
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{key}: must be between 0 and 1, got {value}")
        for key in ("quote_first", "label_first", "pressure_wrappers"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{key}: must be true or false, got {getattr(self, key)!r}")
        if self.quote_first and self.label_first:
            raise ConfigError("quote_first, label_first: choose one way to open the reasoning")
        self._check_mix()
        self._check_search_mix()

    def _check_search_mix(self) -> None:
        if self.search_mix is None:
            return
        if not isinstance(self.search_mix, dict) or "acronym" not in self.search_mix:
            raise ConfigError(
                "search_mix: a mapping of question kind -> weight that includes acronym, "
                f"got {self.search_mix!r}"
            )
        for kind, weight in self.search_mix.items():
            if kind not in SEARCH_KINDS:
                raise ConfigError(
                    f"search_mix: unknown kind {kind!r}; choose from {list(SEARCH_KINDS)}"
                )
            if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
                raise ConfigError(f"search_mix.{kind}: weight must be a number > 0, got {weight!r}")

    def _check_mix(self) -> None:
        if not isinstance(self.math_mix, dict) or not self.math_mix:
            if self.math_train or self.math_dev:
                raise ConfigError("math_mix: give at least one reasoning-gym dataset and weight")
            return
        for name, weight in self.math_mix.items():
            math_source(name)
            if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
                raise ConfigError(f"math_mix.{name}: weight must be a number > 0, got {weight!r}")

    def folder(self) -> Path:
        """Where the dataset goes: ``output`` or the default folder in the cache."""
        return (
            self.output
            if self.output is not None
            else default_output(self.recipe, self.seed, self.cache)
        )

    def data_key(self) -> dict[str, Any]:
        """The settings that decide the rows (``DATA_KEYS``), as JSON data."""
        out = {key: getattr(self, key) for key in DATA_KEYS}
        out["math_mix"] = {k: float(v) for k, v in self.math_mix.items()}
        out["edgy_fraction"] = float(self.edgy_fraction)
        for key in OPTIONAL_DATA_KEYS:  # absent when off: datasets built before stay current
            value = getattr(self, key)
            if value:
                if isinstance(value, dict):
                    out[key] = {k: float(v) for k, v in value.items()}
                else:
                    out[key] = value if isinstance(value, bool) else float(value)
        return out


def default_output(recipe: str, seed: int, cache: Path | None = None) -> Path:
    """``<cache>/datasets/<recipe>-seed<seed>``."""
    root = Path(cache) if cache is not None else cache_dir()
    return root / "datasets" / f"{recipe}-seed{seed}"
