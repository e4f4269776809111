"""The chat strategies, one registry entry each: how a request picks one and gets its ``Plan``.

``STRATEGIES`` maps a name to a ``StrategyEntry``: the factory that builds the request's
``Plan``, the settings model of its ``safework`` block, the request fields it cannot honour,
and whether ``<model>:<name>`` selects it (a profile, for chat UIs that send no extension
field). A new strategy is one entry here (plus its name in ``SafeWorkOptions.strategy``).

``resolve`` picks the name: ``safework.strategy`` if given, else the model's profile, else the
strategy whose settings block is given (two blocks: a 400), else ``plain``. ``check_profile``
answers 404 for a profile whose strategy this server has not configured, and ``plan_for``
checks the request against its strategy before building the plan: every error a value, with
the status, message and ``param`` clients already rely on.

``continue`` is ``POST /cot/edit``'s strategy (the model continues the user's corrected
reasoning): it has no profile, settings block or ``safework.strategy`` value, so a chat request
never selects it; ``CotEditServing`` builds it through the same registry, with the
``/cot/edit`` request as its settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from safework.errors import NotFoundError, RequestError
from safework.search.prompts import protocol_messages
from safework.value_models.guided import GuidedDecoder

from ..alignment import Alignment
from ..cot.continuation import ROUTE as COT_ROUTE
from ..cot.continuation import ContinueReasoning
from ..cot.protocol import CotEditRequest
from ..fanout import FanOut
from ..generation import plain
from ..protocol import AlignmentOptions, SafeWorkOptions, SearchOptions
from ..search import SearchService
from .plan import Plan
from .protocol import ChatCompletionRequest

__all__ = [
    "STRATEGIES",
    "Services",
    "StrategyEntry",
    "check_profile",
    "plan_for",
    "profiles",
    "resolve",
    "split_profile",
]


@dataclass(frozen=True)
class Services:
    """What the strategies are built from: the server's value models and search backends."""

    alignment: Alignment
    search: SearchService


PlanFactory = Callable[[Services, ChatCompletionRequest, list[dict[str, Any]], str, Any], Plan]
"""``(services, request, messages, tenant, settings) -> Plan``; ``settings`` is the request's
block for the strategy (an instance of its settings model, or ``None``)."""


@dataclass(frozen=True)
class StrategyEntry:
    """One strategy: its factory and what it needs of the server and the request."""

    factory: PlanFactory
    settings: type[BaseModel] | None = None
    """The model of its settings block (``safework.<block>``), if it has one."""
    block: str | None = None
    """The ``SafeWorkOptions`` field holding that block; giving it selects the strategy."""
    unsupported: tuple[str, ...] = ()
    """Request fields it cannot honour, checked in this order (a 400 names the first)."""
    profile: str | None = None
    """When ``<model>:<name>`` selects it: what a 404 says is missing if it is off."""
    enabled: Callable[[Services], bool] = lambda _services: True
    """Whether this server can run it (a profile of a strategy that is off is a 404)."""


def _plain(
    services: Services,
    request: ChatCompletionRequest,
    messages: list[dict[str, Any]],
    tenant: str,
    settings: None,
) -> Plan:
    return Plan(plain, messages)


def _aligned(
    services: Services,
    request: ChatCompletionRequest,
    messages: list[dict[str, Any]],
    tenant: str,
    settings: AlignmentOptions | None,
) -> Plan:
    """One guided decoder per choice."""
    guidance = services.alignment.guidance_for(settings)
    decoders = [GuidedDecoder(guidance, request.question) for _ in range(request.n)]
    strategy = decoders[0] if request.n == 1 else FanOut(decoders)
    return Plan(strategy, messages, decoders=decoders)


def _search(
    services: Services,
    request: ChatCompletionRequest,
    messages: list[dict[str, Any]],
    tenant: str,
    settings: SearchOptions | None,
) -> Plan:
    """One search session per choice, on the tenant's view of the backend."""
    sessions = [
        services.search.session(settings, messages, request.question, False, tenant)
        for _ in range(request.n)
    ]
    strategy = sessions[0] if request.n == 1 else FanOut(sessions)
    return Plan(strategy, protocol_messages(messages), searches=sessions)


def _continue(
    services: Services,
    request: ChatCompletionRequest,
    messages: list[dict[str, Any]],
    tenant: str,
    settings: CotEditRequest,
) -> Plan:
    return Plan(ContinueReasoning(settings.edited_reasoning), messages, route=COT_ROUTE)


STRATEGIES: dict[str, StrategyEntry] = {
    "plain": StrategyEntry(_plain),
    "aligned": StrategyEntry(
        _aligned,
        settings=AlignmentOptions,
        block="alignment",
        unsupported=("logprobs", "response_format"),
        profile="no value models",
        enabled=lambda services: services.alignment.enabled,
    ),
    "search": StrategyEntry(
        _search,
        settings=SearchOptions,
        block="search",
        unsupported=("logprobs", "response_format", "continue_final_message"),
        profile="no search backend",
        enabled=lambda services: services.search.enabled,
    ),
    "continue": StrategyEntry(_continue, settings=CotEditRequest),
}


def profiles() -> tuple[str, ...]:
    """The strategies a model name's ``:<profile>`` suffix selects."""
    return tuple(name for name, entry in STRATEGIES.items() if entry.profile is not None)


def split_profile(model: str) -> tuple[str, str | None]:
    """``"m:aligned"`` -> ``("m", "aligned")``; ``"m"`` -> ``("m", None)``."""
    base, sep, profile = model.rpartition(":")
    if sep and profile in profiles():
        return base, profile
    return model, None


def check_profile(profile: str | None, services: Services, requested: str) -> None:
    """404 for a profile whose strategy is not configured on this server."""
    if profile is None:
        return
    entry = STRATEGIES[profile]
    if not entry.enabled(services):
        raise NotFoundError(
            f"The model `{requested}` does not exist: {entry.profile} configured.",
            param="model",
            code="model_not_found",
        )


def resolve(profile: str | None, options: SafeWorkOptions | None) -> str:
    """Explicit ``safework.strategy``, else the profile, else the strategy whose settings
    block is given, else ``plain``."""
    if options is not None and options.strategy is not None:
        return options.strategy
    if profile is not None:
        return profile
    given = [
        name
        for name, entry in STRATEGIES.items()
        if entry.block and getattr(options, entry.block, None) is not None
    ]
    if len(given) > 1:
        blocks = " and ".join(f"`{STRATEGIES[name].block}`" for name in given)
        raise RequestError(
            f"{'both ' if len(given) == 2 else ''}{blocks} are given: choose one with "
            "`safework.strategy`",
            param="safework.strategy",
        )
    return given[0] if given else "plain"


def _unsupported(request: ChatCompletionRequest, field_name: str) -> bool:
    """Whether the request asks for ``field_name``, which some strategies cannot honour."""
    if field_name == "response_format":
        return request.structured_output() is not None
    return bool(getattr(request, field_name))


def plan_for(
    name: str,
    services: Services,
    request: ChatCompletionRequest,
    messages: list[dict[str, Any]],
    tenant: str,
) -> Plan:
    """Strategy ``name``'s plan for a chat request: its unsupported fields refused first
    (400, ``param`` the field), then its settings block checked and applied by the factory."""
    entry = STRATEGIES[name]
    for field_name in entry.unsupported:
        if _unsupported(request, field_name):
            raise RequestError(
                f"`{field_name}` is not supported with the {name} strategy", param=field_name
            )
    options = request.safework
    settings = getattr(options, entry.block) if options is not None and entry.block else None
    return entry.factory(services, request, messages, tenant, settings)
