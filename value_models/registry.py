"""Build value models from spec strings: ``--value-model NAME=SPEC`` or a YAML config.

Specs, by prefix (a registry, not an ``if`` chain; loaders import their heavy dependencies
only when used):

  ``builtin:safety``, ``builtin:values``   a fine-tuned MiniLM cross-encoder (``builtin.py``)
  ``hf:PATH``                              any HF sequence-classification / reward model
  ``judge:served`` or ``judge:PATH``       a generative judge through an Engine (``judge.py``)
  ``rules:refusal|pii|forbidden=FILE``     rule verifiers (``rules.py``)

YAML config (``--value-models-config FILE``)::

    value_models:
      safety: {spec: "builtin:safety", weight: 0.6}        # its own calibrated threshold
      values: {spec: "builtin:values", weight: 0.4, threshold: 0.2}   # a threshold of yours
    alignment: {candidates: 4, beam_width: 1, step_delimiter: "\\n", max_steps: 32, retries: 1}

A ``threshold`` left out (or ``null``) means the model's own (``ValueModel.default_threshold``:
the built-in models ship the one calibrated on their validation split; others have none, i.e.
0: no hard constraint).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from safework.engine.base import Engine
from safework.errors import ConfigError

from .base import ValueModel


@dataclass
class LoadContext:
    """What loaders may need besides the spec."""

    engine: Engine | None = None
    """The served engine (``judge:served``)."""
    cache: Path | None = None
    device: str = "cpu"


Loader = Callable[[str, str, str, LoadContext], ValueModel]
"""``(name, spec, argument after the prefix, context) -> ValueModel``."""

LOADERS: dict[str, str] = {
    "builtin": "safework.value_models.builtin:load_builtin",
    "hf": "safework.value_models.hf:load_hf",
    "judge": "safework.value_models.judge:load_judge",
    "rules": "safework.value_models.rules:load_rules",
}


def _loader(prefix: str) -> Loader:
    module, _, attr = LOADERS[prefix].partition(":")
    return getattr(importlib.import_module(module), attr)


def check_spec(spec: str) -> tuple[str, str]:
    """``"hf:/models/rm"`` -> ``("hf", "/models/rm")``; ConfigError for an unknown prefix."""
    prefix, sep, arg = spec.partition(":")
    if not sep or prefix not in LOADERS or not arg:
        known = ", ".join(f"{p}:..." for p in LOADERS)
        raise ConfigError(f"unknown value model spec {spec!r}; use one of {known}")
    return prefix, arg


def load_value_model(name: str, spec: str, ctx: LoadContext | None = None) -> ValueModel:
    prefix, arg = check_spec(spec)
    return _loader(prefix)(name, spec, arg, ctx or LoadContext())


def parse_value_model_arg(text: str) -> tuple[str, str]:
    """``"safety=builtin:safety"`` -> ``("safety", "builtin:safety")``; bare spec -> its arg."""
    name, sep, spec = text.partition("=")
    if not sep or ":" in name:
        spec = text
        name = check_spec(spec)[1].split("=")[0].rsplit("/", 1)[-1]
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"value model name {name!r}: use letters, digits, - and _")
    check_spec(spec)
    return name, spec


@dataclass
class ValueModelEntry:
    spec: str
    weight: float = 1.0
    threshold: float | None = None
    """Hard constraint; None: the model's own ``default_threshold`` (0 when it has none)."""

    def __post_init__(self) -> None:
        check_spec(self.spec)
        if self.weight < 0:
            raise ConfigError(f"value model weight must be >= 0 (got {self.weight})")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"value model threshold must be in [0, 1] (got {self.threshold})")


@dataclass
class ValueModelsConfig:
    """Configured value models (name -> entry) and the default alignment settings."""

    models: dict[str, ValueModelEntry] = field(default_factory=dict)
    alignment: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ValueModelsConfig:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read value-model config {path}: {e}") from e
        unknown = set(data) - {"value_models", "alignment"}
        if unknown:
            raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)}")
        models = {}
        for name, entry in (data.get("value_models") or {}).items():
            if isinstance(entry, str):
                entry = {"spec": entry}
            try:
                models[name] = ValueModelEntry(**entry)
            except TypeError as e:
                raise ConfigError(f"{path}: value model {name!r}: {e}") from e
        return cls(models, dict(data.get("alignment") or {}))

    def add(self, arg: str) -> None:
        """Add a ``NAME=SPEC`` from the command line (weight 1, the model's own threshold)."""
        name, spec = parse_value_model_arg(arg)
        self.models[name] = ValueModelEntry(spec)
