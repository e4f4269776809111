"""The engine interface every strategy and route talks to.

An ``Engine`` turns a tokenised prompt and a ``SamplingConfig`` into a stream of
``EngineOutput`` steps, one per scheduler iteration, each carrying the *new* text and
tokens of every choice (``n`` choices per request). It also owns the tokenizer side of the
model: chat templating (including continuing a final assistant message, which
``POST /cot/edit`` needs), tokenising and counting.

The server, value-model guidance and search loop depend only on this module, so unit tests
drive them with a small fake engine (``tests/fakes.py``) while production uses
``safework.engine.vllm_engine.VLLMEngine`` on vLLM's ``AsyncLLM``. The events a strategy
attaches to its steps are typed in ``events.py``; this module re-exports them.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from safework.errors import EngineDeadError

from .events import (
    AlignmentBeam,
    AlignmentDone,
    AlignmentStep,
    CandidateReport,
    Confidence,
    Event,
    SearchAnswer,
    SearchQuery,
    SearchRead,
)

__all__ = [
    "AlignmentBeam",
    "AlignmentDone",
    "AlignmentStep",
    "CandidateReport",
    "ChoiceDelta",
    "Confidence",
    "Engine",
    "EngineOutput",
    "Event",
    "FinishReason",
    "SamplingConfig",
    "SearchAnswer",
    "SearchQuery",
    "SearchRead",
    "StructuredOutput",
    "TokenLogprob",
    "TopLogprob",
    "derive_seed",
    "hide_placeholder",
]


def derive_seed(seed: int | None, *parts: object) -> int | None:
    """A seed for one part of a seeded job (a search turn, one rollout of a step): the same
    ``seed`` and ``parts`` always give the same 63-bit seed, different parts unrelated ones.
    ``None`` (an unseeded job) stays ``None``."""
    if seed is None:
        return None
    key = "/".join(map(str, (seed, *parts))).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


def hide_placeholder(text: str, markers: Sequence[str]) -> str:
    """``text`` with every image marker (the placeholder and its image token's text) broken
    by a space (``<image>`` -> ``< image>``), so typed text never stands for an image: only
    image parts put placeholders in a prompt."""
    for marker in markers:
        if len(marker) > 1:
            text = text.replace(marker, marker[0] + " " + marker[1:])
    return text


FinishReason = Literal["stop", "length", "abort"]


@dataclass(frozen=True)
class StructuredOutput:
    """Constrain the output to JSON: any object, or one matching ``json_schema``."""

    kind: Literal["json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


@dataclass
class SamplingConfig:
    """Engine-neutral sampling settings; each engine maps them onto its own parameters."""

    n: int = 1
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None
    """``None``: no logprobs; ``k >= 0``: the sampled token's logprob plus the top ``k``."""
    structured: StructuredOutput | None = None
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    cache_salt: str | None = None
    """Prefix-cache isolation: a request reuses cached prompt blocks only from requests with
    the same salt (the server gives each tenant its own), so ``cached_tokens`` cannot confirm
    another tenant's prompt. ``None``: the shared cache."""


@dataclass(frozen=True)
class TopLogprob:
    token: str
    logprob: float
    token_id: int | None = None

    def label(self, as_id: bool) -> str:
        return _label(self.token, self.token_id, as_id)


@dataclass(frozen=True)
class TokenLogprob:
    """The sampled token, its logprob, and the most likely alternatives at that position."""

    token: str
    logprob: float
    top: tuple[TopLogprob, ...] = ()
    token_id: int | None = None

    def label(self, as_id: bool) -> str:
        """The token as a client sees it: its text, or ``token_id:{id}`` (vLLM's
        ``return_tokens_as_token_ids``, for clients that compare exact token ids)."""
        return _label(self.token, self.token_id, as_id)


def _label(token: str, token_id: int | None, as_id: bool) -> str:
    return f"token_id:{token_id}" if as_id and token_id is not None else token


@dataclass(kw_only=True)
class ChoiceDelta:
    """What one choice produced since the previous step (built with keyword arguments)."""

    index: int
    text: str
    token_ids: Sequence[int]
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None
    stop_reason: str | int | None = None
    """The stop string or token id that ended the choice, when one did."""


@dataclass
class EngineOutput:
    """One step of a request: new output for the choices that advanced."""

    request_id: str
    prompt_tokens: int
    choices: list[ChoiceDelta]
    finished: bool
    cached_tokens: int = 0
    events: list[Event] = field(default_factory=list)
    """Structured events a strategy attaches to this step (a chosen reasoning step with its
    value scores, a search and its sources); the server forwards their ``to_json()`` in
    ``safework``."""


class Engine(abc.ABC):
    """An async text-generation backend serving one model."""

    model_id: str
    """The id clients use for this model (``/v1/models``)."""
    model_path: str | None = None
    """The local folder the weights were loaded from; ``None`` when there is none (a test
    engine, a policy held in memory)."""
    max_model_len: int
    """Context length: prompt plus completion tokens."""
    vocab_size: int | None = None
    """Token ids the model reads are ``0 .. vocab_size - 1``; ``None``: unknown, unchecked."""
    sampling_defaults: dict[str, Any] = {}  # noqa: RUF012 - replaced per instance, never mutated
    """Sampling settings the model's generation config recommends (e.g. temperature)."""
    control_tokens: tuple[str, ...] = ()
    """The strings the tokenizer reads as special or added markup tokens (``<|im_end|>``...),
    for ``engine.control_tokens.defuse``; empty when the engine does not know them."""

    image_placeholder: str | None = None
    """For a model that reads images: the text standing for one image in a prompt (``<image>``
    for Idefics3); ``None``: the model reads text only."""
    image_token_id: int | None = None
    """The token that stands for one image in prompt ids (vLLM expands each)."""
    image_markers: tuple[str, ...] = ()
    """Strings that would put an image token in a prompt (the placeholder, the image token's
    text): user text may not spell them."""

    @abc.abstractmethod
    def generate(
        self,
        prompt_token_ids: list[int],
        sampling: SamplingConfig,
        request_id: str,
        *,
        images: Sequence[Any] = (),
    ) -> AsyncIterator[EngineOutput]:
        """Stream the request's progress; closing the iterator early aborts the request.
        ``images`` (PIL images, RGB): one per ``image_token_id`` in the prompt, in order."""

    @abc.abstractmethod
    async def abort(self, request_id: str) -> None:
        """Stop a running request and free its resources (no-op if already finished)."""

    @abc.abstractmethod
    async def tokenize(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``."""

    @abc.abstractmethod
    async def render_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> str:
        """The prompt text for a conversation under the model's chat template.

        With ``continue_final_message`` the last (assistant) message is left open so the
        model continues it instead of starting a new turn.
        """

    @property
    def is_dead(self) -> bool:
        """The engine can no longer serve and will not recover (vLLM: its engine core process
        exited); the server then answers 503 and shuts down. Cheap: polled every second."""
        return False

    async def check_health(self) -> None:
        """Raise if the engine can no longer serve requests (``EngineDeadError`` when dead)."""
        if self.is_dead:
            raise EngineDeadError()

    async def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release processes and memory."""
