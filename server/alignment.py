"""The server side of inference-time alignment: configured value models -> a guided strategy.

``Alignment`` holds the value models loaded at start-up and the default guidance settings
(from ``--value-models-config``); ``guidance_for`` merges a request's ``safework.alignment``
block over them and checks it against the server's limits, so a bad setting is a 400 before
anything is generated. ``<model>:aligned`` is the profile that selects it without an
extension field, for chat UIs (the chat strategies' registry, ``chat/strategies.py``, picks it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

from safework.errors import ConfigError, RequestError
from safework.value_models.base import ValueModel
from safework.value_models.guided import GuidanceConfig, GuidanceStats, WeightedModel
from safework.value_models.registry import (
    LoadContext,
    ValueModelEntry,
    ValueModelsConfig,
    load_value_model,
)

from .disconnect import current_scope
from .metrics import ServerMetrics
from .protocol import AlignmentOptions, ValueModelSetting

logger = logging.getLogger("safework.server")
GUIDANCE_KEYS = {f.name for f in fields(GuidanceConfig)} - {"models", "images"}


@dataclass
class Alignment:
    models: dict[str, ValueModel]
    config: ValueModelsConfig
    max_candidates: int = 16
    max_beam_width: int = 4

    @classmethod
    def load(
        cls, config: ValueModelsConfig, ctx: LoadContext, max_candidates: int, max_beam_width: int
    ) -> Alignment:
        models = {}
        for name, entry in config.models.items():
            logger.info("loading value model %s = %s", name, entry.spec)
            models[name] = load_value_model(name, entry.spec, ctx)
        unknown = set(config.alignment) - GUIDANCE_KEYS
        if unknown:
            raise ConfigError(f"unknown alignment settings {sorted(unknown)}")
        return cls(models, config, max_candidates, max_beam_width)

    @property
    def enabled(self) -> bool:
        return bool(self.models)

    def guidance_for(self, options: AlignmentOptions | None) -> GuidanceConfig:
        """The request's settings over the server's defaults, within the server's limits."""
        if not self.enabled:
            raise RequestError(
                "alignment is not configured on this server (start it with --value-model)",
                param="safework.alignment",
            )
        options = options or AlignmentOptions()
        chosen = options.value_models or {
            name: None for name in self.models
        }  # None: the configured weight and threshold (``resolve_threshold``)
        weighted = []
        for name, setting in chosen.items():
            if name not in self.models:
                raise RequestError(
                    f"unknown value model {name!r}; configured: {sorted(self.models)}",
                    param="safework.alignment.value_models",
                )
            entry = self.config.models[name]
            weight = setting.weight if setting else entry.weight
            threshold = resolve_threshold(setting, entry, self.models[name])
            weighted.append(WeightedModel(self.models[name], weight, threshold))
        settings = dict(self.config.alignment)
        overrides = options.model_dump(exclude_none=True, exclude={"value_models"})
        settings.update(overrides)
        if settings.get("candidates", 4) > self.max_candidates:
            raise RequestError(
                f"candidates may be at most {self.max_candidates} on this server",
                param="safework.alignment.candidates",
            )
        if settings.get("beam_width", 1) > self.max_beam_width:
            raise RequestError(
                f"beam_width may be at most {self.max_beam_width} on this server",
                param="safework.alignment.beam_width",
            )
        scope = current_scope()
        images = tuple(scope.images) if scope is not None else ()
        try:
            return GuidanceConfig(models=tuple(weighted), images=images, **settings)
        except ValueError as e:
            raise RequestError(str(e), param="safework.alignment") from e

    async def close(self) -> None:
        for model in self.models.values():
            await model.close()


def resolve_threshold(
    setting: ValueModelSetting | None, entry: ValueModelEntry, model: ValueModel
) -> float:
    """A model's hard threshold: the request's, if it sets one; else the YAML config's; else
    the model's own calibrated ``default_threshold``; else 0 (no constraint)."""
    if setting is not None and "threshold" in setting.model_fields_set:
        return setting.threshold
    if entry.threshold is not None:
        return entry.threshold
    return model.default_threshold if model.default_threshold is not None else 0.0


def record_guidance(metrics: ServerMetrics, stats: GuidanceStats) -> None:
    metrics.guided_candidates.inc(stats.candidates)
    metrics.guided_rejected.inc(stats.rejected)
    if stats.steered:
        metrics.guided_interventions.labels("steer").inc(stats.steered)
    if stats.refused:
        metrics.guided_interventions.labels("refusal").inc(stats.refused)
    for model, seconds in stats.model_seconds:
        metrics.value_model_latency.labels(model).observe(seconds)
