"""The model runtime: the ``Engine`` interface, its vLLM implementation, the embedded default
model, and the ``<think>`` reasoning split. Importing this package does not import vLLM."""

from .base import (
    ChoiceDelta,
    Engine,
    EngineOutput,
    SamplingConfig,
    StructuredOutput,
    TokenLogprob,
    TopLogprob,
)
from .options import EngineOptions
from .reasoning import ReasoningSplitter, split_reasoning

__all__ = [
    "ChoiceDelta",
    "Engine",
    "EngineOptions",
    "EngineOutput",
    "ReasoningSplitter",
    "SamplingConfig",
    "StructuredOutput",
    "TokenLogprob",
    "TopLogprob",
    "split_reasoning",
]
