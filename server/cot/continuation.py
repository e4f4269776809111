"""``POST /cot/edit``'s strategy: the model continues from the user's corrected reasoning.

The conversation is rendered with a final assistant message that is left open: ``<think>``
followed by the corrected reasoning, so the model continues the user's text rather than
starting again. ``ContinueReasoning`` then

1. streams the corrected reasoning itself (no token ids: the model did not write it), so
   ``reasoning_content`` is the corrected prefix plus the continuation;
2. lets the model finish its reasoning, up to ``</think>``;
3. and, when the model ended without closing its reasoning (small models do not know the
   tag), closes it and asks for the answer after it.

It is the ``continue`` entry of the chat strategies' registry (``chat/strategies.py``);
``serving.py`` answers the route with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

from safework.engine.base import ChoiceDelta, Engine, EngineOutput, FinishReason, SamplingConfig
from safework.engine.reasoning import CLOSE_TAG

__all__ = ["CLOSING", "ROUTE", "ContinueReasoning"]

ROUTE = "/cot/edit"
CLOSING = f"{CLOSE_TAG}\n\n"


class ContinueReasoning:
    """A strategy: stream the corrected prefix, continue the reasoning, then the answer."""

    def __init__(self, edited: str) -> None:
        self.edited = edited

    async def __call__(
        self, engine: Engine, prompt_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncIterator[EngineOutput]:
        n_prompt = len(prompt_ids)
        opening = ChoiceDelta(index=0, text=self.edited, token_ids=[])
        yield EngineOutput(request_id, n_prompt, [opening], False)
        thinking = replace(
            sampling, stop=[CLOSE_TAG, *sampling.stop], include_stop_str_in_output=True
        )
        text, used, end = "", 0, None
        reasoning = engine.generate(prompt_ids, thinking, f"{request_id}-reason")
        async with contextlib.aclosing(reasoning) as outputs:  # closed (aborted) if we are
            async for out in outputs:
                for d in out.choices:
                    text += d.text
                    used += len(d.token_ids)
                    if d.finish_reason is not None:
                        end = d
                        d = ChoiceDelta(  # not finished yet
                            index=0, text=d.text, token_ids=d.token_ids, logprobs=d.logprobs
                        )
                    yield EngineOutput(request_id, n_prompt, [d], False)
        closed = end is not None and end.stop_reason == CLOSE_TAG
        if end is None or end.finish_reason == "length" or used >= sampling.max_tokens:
            yield self._finish(request_id, n_prompt, "length")
            return
        if end.finish_reason != "stop" or end.stop_reason in sampling.stop:
            yield self._finish(request_id, n_prompt, end.finish_reason, end.stop_reason)
            return
        # Reasoning is over: closed by the model, or ended without the tag (close it here).
        inserted = "\n\n" if closed else CLOSING
        closing = ChoiceDelta(index=0, text=inserted, token_ids=[])
        yield EngineOutput(request_id, n_prompt, [closing], False)
        context = prompt_ids + await engine.tokenize(text.removesuffix(CLOSE_TAG) + CLOSING)
        budget = min(sampling.max_tokens - used, engine.max_model_len - len(context))
        if budget <= 0:
            yield self._finish(request_id, n_prompt, "length")
            return
        answering = replace(sampling, max_tokens=budget)
        answer = engine.generate(context, answering, f"{request_id}-answer")
        async with contextlib.aclosing(answer) as outputs:
            async for out in outputs:
                for d in out.choices:
                    yield EngineOutput(request_id, n_prompt, [d], out.finished)

    @staticmethod
    def _finish(
        rid: str, n_prompt: int, reason: FinishReason | None, stop: str | int | None = None
    ) -> EngineOutput:
        delta = ChoiceDelta(
            index=0, text="", token_ids=[], finish_reason=reason or "stop", stop_reason=stop
        )
        return EngineOutput(rid, n_prompt, [delta], True)
