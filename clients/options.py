"""Request bodies for SafeWork's extensions: the ``safework`` block, ``/cot/edit``, memory
queries. Pure functions, shared by the sync and async clients."""

from __future__ import annotations

from typing import Any

from .types import AlignmentOptions, MemoryOptions, SearchOptions, _Options


def _block(value: Any, kind: type[_Options]) -> dict[str, Any] | None:
    """``True``: the server's settings; ``None``/``False``: not asked; options or a dict."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    return (value if isinstance(value, kind) else kind.model_validate(value)).body()


def safework_block(
    strategy: str | None = None, alignment: Any = None, search: Any = None, memory: Any = None
) -> dict[str, Any]:
    """The request's ``safework`` object.

    >>> safework_block(alignment=True)
    {'strategy': 'aligned'}
    >>> safework_block(search={"max_turns": 2}, memory=False)
    {'strategy': 'search', 'search': {'max_turns': 2}, 'memory': {'enabled': False}}
    """
    aligned, searched = _block(alignment, AlignmentOptions), _block(search, SearchOptions)
    if strategy is None and aligned is not None and searched is not None:
        raise ValueError("give `strategy=` when asking for both alignment and search")
    if strategy is None:
        strategy = "aligned" if aligned is not None else "search" if searched is not None else None
    out: dict[str, Any] = {"strategy": strategy} if strategy else {}
    if aligned:
        out["alignment"] = aligned
    if searched:
        out["search"] = searched
    if memory is not None:
        out["memory"] = (
            {"enabled": memory} if isinstance(memory, bool) else _block(memory, MemoryOptions)
        )
    return out


def with_safework(
    extra_body: dict[str, Any] | None,
    strategy: str | None,
    alignment: Any,
    search: Any,
    memory: Any,
) -> dict[str, Any] | None:
    """``extra_body`` with the ``safework`` block merged in (an explicit one wins per key)."""
    block = safework_block(strategy, alignment, search, memory)
    if not block:
        return extra_body
    body = dict(extra_body or {})
    body["safework"] = {**block, **body.get("safework", {})}
    return body


def cot_edit_body(
    messages: Any,
    edited_reasoning: str,
    reasoning: str,
    answer: str | None,
    feedback: str | None,
    remember: bool,
    stream: bool,
    sampling: dict[str, Any],
) -> dict[str, Any]:
    body = {
        "messages": list(messages),
        "reasoning": reasoning,
        "edited_reasoning": edited_reasoning,
        "remember": remember,
        "stream": stream,
        **sampling,
    }
    for name, value in (("answer", answer), ("feedback", feedback)):
        if value is not None:
            body[name] = value
    return body


def memory_query(
    limit: int, after: str | None, q: str | None, kind: str | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if kind:
        params["kind"] = kind
    if after:
        params["after"] = after
    if q:
        params["q"] = q
    return params
