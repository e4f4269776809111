"""Value models that score reasoning steps (safety, values, knowledge, rules) and the step-wise
guided decoding that uses them. Importing this package loads no model."""

from .base import ValueModel, ValueScore
from .guided import GuidanceConfig, GuidedDecoder, WeightedModel
from .registry import LoadContext, ValueModelsConfig, load_value_model

__all__ = [
    "GuidanceConfig",
    "GuidedDecoder",
    "LoadContext",
    "ValueModel",
    "ValueModelsConfig",
    "ValueScore",
    "WeightedModel",
    "load_value_model",
]
