"""Pydantic models shared by every OpenAI route: the base model, errors, usage, options.

Requests accept unknown fields (a newer SDK may send them) and log them once per request;
SafeWork's own additions live in one fenced ``safework`` block, which *is* strict, so a typo
in our namespace is a 400 rather than a silently ignored setting.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

logger = logging.getLogger("safework.server")


def random_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class OpenAIBaseModel(BaseModel):
    """Accepts and logs fields it does not know, as the OpenAI API tolerates new ones."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _log_unknown_fields(self) -> OpenAIBaseModel:
        if self.model_extra:
            logger.info(
                "ignoring unknown fields in %s: %s", type(self).__name__, sorted(self.model_extra)
            )
        return self


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """The OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorInfo
    status_code: int = Field(default=400, exclude=True)
    headers: dict[str, str] = Field(default_factory=dict, exclude=True)
    """Response headers beside the body (``Retry-After`` on a 429)."""

    @classmethod
    def of(cls, exc: Any) -> ErrorResponse:
        """From a ``safework.errors.RequestError`` or ``EngineError``."""
        return cls(
            error=ErrorInfo(
                message=getattr(exc, "message", str(exc)),
                type=exc.type,
                param=getattr(exc, "param", None),
                code=getattr(exc, "code", None),
            ),
            status_code=exc.status_code,
            headers=dict(getattr(exc, "headers", {})),
        )


class StreamOptions(StrictModel):
    include_usage: bool = False


class JSONSchemaFormat(BaseModel):
    name: str = Field(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(populate_by_name=True)


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_needed(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type json_schema needs a `json_schema` object")
        return self


class ValueModelSetting(StrictModel):
    weight: float = Field(default=1.0, ge=0.0, le=1.0, description="Weight in the total score.")
    threshold: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Hard constraint: candidates below are dropped."
    )


class AlignmentOptions(StrictModel):
    """Guided decoding settings (``safework.alignment``); unset fields use the server's."""

    value_models: dict[str, ValueModelSetting] | None = Field(
        default=None,
        description="Configured value models to use, with weights (summing to 1) and thresholds.",
    )
    candidates: int | None = Field(default=None, ge=1, description="Candidates per step (K).")
    beam_width: int | None = Field(default=None, ge=1, description="Partial answers kept (B).")
    step_delimiter: str | None = Field(
        default=None, min_length=1, max_length=16, description="Text that ends a step."
    )
    max_steps: int | None = Field(default=None, ge=1, le=256)
    retries: int | None = Field(default=None, ge=0, le=8, description="Resamples before steering.")
    mode: Literal["cascade", "exhaustive"] | None = Field(
        default=None,
        description="cascade: K candidates for the first step, then one stream resampled only "
        "where a step fails; exhaustive: K candidates at every step (needed for beams).",
    )
    first_step_tokens: int | None = Field(
        default=None, ge=1, le=512, description="Cascade: token cap of the first step's K."
    )
    score_every_max: int | None = Field(
        default=None, ge=1, le=16, description="Cascade: most steps one score may cover."
    )
    gate_first_step: bool | None = Field(
        default=None,
        description="Cascade: one first-step candidate (K only if it fails) when the prompt "
        "classifier finds the request harmless.",
    )
    steer_first_step: bool | None = Field(
        default=None,
        description="Cascade: steer (instead of refusing) when every first-step candidate of a "
        "request the prompt classifier flagged fails; a request it passed is always steered "
        "once first.",
    )

    @field_validator("value_models")
    @classmethod
    def _weights_sum_to_one(
        cls, v: dict[str, ValueModelSetting] | None
    ) -> dict[str, ValueModelSetting] | None:
        if v:
            total = sum(s.weight for s in v.values())
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"value model weights must sum to 1 (they sum to {total:g})")
        return v


class SearchOptions(StrictModel):
    """Deliberative search settings (``safework.search``); unset fields use the server's."""

    backend: str | None = Field(
        default=None, max_length=64, description="A configured backend by name (default: first)."
    )
    max_turns: int | None = Field(default=None, ge=1, le=64, description="Model turns at most.")
    top_k: int | None = Field(default=None, ge=1, le=50, description="Results shown per search.")
    read: bool | None = Field(default=None, description="Allow reading whole documents.")
    retrieve_first: bool | None = Field(
        default=None, description="Search the question before the model's first turn."
    )
    min_similarity: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="Drop results less similar to the query."
    )
    confidence: Literal["auto", "stated", "logprob", "agreement"] | None = Field(
        default=None,
        description="Where the raw confidence comes from: `auto` = stated, else answer-token "
        "probability.",
    )
    samples: int | None = Field(default=None, ge=2, le=16, description="For `agreement`.")
    prior_check: bool | None = Field(
        default=None, description="Compare with the model's closed-book answer in the trace."
    )
    verbal_confidence: bool | None = Field(
        default=None,
        description="Word the answer by its calibrated confidence: `I'm confident: ...` (at "
        "least 0.8), `The sources suggest ...` (0.5 to 0.8), `I could not verify this. ...` "
        "(below 0.5).",
    )


class MemoryOptions(StrictModel):
    """Correction memory at inference (``safework.memory``); unset fields use the server's."""

    enabled: bool | None = Field(
        default=None, description="Give the model this tenant's closest past corrections."
    )
    top_k: int | None = Field(default=None, ge=1, le=10, description="Corrections at most.")
    min_similarity: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="Only corrections at least this similar."
    )
    mistakes: bool | None = Field(
        default=None,
        description="Check the first reasoning steps against this tenant's corrected mistakes "
        "while the answer is generated (plain decoding, one choice) and replace a step that "
        "repeats one by its correction. Default: on when memory is.",
    )
    mistake_similarity: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="How similar a step must be to a corrected mistake to be replaced.",
    )


class SafeWorkOptions(StrictModel):
    """SafeWork's request extensions (``"safework": {...}``); every field is optional."""

    strategy: Literal["plain", "aligned", "search"] | None = Field(
        default=None,
        description="How the answer is produced: `plain` decoding, `aligned` (value models "
        "choose each reasoning step) or `search` (deliberative search). Default: from the "
        "model profile (`<model>:aligned`, `<model>:search`), else the strategy whose block "
        "is given, else `plain`.",
    )
    alignment: AlignmentOptions | None = None
    search: SearchOptions | None = None
    memory: MemoryOptions | None = None


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class UsageInfo(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None

    @classmethod
    def of(cls, prompt: int, completion: int, cached: int = 0) -> UsageInfo:
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
        )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=now)
    owned_by: str = "safework"
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


StopField = str | list[str] | None
