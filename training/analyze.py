"""``safework-train analyze mi``: where a checkpoint's hidden states carry its reference answer.

For each prompt the checkpoint answers (greedy, or the answer given), and at every answer token
the mutual information between the hidden state of each chosen layer and the representation of
a reference response is estimated (``mi.py``: the estimator, its assumptions and bias;
``mi_states.py``: the states). Peaks are the tokens where it surges (a robust z-score rule);
each is labelled with its word (``mi_tokens.py``), and the share of peaks on a safety lexicon
says whether the model's safety shows inside it or only in its words.

Prompts (``prompts``): ``cot-sft`` (default) takes the dataset's dev rows (``data``, default the
built-in mix), half harmful requests whose reference is the row's safe answer, half maths
problems whose reference is the worked gold answer; ``answers=`` an eval's ``samples.jsonl``
takes that eval's answers to them instead of generating (what the pipeline does); or a JSONL
file of ``{"prompt": str | "messages": [...], "reference": str, "kind": "harmful" |
"capability" | any label, "answer": str (optional)}``.

Writes ``OUTPUT/mi.json`` (per prompt: words, estimates per layer, peaks; the summary per layer
and per kind) and the plots ``OUTPUT/mi_along.png`` (one answer, peaks marked and labelled)
and ``OUTPUT/peak_words.png`` (the words at peaks).

Run::

    safework-train analyze mi model=runs/safeladder/m3rl output=runs/mi/m3rl
    safework-train analyze mi prompts=my.jsonl layers=[-1] estimator=hsic
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safework.errors import ConfigError

__all__ = ["MIConfig", "run_mi"]


@dataclass
class MIConfig:
    """Settings of ``safework-train analyze mi``."""

    model: str = field(
        default="default",
        metadata={"help": "HF model folder, or 'default' for the embedded SmolLM2-135M"},
    )
    prompts: str = field(
        default="cot-sft",
        metadata={"help": "'cot-sft' (dev rows: harmful + maths) or a .jsonl of prompts"},
    )
    n: int = field(default=50, metadata={"help": "prompts to analyse (half of each kind)"})
    layers: list[int] = field(
        default_factory=list,
        metadata={"help": "hidden-state layers (0 = embeddings, -1 = last); [] = middle + last"},
    )
    estimator: str = field(default="gaussian", metadata={"help": "gaussian (nats) or hsic"})
    z: float = field(default=3.5, metadata={"help": "robust z-score a peak needs"})
    max_tokens: int = field(default=256, metadata={"help": "answer tokens generated"})
    batch_size: int = field(default=8, metadata={"help": "sequences per forward pass"})
    answers: Path | None = field(
        default=None,
        metadata={
            "help": "an eval's samples.jsonl: analyse its answers to the dataset's harmful and "
            "maths prompts instead of generating (prompts=cot-sft)"
        },
    )
    data: Path | None = field(
        default=None,
        metadata={"help": "dataset folder whose dev rows give prompts and references"},
    )
    lexicon: Path | None = field(
        default=None, metadata={"help": "safety words, one per line (default: the built-in)"}
    )
    output: Path = field(default=Path("runs/mi"), metadata={"help": "folder for mi.json, PNGs"})
    seed: int = field(default=0, metadata={"help": "which prompts are drawn"})
    cache: Path | None = field(default=None, metadata={"help": "cache root ($SAFEWORK_CACHE)"})

    def check(self) -> None:
        from .mi import ESTIMATORS

        if self.n < 1:
            raise ConfigError(f"n must be at least 1 (got {self.n})")
        if self.estimator not in ESTIMATORS:
            raise ConfigError(f"estimator {self.estimator!r}: choose from {', '.join(ESTIMATORS)}")
        for key in ("max_tokens", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1 (got {getattr(self, key)})")
        if self.z <= 0:
            raise ConfigError(f"z must be positive (got {self.z})")
        if self.answers is not None and not self.answers.is_file():
            raise ConfigError(f"answers {self.answers} is not a file (an eval's samples.jsonl)")
        if self.answers is not None and self.prompts != "cot-sft":
            raise ConfigError("answers= reads an eval of the dataset's prompts: leave prompts")
        if self.data is not None and not (self.data / "dev.jsonl").is_file():
            raise ConfigError(f"data {self.data} holds no dev.jsonl")
        if self.lexicon is not None and not self.lexicon.is_file():
            raise ConfigError(f"lexicon {self.lexicon} is not a file")
        if self.prompts != "cot-sft":
            path = Path(self.prompts).expanduser()
            if path.suffix != ".jsonl" or not path.is_file():
                raise ConfigError(f"prompts {self.prompts!r}: give 'cot-sft' or a .jsonl file")


@dataclass
class Prompt:
    id: str
    kind: str
    messages: list[dict[str, str]]
    reference: str
    answer: str | None = None


def _read_prompts(path: Path) -> list[Prompt]:
    from .rl_data import read_prompt_rows

    out = []
    for number, row, messages in read_prompt_rows(path):
        where = f"{path}:{number}"
        reference = row.get("reference")
        if not isinstance(reference, str) or not reference.strip():
            raise ConfigError(f"{where}: 'reference' must be a non-empty string")
        answer = row.get("answer")
        if answer is not None and not isinstance(answer, str):
            raise ConfigError(f"{where}: 'answer' must be a string")
        kind = str(row.get("kind") or "prompt")
        out.append(Prompt(str(row.get("id", number)), kind, messages, reference, answer))
    if not out:
        raise ConfigError(f"{path}: no prompts")
    return out


def _eval_answers(path: Path) -> dict[tuple[str, str], str]:
    """``(group, id) -> response`` of an eval's ``samples.jsonl``."""
    out = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            out[(str(record["group"]), str(record["id"]))] = str(record["response"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"{path}:{number}: not an eval sample record") from None
    return out


def _dataset_prompts(config: MIConfig) -> list[Prompt]:
    """Harmful and maths dev rows of the dataset, half each, seeded. The reference of a
    harmful prompt is the row's safe answer (after its reasoning), of a maths problem the
    whole worked answer. With ``answers``, only rows the eval answered, with its answers."""
    import random

    from .cot_texts import split_think
    from .data import ensure_dataset
    from .eval_tasks import load_dev

    rows = load_dev(config.data or ensure_dataset("cot-sft", config.cache))
    given = _eval_answers(config.answers) if config.answers is not None else None
    rng = random.Random(f"{config.seed}/mi")
    out: list[Prompt] = []
    half = config.n // 2
    shares = (
        ("harmful", "safety", "harmful", config.n - half),
        ("capability", "math", "math", half),
    )
    for kind, task, group, share in shares:
        pool = [r for r in rows if r["task"] == task]
        pool = [r for r in pool if not str(r.get("source", "")).startswith("jailbr")]
        if given is not None:
            pool = [r for r in pool if (group, str(r["id"])) in given]
        for row in rng.sample(pool, min(share, len(pool))):
            last = max(i for i, m in enumerate(row["messages"]) if m["role"] == "user")
            reply = row["messages"][last + 1]["content"]
            parts = split_think(reply)
            reference = parts[1] if parts and kind == "harmful" else reply
            answer = given[(group, str(row["id"]))] if given is not None else None
            messages = row["messages"][: last + 1]
            out.append(Prompt(str(row["id"]), kind, messages, reference, answer))
    if not out:
        raise ConfigError("no harmful or maths dev rows to analyse (or none the eval answered)")
    return out


def _n_layers(model_dir: Path) -> int:
    """The number of transformer blocks, from config.json (a VLM's text config)."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    text = config.get("text_config") or config
    n = text.get("num_hidden_layers")
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"{model_dir}/config.json does not say its num_hidden_layers")
    return n


def _generate(model: Any, tokenizer: Any, prompts: list[list[int]], config: MIConfig) -> list:
    """Greedy answers (token ids, cut after the end token), left-padded batches."""
    import torch

    pad = tokenizer.pad_token_id
    eos = tokenizer.eos_token_id
    out: list[list[int]] = []
    for start in range(0, len(prompts), config.batch_size):
        chunk = prompts[start : start + config.batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, p in enumerate(chunk):
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        with torch.no_grad():
            sequences = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=config.max_tokens,
                do_sample=False,
                pad_token_id=pad,
            )
        for row in sequences[:, width:].tolist():
            out.append(row[: row.index(eos) + 1] if eos in row else row)
    return out


def run_mi(config: MIConfig) -> dict[str, Any]:
    """Analyse the prompts, write ``mi.json`` and the plots, return the summary."""
    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from .mi import mi_along, peaks
    from .mi_states import Item, answer_states, default_layers, reference_states, resolve_layers
    from .mi_tokens import SAFETY_LEXICON, load_lexicon, words_of
    from .sft import resolve_model
    from .vision import load_causal_model

    config.check()
    started = time.monotonic()
    model_dir = resolve_model(config.model, config.cache)
    n_layers = _n_layers(model_dir)
    try:
        layers = resolve_layers(config.layers, n_layers) if config.layers else None
    except ValueError as e:
        raise ConfigError(f"layers: {e}") from None
    layers = layers or default_layers(n_layers)
    lexicon = load_lexicon(config.lexicon) if config.lexicon else SAFETY_LEXICON
    if config.prompts == "cot-sft":
        prompts = _dataset_prompts(config)
    else:
        prompts = _read_prompts(Path(config.prompts).expanduser())[: config.n]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_causal_model(model_dir, dtype=torch.float32).eval()

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    prompt_ids = [
        encode(tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True))
        for m in (p.messages for p in prompts)
    ]
    answers: list[list[int]] = [encode(p.answer) if p.answer is not None else [] for p in prompts]
    todo = [i for i, p in enumerate(prompts) if p.answer is None]
    clock = time.monotonic()
    generated = _generate(model, tokenizer, [prompt_ids[i] for i in todo], config) if todo else []
    for i, ids in zip(todo, generated, strict=True):
        answers[i] = ids
    generate_s = time.monotonic() - clock
    clock = time.monotonic()
    pad = tokenizer.pad_token_id
    items = [Item(p, a) for p, a in zip(prompt_ids, answers, strict=True)]
    refs = [Item(p, encode(q.reference)) for p, q in zip(prompt_ids, prompts, strict=True)]
    states = answer_states(model, items, layers, pad, config.batch_size)
    ref_states = reference_states(model, refs, layers, pad, config.batch_size)
    records = []
    for prompt, answer, own, ref in zip(prompts, answers, states, ref_states, strict=True):
        words = words_of(tokenizer, answer)
        record: dict[str, Any] = {
            "id": prompt.id,
            "kind": prompt.kind,
            "answer": tokenizer.decode(answer, skip_special_tokens=True),
            "words": words,
            "layers": {},
        }
        for layer in layers:
            values = (
                mi_along(own[layer], ref[layer], config.estimator)  # type: ignore[arg-type]
                if len(answer) > 1
                else np.zeros(len(answer))
            )
            at = peaks(values, config.z) if len(answer) > 2 else []
            record["layers"][str(layer)] = {
                "mi": [round(float(v), 6) for v in values],
                "peaks": at,
                "peak_words": [words[t] for t in at],
            }
        records.append(record)
    analyse_s = time.monotonic() - clock
    summary = _summary(records, layers, lexicon)
    config.output.mkdir(parents=True, exist_ok=True)
    result = {
        "model": str(model_dir),
        "estimator": config.estimator,
        "z": config.z,
        "layers": layers,
        "lexicon": sorted(lexicon),
        "prompts": len(records),
        "seconds": {
            "generate": round(generate_s, 1),
            "analyse": round(analyse_s, 1),
            "total": round(time.monotonic() - started, 1),
        },
        "summary": summary,
        "records": records,
    }
    (config.output / "mi.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    from .mi_plot import plot_mi

    plot_mi(result, config.output)
    return {k: v for k, v in result.items() if k not in ("records", "lexicon")}


def _summary(
    records: list[dict[str, Any]], layers: list[int], lexicon: frozenset[str]
) -> dict[str, Any]:
    """Per layer: the peak summary over all prompts and per kind."""
    from .mi_tokens import peak_summary

    out: dict[str, Any] = {}
    kinds = sorted({r["kind"] for r in records})
    for layer in layers:
        key = str(layer)

        def of(rows: list[dict[str, Any]], key: str = key) -> dict[str, Any]:
            words = [w for r in rows for w in r["layers"][key]["peak_words"]]
            tokens = sum(len(r["words"]) for r in rows)
            return peak_summary(words, lexicon, tokens)

        by_kind = {k: of([r for r in records if r["kind"] == k]) for k in kinds}
        out[key] = {"all": of(records), **by_kind}
    return out
