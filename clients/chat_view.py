"""What ``safework chat`` draws: a streaming answer with its reasoning, value scores and search.

``AnswerView`` is a rich renderable fed with a stream's parts. While the answer streams it
shows the tail of the reasoning (dimmed), each chosen step's value scores as small bars,
the search queries as they are made, and the answer so far; ``final()`` draws the finished
turn with the reasoning collapsed to one line (``/show`` prints it whole), the sources with
the confidence, and the past corrections that guided the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from .types import SafeWorkInfo

LIVE_REASONING_LINES = 6
BAR_WIDTH = 10


def score_bar(name: str, score: float) -> Text:
    """``safety ██████░░░░ 0.62``"""
    filled = round(max(0.0, min(1.0, score)) * BAR_WIDTH)
    style = "green" if score >= 0.5 else "red"
    text = Text(f"{name} ")
    text.append("█" * filled, style=style)
    text.append("░" * (BAR_WIDTH - filled), style="dim")
    text.append(f" {score:.2f}")
    return text


def step_line(event: dict[str, Any]) -> Text:
    """One aligned step: its number, what happened, a bar per value model."""
    action = event.get("action", "choose")
    line = Text(f"  step {event.get('step', 0) + 1} ", style="cyan")
    if action != "choose":
        return line.append(f"{action}: {event.get('text', '').strip()[:60]}", style="yellow")
    for i, (name, score) in enumerate(sorted(event.get("scores", {}).items())):
        if i:
            line.append("  ")
        line.append_text(score_bar(name, float(score)))
    rejected = len(event.get("rejected", []))
    if rejected:
        line.append(f"  ({rejected} rejected)", style="dim")
    return line


def search_line(event: dict[str, Any]) -> Text | None:
    kind = event.get("type")
    if kind == "search.query":
        found = len(event.get("results", []))
        note = f"error: {event['error']}" if event.get("error") else f"{found} results"
        return Text(f"  search: {event.get('query', '')}  ({note})", style="magenta")
    if kind == "search.read":
        return Text(f"  read: {event.get('id', '')}", style="magenta")
    return None


def collapsed(reasoning: str) -> Text:
    words = len(reasoning.split())
    return Text(f"▸ reasoning ({words} words, /show to expand)", style="dim italic")


def expanded(reasoning: str) -> Text:
    return Text(reasoning.strip(), style="dim italic")


def sources_lines(info: SafeWorkInfo) -> list[Text]:
    lines = []
    for i, source in enumerate(info.sources, 1):
        line = Text(f"  [{i}] {source.title or source.id}", style="blue")
        if source.url:
            line.append(f"  {source.url}", style=f"link {source.url} dim")
        lines.append(line)
    if info.confidence is not None:
        lines.append(Text(f"  confidence {info.confidence:.0%}", style="bold"))
    return lines


@dataclass
class AnswerView:
    """One answer as it streams; ``add`` takes the parts of a ``ChatStream``."""

    reasoning: str = ""
    content: str = ""
    lines: list[Text] = field(default_factory=list)
    """Steps and search events, in order."""

    def add(self, kind: str, payload: Any) -> None:
        if kind == "reasoning":
            self.reasoning += payload
        elif kind == "content":
            self.content += payload
        elif payload.get("type") == "alignment.step":
            self.lines.append(step_line(payload))
        elif (line := search_line(payload)) is not None:
            self.lines.append(line)

    def __rich__(self) -> RenderableType:
        parts: list[RenderableType] = []
        if self.reasoning:
            tail = self.reasoning.strip().splitlines()[-LIVE_REASONING_LINES:]
            parts.append(Text("\n".join(tail), style="dim italic"))
        parts += self.lines
        if self.content:
            parts.append(Text(self.content.strip()))
        return Group(*parts)

    def final(self, info: SafeWorkInfo, show_reasoning: bool = False) -> RenderableType:
        parts: list[RenderableType] = []
        if self.reasoning.strip():
            parts.append(expanded(self.reasoning) if show_reasoning else collapsed(self.reasoning))
        parts += self.lines
        parts.append(Text(self.content.strip() or "(no answer)", style="bold"))
        parts += sources_lines(info)
        if info.memory_hits:
            hits = ", ".join(h.id for h in info.memory_hits)
            parts.append(Text(f"  guided by past corrections: {hits}", style="dim"))
        return Group(*parts)
