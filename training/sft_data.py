"""Conversations as token ids with an assistant-only loss mask, and length-grouped batches.

A conversation is rendered once with the model's chat template and tokenized once; the loss
mask comes from character spans: for each assistant message ``i`` the span runs from the end of
``render(messages[:i], add_generation_prompt=True)`` to the end of ``render(messages[:i+1])``,
so it covers exactly what the model writes in that turn (reasoning, answer and the end-of-turn
token) and never the system prompt, the user's text or the role headers. A token is trained on
when its first character lies in a span. Templates whose renderings are not prefixes of each
other cannot be masked this way, and are refused with the reason.

An assistant message may also list ``masked``: ``[start, end)`` character spans of its
``content`` that the model did not write (a search transcript's ``<information>`` blocks, which
the server inserts; ``training/search_cot.py``). Their tokens get -100 too, though they sit
inside the assistant turn, so the model is conditioned on them but never trained to produce
them (as the RL search stage masks them, ``rollout.py``). The content must appear verbatim in
the rendering to be located; a template that rewrites it is refused.

Labels use -100 for masked positions (the ignore index of ``torch.nn.functional.cross_entropy``);
sequences longer than ``max_length`` are cut from the right, and a conversation left with no
assistant token is dropped (and counted).

Rows with images (``vision.py``): each ``<image>`` marker of a user turn becomes the image's
token run (masked), and ``collate`` adds the batch's image tensors.

Batches group similar lengths (sort within windows of ``64 * batch_size`` shuffled examples) so
padding stays small, then come in a shuffled order; the order is a pure function of
``(seed, epoch)``, which is what lets a resumed run continue from the exact batch it stopped at.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from safework.engine.reasoning import CLOSE_TAG
from safework.errors import ConfigError

from .vision import Vision

__all__ = [
    "IGNORE_INDEX",
    "Encoded",
    "assistant_spans",
    "batch_order",
    "collate",
    "encode_conversation",
    "encode_dataset",
    "masked_spans",
]

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Encoded:
    """One tokenized conversation: ``labels[i]`` is ``input_ids[i]`` or ``IGNORE_INDEX``;
    ``images``: the files whose token runs ``input_ids`` holds, in order."""

    input_ids: list[int]
    labels: list[int]
    images: tuple[str, ...] = ()
    opening: tuple[int, ...] = ()
    """Positions of each answer's first tokens after its reasoning (``answer_tokens`` of
    them, whitespace skipped): what ``answer_weight`` weighs in the loss."""

    @property
    def trained_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


def _render(tokenizer: Any, messages: Sequence[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=generation_prompt
    )


def assistant_spans(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[str, list]:
    """The rendered text and the ``(start, end)`` character spans of assistant turns."""
    text = _render(tokenizer, messages, False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], True) if i else ""
        upto = _render(tokenizer, messages[: i + 1], False)
        if not (text.startswith(upto) and upto.startswith(before)):
            raise ConfigError(
                "the chat template does not render conversations as prefixes of each other, "
                "so assistant tokens cannot be found; use a model whose template does (set "
                "chat_template=FILE to a Jinja template)"
            )
        spans.append((len(before), len(upto)))
    return text, spans


def masked_spans(
    text: str, spans: Sequence[tuple[int, int]], messages: Sequence[dict[str, Any]]
) -> list[tuple[int, int]]:
    """The rendered ``text``'s character spans that assistant messages list as ``masked``
    (spans of their content), given the assistant ``spans`` of ``assistant_spans``."""
    out: list[tuple[int, int]] = []
    assistants = [m for m in messages if m["role"] == "assistant"]
    for message, (start, end) in zip(assistants, spans, strict=True):
        masked = message.get("masked") or []
        if not masked:
            continue
        at = text.find(message["content"], start, end)
        if at < 0:
            raise ConfigError(
                "the chat template rewrites an assistant message that lists masked spans, so "
                "the spans cannot be located; use a template that renders content verbatim"
            )
        for lo, hi in masked:
            if not 0 <= lo <= hi <= len(message["content"]):
                raise ConfigError(f"masked span {[lo, hi]} is outside the message's content")
            out.append((at + lo, at + hi))
    return sorted(out)


def encode_conversation(
    tokenizer: Any,
    messages: Sequence[dict[str, Any]],
    max_length: int,
    *,
    images: Sequence[str] = (),
    vision: Vision | None = None,
    answer_tokens: int = 0,
) -> Encoded:
    """Token ids and labels of one conversation (assistant tokens only, less the ``masked``
    spans), cut to ``max_length``. On a vision-language model (``vision``) each ``<image>``
    marker of a user turn takes the token run of the next of ``images`` (never trained on); a
    conversation whose cut would split an image is returned empty (dropped)."""
    if images and vision is None:
        raise ConfigError("a conversation has images but the model does not read images")
    if vision is not None:
        messages = vision.render_messages(messages, len(images))
    text, spans = assistant_spans(tokenizer, messages)
    masked = masked_spans(text, spans, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    offsets = enc["offset_mapping"]
    labels = [IGNORE_INDEX] * len(ids)
    span_iter = iter(spans)
    span = next(span_iter, None)
    for pos, (start, _end) in enumerate(offsets):
        while span is not None and start >= span[1]:
            span = next(span_iter, None)
        if span is None:
            break
        if span[0] <= start < span[1] and not any(lo <= start < hi for lo, hi in masked):
            labels[pos] = ids[pos]
    opening = _answer_openings(text, spans, offsets, labels, answer_tokens)
    if images:
        assert vision is not None
        from .vision import open_image

        at = [pos for pos, t in enumerate(ids) if t == vision.image_token_id]
        ids, runs = vision.expand(ids, [open_image(path) for path in images])
        grown: list[int] = []
        last = 0
        for pos, (lo, hi) in zip(at, runs, strict=True):  # image runs are never labels
            grown += labels[last:pos] + [IGNORE_INDEX] * (hi - lo)
            last = pos + 1
        labels = grown + labels[last:]
        if runs[-1][1] > max_length:
            return Encoded([], [], tuple(images))
        opening = ()  # positions moved with the image runs; not weighed on image rows
    kept = tuple(pos for pos in opening if pos < max_length)
    return Encoded(ids[:max_length], labels[:max_length], tuple(images), kept)


def _answer_openings(
    text: str,
    spans: Sequence[tuple[int, int]],
    offsets: Sequence[tuple[int, int]],
    labels: Sequence[int],
    n: int,
) -> tuple[int, ...]:
    """Token positions of the first ``n`` trained, non-whitespace tokens after each assistant
    span's ``</think>`` (none for a span without one)."""
    if n <= 0:
        return ()
    out: list[int] = []
    for lo, hi in spans:
        close = text.find(CLOSE_TAG, lo, hi)
        if close < 0:
            continue
        begin, taken = close + len(CLOSE_TAG), 0
        for pos, (start, end) in enumerate(offsets):
            if taken == n or start >= hi:
                break
            if start >= begin and labels[pos] != IGNORE_INDEX and text[start:end].strip():
                out.append(pos)
                taken += 1
    return tuple(out)


def encode_dataset(
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    max_length: int,
    vision: Vision | None = None,
    answer_tokens: int = 0,
) -> tuple[list[Encoded], int]:
    """Every row's encoding, and how many rows were dropped for having no assistant token
    (within ``max_length``, whole images included); ``answer_tokens``: how many of each
    answer's first tokens to mark (``Encoded.opening``)."""
    out: list[Encoded] = []
    dropped = 0
    for row in rows:
        item = encode_conversation(
            tokenizer,
            row["messages"],
            max_length,
            images=row.get("images") or (),
            vision=vision,
            answer_tokens=answer_tokens,
        )
        if item.trained_tokens == 0:
            dropped += 1
            continue
        out.append(item)
    return out, dropped


def batch_order(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, *, group_by_length: bool = True
) -> list[list[int]]:
    """The batches of one epoch as lists of example indices (deterministic in seed, epoch)."""
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        window = 64 * batch_size
        order = [
            i
            for w in range(0, len(order), window)
            for i in sorted(order[w : w + window], key=lambda j: -lengths[j])
        ]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(
    items: Sequence[Encoded],
    pad_id: int,
    vision: Vision | None = None,
    answer_weight: float = 1.0,
) -> dict[str, Any]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` tensors of a batch, and
    the image tensors of its rows' images (``Vision.pixel_inputs``) when it has any. With an
    ``answer_weight`` other than 1, also ``loss_weights``: 1 per token, that weight at each
    row's ``opening`` positions."""
    import torch

    width = max(len(item.input_ids) for item in items)
    n = len(items)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for row, item in enumerate(items):
        k = len(item.input_ids)
        input_ids[row, :k] = torch.tensor(item.input_ids)
        labels[row, :k] = torch.tensor(item.labels)
        mask[row, :k] = 1
    batch = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
    if answer_weight != 1.0:
        weights = torch.ones((n, width), dtype=torch.float32)
        for row, item in enumerate(items):
            if item.opening:
                weights[row, list(item.opening)] = answer_weight
        batch["loss_weights"] = weights
    if vision is not None and any(item.images for item in items):
        from .vision import open_image

        batch |= vision.pixel_inputs([[open_image(p) for p in item.images] for item in items])
    return batch
