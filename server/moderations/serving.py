"""Moderation with value models: each input is scored by every configured value model.

A value model's risk is ``1 - score``; its category is flagged when the score falls below the
model's threshold (0.5 when it has none). Per-category scores a model reports (e.g. harm
categories of a judge) appear as ``"<model>/<category>"``. An input is judged as content
someone would say, with no question before it: the pair ``("", input)``.
"""

from __future__ import annotations

import asyncio

from safework.errors import RequestError

from ..alignment import Alignment
from ..protocol import ErrorResponse
from .protocol import ModerationRequest, ModerationResponse, ModerationResult

MAX_INPUTS = 256


class ModerationServing:
    def __init__(self, alignment: Alignment) -> None:
        self.alignment = alignment

    async def create(self, request: ModerationRequest) -> ModerationResponse | ErrorResponse:
        texts = request.texts
        try:
            if not self.alignment.enabled:
                raise RequestError(
                    "moderation needs value models: start the server with --value-model",
                    param="model",
                )
            if not texts or len(texts) > MAX_INPUTS:
                raise RequestError(f"give 1 to {MAX_INPUTS} inputs", param="input")
        except RequestError as e:
            return ErrorResponse.of(e)
        names = list(self.alignment.models)
        scored = await asyncio.gather(
            *(self.alignment.models[n].score([""] * len(texts), texts) for n in names)
        )
        results = []
        for i in range(len(texts)):
            categories: dict[str, bool] = {}
            scores: dict[str, float] = {}
            for name, per_model in zip(names, scored, strict=True):
                verdict = per_model[i]
                threshold = self.alignment.config.models[name].threshold or 0.5
                categories[name] = verdict.score < threshold
                scores[name] = round(1.0 - verdict.score, 6)
                for cat, value in verdict.categories.items():
                    scores[f"{name}/{cat}"] = round(value, 6)
                    categories[f"{name}/{cat}"] = value >= 0.5
            flagged = any(categories.values())
            results.append(
                ModerationResult(flagged=flagged, categories=categories, category_scores=scores)
            )
        model = request.model or "+".join(names)
        return ModerationResponse(model=model, results=results)
