"""Prompts for the RL stages, each with a task label that routes it to reward terms.

Sources (``data=`` of ``safework-train rl``):

- ``cot-sft`` (default for ``m3rl`` and ``efficient``): the prompts of the built-in CoT mix
  (``safework-train data``), without their reference answers. Labels: ``math`` (reasoning-gym
  problems, with the dataset, gold answer and entry the scorer needs), ``safety`` (harmful
  requests) and ``benign`` (ordinary and risky-sounding but harmless requests). Training uses the
  ``train`` split; the held-out report uses ``dev``, the split ``safework-train eval`` reads.
- ``element-qa`` (default for ``search``): questions about the chemical elements with exact
  answers, generated from the built-in search corpus (``search/corpus.py``). Label ``search``;
  training uses the calibration-fitting half, the held-out report the other half.
- a dataset folder (``safework-train data output=DIR``; the pipeline's ``data`` section): its
  prompts, as for ``cot-sft``.
- a ``.jsonl`` file: one prompt per line, ``{"id", "label", "messages": [...] | "prompt": str,
  "meta": {...}}``; ``meta`` may carry ``answer`` (str or list), ``dataset`` and ``entry``
  (reasoning-gym) or ``ifeval`` (an IFEval prompt's fields). With a ``.dev.jsonl`` beside it
  (``x.jsonl`` -> ``x.dev.jsonl``) that file is the held-out set. ``"images": [paths]`` (one
  per ``<image>`` in the user turns, relative to the file) asks a vision-language policy about
  images, as in conversation rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safework.errors import ConfigError

__all__ = ["RLPrompt", "load_rl_prompts", "read_prompt_rows", "reward_meta"]

_META_KEYS = ("answer", "dataset", "entry", "ifeval")


@dataclass
class RLPrompt:
    id: str
    label: str
    messages: list[dict[str, str]]
    """The conversation up to the user turn the policy answers."""
    meta: dict[str, Any] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    """Image files, one per ``<image>`` marker of the user turns, in order (``vision.py``)."""

    @property
    def question(self) -> str:
        return self.messages[-1]["content"]


def reward_meta(prompts: list[RLPrompt]) -> dict[str, list[Any]]:
    """The per-sample meta lists the reward functions read (``rewards.py``)."""
    return {key: [p.meta.get(key) for p in prompts] for key in _META_KEYS}


def _from_conversation(row: dict[str, Any]) -> RLPrompt:
    messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    meta = dict(row.get("meta") or {})
    images = list(row.get("images") or [])  # load_conversations made them absolute
    return RLPrompt(str(row["id"]), str(row["task"]), messages[: last_user + 1], meta, images)


def _cot_sft(cache: Path | None, seed: int) -> tuple[list[RLPrompt], list[RLPrompt]]:
    from .data import ensure_dataset

    return _conversations(ensure_dataset("cot-sft", cache, seed))


def _conversations(folder: Path) -> tuple[list[RLPrompt], list[RLPrompt]]:
    """The prompts of a CoT dataset folder's train and dev rows; its search-protocol rows are
    left out (the search stage asks element questions, ``element-qa``)."""
    from .data import load_conversations

    def prompts(split: str) -> list[RLPrompt]:
        rows = load_conversations(folder / f"{split}.jsonl")
        return [_from_conversation(r) for r in rows if r.get("task") != "search"]

    return prompts("train"), prompts("dev")


def _element_qa(cache: Path | None) -> tuple[list[RLPrompt], list[RLPrompt]]:
    from safework.search.corpus import element_qa, ensure_builtin_corpus, split_qa

    from .search_qa import EVAL_SPLIT_SEED

    # the eval's split whatever the run's seed: another seed would train on its held-out half
    items = element_qa(ensure_builtin_corpus(cache))
    fit, held_out = split_qa(items, 0.5, seed=EVAL_SPLIT_SEED)

    def prompt(item: Any) -> RLPrompt:
        messages = [{"role": "user", "content": item.question}]
        return RLPrompt(item.id, "search", messages, {"answer": list(item.answers)})

    return [prompt(i) for i in fit], [prompt(i) for i in held_out]


def read_prompt_rows(path: Path) -> Iterator[tuple[int, dict[str, Any], list[dict[str, str]]]]:
    """Each non-blank line of a prompts JSONL as ``(line number, row, messages)``: a JSON
    object with ``prompt`` (text) or ``messages`` (role/content objects ending with a user
    turn); ``ConfigError`` naming ``file:line`` otherwise."""
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{where}: a row must be a JSON object")
            if isinstance(row.get("prompt"), str) and row["prompt"].strip():
                messages = [{"role": "user", "content": row["prompt"]}]
            elif isinstance(row.get("messages"), list) and row["messages"]:
                messages = row["messages"]
                ok = all(
                    isinstance(m, dict)
                    and m.get("role") in ("system", "user", "assistant")
                    and isinstance(m.get("content"), str)
                    for m in messages
                )
                if not ok or messages[-1]["role"] != "user":
                    raise ConfigError(
                        f"{where}: 'messages' must be role/content objects ending with a user turn"
                    )
            else:
                raise ConfigError(f"{where}: give 'prompt' (text) or 'messages' (a list)")
            yield number, row, messages


def _read_jsonl(path: Path) -> list[RLPrompt]:
    out: list[RLPrompt] = []
    seen: set[str] = set()
    for number, row, messages in read_prompt_rows(path):
        where = f"{path}:{number}"
        label = row.get("label")
        if not isinstance(label, str) or not label:
            raise ConfigError(f"{where}: 'label' must be a non-empty string")
        meta = row.get("meta") or {}
        if not isinstance(meta, dict):
            raise ConfigError(f"{where}: 'meta' must be an object")
        rid = str(row.get("id", f"{path.stem}-{number}"))
        if rid in seen:
            raise ConfigError(f"{where}: duplicate id {rid!r}")
        seen.add(rid)
        images = _images(path, number, {"messages": messages, "images": row.get("images")})
        out.append(RLPrompt(rid, label, messages, meta, images))
    return out


def _images(path: Path, number: int, row: dict[str, Any]) -> list[str]:
    """A prompt row's image files, checked as a conversation's are (``data.py``)."""
    from .data import image_files, images_problem

    problem = images_problem(row)
    if problem:
        raise ConfigError(f"{path}:{number}: {problem}")
    return image_files(path, number, row["images"]) if row["images"] else []


def load_rl_prompts(
    data: str, cache: Path | None = None, seed: int = 0
) -> tuple[list[RLPrompt], list[RLPrompt]]:
    """``(train, held_out)`` prompts of a source (see the module docstring)."""
    if data == "cot-sft":
        return _cot_sft(cache, seed)
    if data == "element-qa":
        return _element_qa(cache)
    path = Path(data).expanduser()
    if path.is_dir():
        if not (path / "train.jsonl").is_file():
            raise ConfigError(
                f"data folder {path} has no train.jsonl (a `safework-train data` output)"
            )
        return _conversations(path)
    if path.suffix != ".jsonl":
        raise ConfigError(
            f"data={data!r}: use 'cot-sft', 'element-qa', a dataset folder or a prompts file "
            "(.jsonl)"
        )
    if not path.is_file():
        raise ConfigError(f"data file {path} does not exist")
    train = _read_jsonl(path)
    dev_path = path.with_suffix(".dev.jsonl")
    if dev_path.is_file():
        return train, _read_jsonl(dev_path)
    return train, []
