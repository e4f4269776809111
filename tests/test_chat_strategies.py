"""The chat strategies' registry: how a request picks a strategy, the errors on the way, and
that a new strategy is one entry (its profile, settings block and plan come from it)."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from safework.errors import NotFoundError, RequestError
from safework.server.alignment import Alignment
from safework.server.chat.plan import Plan
from safework.server.chat.protocol import ChatCompletionRequest
from safework.server.chat.strategies import (
    STRATEGIES,
    Services,
    StrategyEntry,
    check_profile,
    plan_for,
    resolve,
    split_profile,
)
from safework.server.generation import plain
from safework.server.protocol import AlignmentOptions, SafeWorkOptions, SearchOptions
from safework.server.search import SearchService, SearchSettings
from safework.value_models.registry import ValueModelsConfig

OFF = Services(Alignment({}, ValueModelsConfig()), SearchService({}, SearchSettings()))
"""A server with neither value models nor search backends."""


def request(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], **fields)


def test_the_registry_holds_every_strategy() -> None:
    assert list(STRATEGIES) == ["plain", "aligned", "search", "continue"]


def test_safework_strategy_offers_every_chat_strategy() -> None:
    """``safework.strategy`` is a closed list in the public schema: it must name exactly the
    registry's strategies a chat request can pick (``continue`` is ``/cot/edit``'s own)."""
    field = SafeWorkOptions.model_fields["strategy"].annotation
    offered = {arg for option in get_args(field) for arg in get_args(option)}
    assert offered == set(STRATEGIES) - {"continue"}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("m:aligned", ("m", "aligned")),
        ("m:search", ("m", "search")),
        ("m", ("m", None)),
        ("org/m:v2", ("org/m:v2", None)),  # not a profile: part of the name
        ("m:continue", ("m:continue", None)),  # /cot/edit's strategy has no profile
    ],
)
def test_profiles_come_from_the_registry(model: str, expected: tuple[str, str | None]) -> None:
    assert split_profile(model) == expected


def test_a_profile_of_a_strategy_that_is_off_is_a_404() -> None:
    with pytest.raises(NotFoundError) as caught:
        check_profile("search", OFF, "m:search")
    assert (
        caught.value.message == "The model `m:search` does not exist: no search backend configured."
    )
    assert (caught.value.param, caught.value.code) == ("model", "model_not_found")
    check_profile(None, OFF, "m")  # no profile: nothing to check


def test_resolution_order() -> None:
    both = SafeWorkOptions(alignment=AlignmentOptions(), search=SearchOptions())
    assert resolve("aligned", SafeWorkOptions(strategy="plain")) == "plain"
    assert resolve("search", SafeWorkOptions(alignment=AlignmentOptions())) == "search"
    assert resolve(None, SafeWorkOptions(search=SearchOptions())) == "search"
    assert resolve(None, None) == "plain"
    with pytest.raises(RequestError) as caught:
        resolve(None, both)
    assert caught.value.message == (
        "both `alignment` and `search` are given: choose one with `safework.strategy`"
    )
    assert caught.value.param == "safework.strategy"


def test_unsupported_fields_are_refused_before_the_strategy_is_built() -> None:
    with pytest.raises(RequestError) as caught:
        plan_for("search", OFF, request(logprobs=True), [], "t")
    assert caught.value.message == "`logprobs` is not supported with the search strategy"
    assert caught.value.param == "logprobs"


def test_a_new_strategy_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[tuple[str, Any]] = []

    def echo(
        services: Services,
        req: ChatCompletionRequest,
        messages: list[dict[str, Any]],
        tenant: str,
        settings: Any,
    ) -> Plan:
        built.append((tenant, settings))
        return Plan(plain, messages)

    entry = StrategyEntry(echo, unsupported=("logprobs",), profile="no echo")
    monkeypatch.setitem(STRATEGIES, "echo", entry)
    assert split_profile("m:echo") == ("m", "echo")
    assert resolve("echo", None) == "echo"
    plan = plan_for("echo", OFF, request(), [{"role": "user", "content": "hi"}], "tenant-a")
    assert plan.strategy is plain
    assert built == [("tenant-a", None)]
    with pytest.raises(RequestError, match="not supported with the echo strategy"):
        plan_for("echo", OFF, request(logprobs=True), [], "t")
