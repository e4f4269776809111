"""Request fields shared by chat and text completions, and their conversion to engine settings.

Precedence, as in vLLM: a field the request sets, else the model's generation config
(``Engine.sampling_defaults``, e.g. a recommended temperature), else the OpenAI default.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from safework.engine.base import SamplingConfig, StructuredOutput
from safework.errors import ContextLengthError, RequestError

from .protocol import OpenAIBaseModel, SafeWorkOptions, StreamOptions

SEED_MAX = 2**63 - 1
OPENAI_DEFAULTS: dict[str, Any] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}


class SamplingRequest(OpenAIBaseModel):
    """OpenAI sampling fields common to ``/v1/chat/completions`` and ``/v1/completions``."""

    model: str | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    n: int = Field(default=1, ge=1, le=128)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = Field(default=None, ge=-SEED_MAX, le=SEED_MAX)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    user: str | None = Field(default=None, max_length=256)

    # --- SafeWork and vLLM extensions -------------------------------------------------
    safework: SafeWorkOptions | None = Field(
        default=None, description="SafeWork extensions: strategy, alignment, search, memory."
    )
    ignore_eos: bool = Field(
        default=False, description="vLLM extension: keep generating past end-of-sequence."
    )
    return_tokens_as_token_ids: bool = Field(
        default=False,
        description="vLLM extension: logprob tokens as 'token_id:{id}', exact where a token's "
        "text is ambiguous or not valid UTF-8 on its own.",
    )

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> str | list[str] | None:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 16:
            raise ValueError("at most 16 stop sequences")
        if any(s == "" for s in stops):
            raise ValueError("stop sequences must not be empty")
        return v

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> SamplingRequest:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self

    @property
    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def to_sampling_config(
        self,
        *,
        max_tokens: int,
        logprobs: int | None,
        defaults: dict[str, Any],
        structured: StructuredOutput | None = None,
    ) -> SamplingConfig:
        def pick(name: str) -> Any:
            value = getattr(self, name)
            if value is not None:
                return value
            return defaults.get(name, OPENAI_DEFAULTS[name])

        return SamplingConfig(
            n=self.n,
            max_tokens=max_tokens,
            temperature=pick("temperature"),
            top_p=pick("top_p"),
            seed=self.seed,
            stop=self.stop_list,
            presence_penalty=pick("presence_penalty"),
            frequency_penalty=pick("frequency_penalty"),
            logprobs=logprobs,
            structured=structured,
            ignore_eos=self.ignore_eos,
        )


def resolve_max_tokens(
    requested: int | None,
    prompt_tokens: int,
    max_model_len: int,
    param: str,
    cap: int | None = None,
) -> int:
    """Completion budget: the request's, checked against the server's ``cap``
    (``--max-tokens-cap``) and the context, else what is left of the context, at most ``cap``.

    >>> resolve_max_tokens(None, 10, 100, "max_tokens"), resolve_max_tokens(None, 10, 100, "x", 50)
    (90, 50)
    """
    room = max_model_len - prompt_tokens
    if room <= 0:
        raise ContextLengthError(
            f"This model's maximum context length is {max_model_len} tokens, but the prompt "
            f"has {prompt_tokens} tokens. Please shorten the prompt."
        )
    if requested is None:
        return room if cap is None else min(room, cap)
    if cap is not None and requested > cap:
        raise RequestError(
            f"{param}={requested} is more than this server generates for one request ({cap} "
            f"tokens); ask for at most {cap}.",
            param=param,
        )
    if requested > room:
        raise ContextLengthError(
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {prompt_tokens + requested} tokens ({prompt_tokens} in the prompt, "
            f"{requested} for the completion). Please reduce the prompt or {param}.",
            param=param,
        )
    return requested
