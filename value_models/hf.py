"""``hf:PATH``: any Hugging Face sequence-classification model as a value model.

Two kinds are understood:

* reward models (one output, e.g. Skywork-Reward): ``score = sigmoid(reward)``, the
  Bradley-Terry probability that the response beats a zero-reward baseline;
* classifiers (several labels, e.g. a toxicity or safety classifier):
  ``score = 1 - P(harmful labels)``; harmful labels are those named ``unsafe``, ``toxic``,
  ``harmful`` and similar, or the ones given explicitly with ``hf:PATH?bad=LABEL1,LABEL2``.
  Every label's probability is reported as a category.

The pair is formatted with the model's chat template when it has one (reward models expect
a conversation), else as a tokenizer text pair. Inference runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any
from urllib.parse import parse_qs

from safework.errors import ConfigError

from .base import ValueModel, ValueScore
from .registry import LoadContext

HARMFUL_LABEL = re.compile(r"unsafe|toxic|harm|offensive|hate|insult|threat|violen|nsfw|jailbreak")


def split_options(arg: str) -> tuple[str, dict[str, str]]:
    """``"path?bad=a,b&max_length=512"`` -> ``("path", {"bad": "a,b", "max_length": "512"})``."""
    path, _, query = arg.partition("?")
    return path, {k: v[-1] for k, v in parse_qs(query).items()}


class HFValueModel(ValueModel):
    def __init__(
        self, name: str, spec: str, model: Any, tokenizer: Any, bad: list[int], max_length: int
    ) -> None:
        self.name, self.spec = name, spec
        self.model, self.tokenizer = model, tokenizer
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        self.bad = bad
        self.max_length = max_length
        self._lock = threading.Lock()

    def _texts(self, prompts: list[str], responses: list[str]) -> dict[str, Any]:
        tok = self.tokenizer
        kw: dict[str, Any] = dict(
            padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        if getattr(tok, "chat_template", None):
            convs = [
                tok.apply_chat_template(
                    [{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                    tokenize=False,
                )
                for p, r in zip(prompts, responses, strict=True)
            ]
            return tok(convs, add_special_tokens=False, **kw)
        return tok(prompts, responses, **kw)

    def _score_sync(self, prompts: list[str], responses: list[str]) -> list[ValueScore]:
        import torch

        with self._lock, torch.inference_mode():
            batch = self._texts(prompts, responses).to(self.model.device)
            logits = self.model(**batch).logits.float()  # (B, num_labels)
        if logits.shape[-1] == 1:
            return [ValueScore(self.name, float(torch.sigmoid(x[0]))) for x in logits]
        probs = logits.softmax(-1)
        out = []
        for row in probs:
            harmful = float(sum(row[i] for i in self.bad))
            categories = {
                label: round(float(p), 4) for label, p in zip(self.labels, row, strict=True)
            }
            out.append(ValueScore(self.name, min(1.0, max(0.0, 1.0 - harmful)), categories))
        return out

    async def score(self, prompts: list[str], responses: list[str]) -> list[ValueScore]:
        if not prompts:
            return []
        return await asyncio.to_thread(self._score_sync, prompts, responses)


def _bad_labels(labels: list[str], explicit: str | None) -> list[int]:
    if explicit:
        wanted = [b.strip() for b in explicit.split(",") if b.strip()]
        missing = [b for b in wanted if b not in labels]
        if missing:
            raise ConfigError(f"labels {missing} are not among the model's labels {labels}")
        return [labels.index(b) for b in wanted]
    bad = [i for i, label in enumerate(labels) if HARMFUL_LABEL.search(label.lower())]
    if not bad:
        raise ConfigError(
            f"cannot tell which of the labels {labels} are harmful; name them: hf:PATH?bad=LABEL"
        )
    return bad


def load_hf(name: str, spec: str, arg: str, ctx: LoadContext) -> HFValueModel:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path, options = split_options(arg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path).eval().to(ctx.device)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{spec}: cannot load a sequence-classification model: {e}") from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    bad = [] if model.config.num_labels == 1 else _bad_labels(labels, options.get("bad"))
    max_length = int(options.get("max_length", 1024))
    return HFValueModel(name, spec, model, tokenizer, bad, max_length)
