"""How a reply's reasoning reaches the client: in fields, or inline in ``<think>`` tags.

The server always splits the model's ``<think>...</think>`` block from its answer first
(``safework.engine.reasoning``), so finish hooks and the correction memory get the two apart
whatever is chosen here. This module only decides how they are sent (``--reasoning-output``):

* ``fields`` (the default): the reasoning in ``reasoning_content`` and ``reasoning`` (on the
  message, and on stream deltas), the answer in ``content``. Open WebUI reads
  ``reasoning_content``, then ``reasoning``; LibreChat reads ``reasoning_content``.
* ``think``: everything in ``content``, as ``<think>`` + reasoning + ``</think>`` + ``\\n\\n`` +
  answer, for clients that only parse tags. A stream keeps the tags balanced per choice:
  ``</think>`` comes before the first answer text, or when the choice finishes without one.

In both formats a stream delta carries reasoning or answer, never both, and ``</think>``
travels alone. LibreChat's stream handler classifies a whole delta at once (by its reasoning
field, or by a ``<think>`` in it) and turns to answer text only on the delta after the one
holding ``</think>``; a mixed delta would show reasoning as answer (docs/CHAT_UIS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from safework.engine.reasoning import CLOSE_TAG, OPEN_TAG, ReasoningSplitter
from safework.errors import ConfigError

from .protocol import AssistantMessage, DeltaMessage

SEPARATOR = "\n\n"
"""Between ``</think>`` and the answer in ``think`` output."""

Segment = tuple[Literal["reasoning", "content"], str]


def split_in_order(splitter: ReasoningSplitter, text: str, final: bool) -> list[Segment]:
    """``splitter.feed(text)`` (and its flush when ``final``) as segments in text order.

    The splitter returns a step's reasoning and answer apart; they came in that order unless
    the step opened a think block that is still open, when its answer text came first. A step
    that opens and closes a block and has text on both sides is taken as block-then-text (a
    simplification: models open their block at the start).
    """
    was_reasoning = splitter.in_reasoning
    reasoning, content = splitter.feed(text)
    content_first = not was_reasoning and splitter.in_reasoning
    segments: list[Segment] = [("reasoning", reasoning), ("content", content)]
    if content_first:
        segments.reverse()
    if final:
        tail_r, tail_c = splitter.flush()
        segments += [("reasoning", tail_r), ("content", tail_c)]
    return [(kind, t) for kind, t in segments if t]


class ReasoningFormat(Protocol):
    """One choice's output format; a stream keeps one per choice (``think`` has state)."""

    def message(self, reasoning: str | None, content: str) -> AssistantMessage:
        """A whole reply (``reasoning`` is ``None`` when the model wrote no think block)."""
        ...

    def deltas(self, segments: list[Segment], finished: bool) -> list[DeltaMessage]:
        """The stream deltas, in order, for one step's segments."""
        ...


class FieldsFormat:
    """``reasoning_content``/``reasoning`` fields, the answer in ``content``."""

    def message(self, reasoning: str | None, content: str) -> AssistantMessage:
        return AssistantMessage(content=content, reasoning_content=reasoning, reasoning=reasoning)

    def deltas(self, segments: list[Segment], finished: bool) -> list[DeltaMessage]:
        return [
            DeltaMessage(reasoning_content=t, reasoning=t)
            if kind == "reasoning"
            else DeltaMessage(content=t)
            for kind, t in segments
        ]


@dataclass
class ThinkFormat:
    """Reasoning inline in ``content`` between ``<think>`` and ``</think>``.

    A reply's text before its think block (rare) stays before it in a stream, but goes after
    it in a whole message, which only has the reasoning and the answer apart."""

    opened: bool = False
    closed: bool = False

    def message(self, reasoning: str | None, content: str) -> AssistantMessage:
        if not reasoning:
            return AssistantMessage(content=content)
        return AssistantMessage(content=f"{OPEN_TAG}{reasoning}{CLOSE_TAG}{SEPARATOR}{content}")

    def deltas(self, segments: list[Segment], finished: bool) -> list[DeltaMessage]:
        texts: list[str] = []
        for kind, text in segments:
            if kind == "reasoning":
                texts.append(text if self.opened else OPEN_TAG + text)
                self.opened = True
            elif self.opened and not self.closed:
                texts += self._close(text)
            else:
                texts.append(text)
        if finished and self.opened and not self.closed:
            texts += self._close("")
        return [DeltaMessage(content=t) for t in texts]

    def _close(self, answer: str) -> list[str]:
        """``</think>`` alone, then the answer (LibreChat turns to text after that delta)."""
        self.closed = True
        return [CLOSE_TAG, SEPARATOR + answer]


FORMATS: dict[str, type[FieldsFormat] | type[ThinkFormat]] = {
    "fields": FieldsFormat,
    "think": ThinkFormat,
}


def reasoning_format(name: str) -> ReasoningFormat:
    """A new formatter for ``--reasoning-output NAME``."""
    try:
        return FORMATS[name]()
    except KeyError:
        raise ConfigError(
            f"unknown reasoning output {name!r}: use one of {', '.join(FORMATS)}"
        ) from None
