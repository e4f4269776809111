"""Moderation: classify what people send, prompts and responses, each by a model of its shape.

With a built-in value model configured (``builtin:safety`` or ``builtin:values``), its shared
cross-encoder (``value_models/builtin.py``) is the classifier, as Llama Guard judges either side
of a chat:

- a **prompt** (each ``input`` text, or a conversation whose last turn is the user's) goes to
  the prompt classifier (the ``prompt`` head, trained on prompts alone): risk = P(harmful
  request), flagged above ``1 - threshold["prompt"]``;
- a **response** (a conversation ending in an assistant turn) goes to the pair classifier in the
  context of the user turn before it: risk = 1 - P(safe), flagged when P(safe) is below the
  safety threshold (the model's own unless the configuration sets one).

``categories`` and ``category_scores`` are the risk head's kinds (``value_models/risks.py``); a
kind is flagged when the input is flagged and the kind scores at least 0.5 or is the top one.

Custom value models (``hf:``, ``judge:``, ``rules:``) have no prompt classifier: each scores
the pair (the prompt before, or "" for a plain prompt, and the text) as before this change; its
risk is ``1 - score``, flagged below its threshold (configured, else its own, else 0.5), and
appears as the category ``<name>`` (with ``<name>/<category>`` for per-category scores). An item
is flagged when any classifier flags it.

Items are classified ``CHUNK`` at a time, so a client that disconnects (the request is then
cancelled) leaves at most one chunk's scoring running in a worker thread. Sizes are checked
before any model runs: at most ``MAX_INPUTS`` items, ``MAX_INPUT_CHARS`` per judged text and
``MAX_TOTAL_CHARS`` in all, each a 400 (``string_above_max_length``) naming the item; the body
itself is capped by ``--max-body-bytes`` (413).

An input with images (``protocol.py``) needs a value model that reads them
(``ValueModel.reads_images``: ``judge:served`` on a vision-language model), else it is a 400
``images_not_supported``; the images are checked as chat's are (``images.py``) and given to
those models with the input's text, while the others judge the text alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from safework.errors import RequestError
from safework.value_models.base import ValueModel, ValueScore

from ..alignment import Alignment
from ..images import ImageError, ImageSettings, load_images
from ..protocol import ErrorResponse
from .protocol import JudgedItem, ModerationRequest, ModerationResponse, ModerationResult

MAX_INPUTS = 256
MAX_INPUT_CHARS = 32_768
"""Longest text one item may judge (a prompt, or a response and its user turn, each)."""
MAX_TOTAL_CHARS = 262_144
"""Most characters one request may judge, all items together."""
CHUNK = 8
"""Items classified per step: a request cancelled (its client left) stops after the step in
progress, the only work left running in a worker thread, instead of classifying them all."""


class ModerationServing:
    """Classifies a request's items; refuses more than ``max_inputs`` items, a text over
    ``max_input_chars``, or more than ``max_total_chars`` in all, with a 400 before any model
    runs (issue 17, finding 3: a body of megabytes held every classifier)."""

    def __init__(
        self,
        alignment: Alignment,
        *,
        max_inputs: int = MAX_INPUTS,
        max_input_chars: int = MAX_INPUT_CHARS,
        max_total_chars: int = MAX_TOTAL_CHARS,
        chunk: int = CHUNK,
        images: ImageSettings | None = None,
        image_fetcher: Any = None,
    ) -> None:
        self.alignment = alignment
        self.images = images or ImageSettings()
        self.image_fetcher = image_fetcher
        self.chunk = chunk
        self.max_inputs = max_inputs
        self.max_input_chars = max_input_chars
        self.max_total_chars = max_total_chars

    def _builtin(self) -> tuple[str, Any] | None:
        """(name, shared scorer) of the first configured built-in model, if any."""
        for name, model in self.alignment.models.items():
            scorer = getattr(model, "scorer", None)
            if scorer is not None and model.spec.startswith("builtin:"):
                return name, scorer
        return None

    def _custom(self) -> list[str]:
        return [n for n, m in self.alignment.models.items() if not m.spec.startswith("builtin:")]

    async def create(self, request: ModerationRequest) -> ModerationResponse | ErrorResponse:
        items = request.items
        try:
            if not self.alignment.enabled:
                raise RequestError(
                    "moderation needs value models: start the server with --value-model",
                    param="model",
                )
            if not items or len(items) > self.max_inputs:
                raise RequestError(f"give 1 to {self.max_inputs} inputs", param="input")
            self._check_sizes(items)
            pictures = await self._load_images(items)
        except RequestError as e:
            return ErrorResponse.of(e)
        builtin = self._builtin()
        custom = self._custom()
        results = [
            ModerationResult(flagged=False, categories={}, category_scores={}, safework={})
            for _ in items
        ]
        for start in range(0, len(items), self.chunk):  # a cancelled request stops here
            part = slice(start, start + self.chunk)
            if builtin is not None:
                await asyncio.to_thread(self._builtin_verdicts, builtin, items[part], results[part])
            if custom:
                await self._custom_verdicts(custom, items[part], results[part], pictures[part])
        for r in results:
            r.flagged = any(r.categories.values())
        names = [builtin[0]] if builtin else []
        model = request.model or "+".join(names + custom)
        return ModerationResponse(model=model, results=results)

    async def _load_images(self, items: list[JudgedItem]) -> list[list[Any]]:
        """Each item's decoded images (``images.py``); a 400 when an item has images and no
        configured value model reads them, or for an image the server refuses."""
        if not any(item.images for item in items):
            return [[] for _ in items]
        if not any(m.reads_images for m in self.alignment.models.values()):
            param = next(item.images[0][0] for item in items if item.images)
            raise RequestError(
                "no value model on this server reads images: configure one that does "
                "(judge:served on a vision-language model) to moderate them",
                param=param,
                code="images_not_supported",
            )
        try:
            return [await load_images(i.images, self.images, self.image_fetcher) for i in items]
        except ImageError as e:
            raise RequestError(str(e), param=e.param, code="invalid_image") from None

    def _check_sizes(self, items: list[JudgedItem]) -> None:
        """A 400 naming the first text over the per-item limit, or the total over its own."""
        total = 0
        for item in items:
            for text in (item.prompt, item.response or ""):
                if len(text) > self.max_input_chars:
                    raise RequestError(
                        f"Invalid '{item.param}': string too long. Expected a string with "
                        f"maximum length {self.max_input_chars}, but got a string with length "
                        f"{len(text)} instead.",
                        param=item.param,
                        code="string_above_max_length",
                    )
                total += len(text)
        if total > self.max_total_chars:
            raise RequestError(
                f"The texts to classify hold {total} characters together; the limit is "
                f"{self.max_total_chars} per request. Split them over several requests.",
                param="input" if items[0].param.startswith("input") else "messages",
                code="string_above_max_length",
            )

    def _threshold(self, name: str, model: ValueModel, fallback: float) -> float:
        configured = self.alignment.config.models[name].threshold
        if configured is not None:
            return configured
        return model.default_threshold if model.default_threshold is not None else fallback

    def _builtin_verdicts(
        self, builtin: tuple[str, Any], items: list[JudgedItem], results: list[ModerationResult]
    ) -> None:
        name, scorer = builtin
        rows = scorer.scores([i.prompt for i in items], [i.response for i in items])
        t_safe = scorer.thresholds["safety"]
        for n, m in self.alignment.models.items():
            if m.spec == "builtin:safety":  # its configured threshold, if any, wins
                t_safe = self._threshold(n, m, t_safe)
        for item, row, result in zip(items, rows, results, strict=True):
            if item.response is None:
                risk, threshold = float(row["prompt"]), 1.0 - scorer.thresholds["prompt"]
                flagged, judged = risk > threshold, "prompt"
            else:
                good = float(row["safe"])
                risk, threshold = 1.0 - good, 1.0 - t_safe
                flagged, judged = good < t_safe, "response"
            kinds = scorer.risk_dict(row["risk"])
            top = max(kinds, key=kinds.get)
            for kind, p in kinds.items():
                result.category_scores[kind] = round(p, 6)
                result.categories[kind] = flagged and (p >= 0.5 or kind == top)
            result.safework = {
                "judged": judged,
                "classifier": f"{name} (built-in)",
                "risk": round(risk, 6),
                "threshold": round(threshold, 6),
            }
            if flagged and not any(result.categories.values()):
                result.categories[top] = True

    async def _custom_verdicts(
        self,
        names: list[str],
        items: list[JudgedItem],
        results: list[ModerationResult],
        images: list[list[Any]],
    ) -> None:
        prompts = [i.prompt if i.response is not None else "" for i in items]
        texts = [i.response if i.response is not None else i.prompt for i in items]
        models = [self.alignment.models[n] for n in names]

        def scoring(model: ValueModel) -> Any:
            if model.reads_images and any(images):
                return model.score_with_images(prompts, texts, images)
            return model.score(prompts, texts)

        scored: list[list[ValueScore]] = await asyncio.gather(*(scoring(m) for m in models))
        for name, model, per_model in zip(names, models, scored, strict=True):
            threshold = self._threshold(name, model, 0.5)
            for verdict, result in zip(per_model, results, strict=True):
                result.categories[name] = verdict.score < threshold
                result.category_scores[name] = round(1.0 - verdict.score, 6)
                for cat, value in verdict.categories.items():
                    result.category_scores[f"{name}/{cat}"] = round(value, 6)
                    result.categories[f"{name}/{cat}"] = value >= 0.5
                extra = result.safework if result.safework is not None else {}
                extra.setdefault("value_models", {})[name] = round(1.0 - verdict.score, 6)
                result.safework = extra
