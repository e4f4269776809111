"""The value-model interface: score (prompt, partial response) pairs in batches.

A value model answers "how good is this response so far?" for one value (safety, human
values, knowledge, a rule) with a score in [0, 1], higher is better, and optionally scores
per category (e.g. the probability of each harm category). Guided decoding scores every
candidate step with every configured model, one batch per model; ``/v1/moderations`` uses
the same models as a classifier.

Implementations are picked by a spec string through ``registry.load_value_model``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ValueScore:
    """One model's verdict on one (prompt, response) pair."""

    model: str
    score: float
    """In [0, 1]; higher is better (safer, more aligned, more correct)."""
    categories: dict[str, float] = field(default_factory=dict)
    """Optional per-category scores, each in [0, 1]; their meaning is the model's to document
    (for safety models: the probability that the pair falls in that harm category)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"{self.model}: score {self.score} is outside [0, 1]")


class ValueModel(abc.ABC):
    """Scores batches of (prompt, partial response) pairs."""

    name: str
    """The name it was configured under (``--value-model NAME=SPEC``)."""
    spec: str
    """The spec string it was built from (e.g. ``builtin:safety``)."""
    default_threshold: float | None = None
    """The threshold the model was calibrated for (built-in models ship one, chosen on their
    validation split); None: no threshold of its own. The server uses it when neither the
    request nor the YAML config sets a threshold (``server.alignment.resolve_threshold``)."""

    @abc.abstractmethod
    async def score(self, prompts: list[str], responses: list[str]) -> list[ValueScore]:
        """One ``ValueScore`` per pair, in order; ``len(prompts) == len(responses)``."""

    reads_images: bool = False
    """Whether ``score_with_images`` looks at the images (a judge on a vision-language
    model); the others score the text alone."""

    async def score_with_images(
        self, prompts: list[str], responses: list[str], images: Sequence[Sequence[Any]]
    ) -> list[ValueScore]:
        """``score``, each pair with the images the user sent along with its prompt (PIL,
        RGB; possibly none). By default the images are not looked at."""
        return await self.score(prompts, responses)

    prompt_threshold: float | None = None
    """The probability above which ``prompt_risk`` calls a request harmful; None: the model
    has no prompt classifier."""

    async def prompt_risk(self, prompts: list[str]) -> list[float] | None:
        """P(the request is harmful) per prompt, judged on the prompt alone, or None when the
        model cannot judge a prompt without a response (the default)."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release models or connections."""
