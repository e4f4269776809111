"""The ``search`` rows of the ``cot-sft`` mix: search-protocol transcripts for dev and train.

Questions come from ``search_qa.py`` (kinds weighted by ``search_mix``, default
``search_cot.SEARCH_MIX``); each transcript is the server's own loop on ``local:builtin`` with
a scripted writer (``search_cot.py``). Kept apart from ``mix.py`` because it loads the corpus,
the index and the sentence encoder, which the other rows never need.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from safework.errors import ConfigError
from safework.search.corpus import MANIFEST_NAME, ensure_builtin_corpus, iter_corpus_documents

from .data_config import DataConfig
from .mix import Row, derive_seed, quotas
from .search_cot import NO_RETRIEVE_FIRST, SEARCH_MIX, pick_questions, write_transcripts
from .search_qa import EVAL_SPLIT_SEED, fit_element_items, search_questions

__all__ = ["search_rows"]


def search_rows(config: DataConfig) -> tuple[list[Row], list[Row], dict[str, Any]]:
    """Search-protocol transcripts for dev and train (none when both sizes are 0)."""
    if not config.search_dev and not config.search_train:
        return [], [], {}
    corpus = ensure_builtin_corpus(config.cache)
    documents = iter_corpus_documents(corpus)
    pools = search_questions(documents, seed=config.seed, elements=fit_element_items(corpus))
    weights = config.search_mix or SEARCH_MIX
    try:
        dev_q, train_q = pick_questions(
            pools,
            quotas(config.search_dev, weights),
            quotas(config.search_train, weights),
            config.seed,
        )
    except ValueError as exc:
        raise ConfigError(f"search_train, search_dev: {exc}; lower them") from None
    split: dict[str, list[Row]] = {}
    outcomes: Counter[str] = Counter()
    for name, questions in (("dev", dev_q), ("train", train_q)):
        rows = []
        for t in write_transcripts(
            questions, derive_seed(config.seed, "search", name), cache=config.cache
        ):
            item = t.question.item
            outcomes[f"{name}: {item.kind}/{t.outcome}"] += 1
            meta = {
                "kind": item.kind,
                "answer": item.answer,
                "aliases": list(item.aliases),
                "doc_id": item.doc_id,
                "outcome": t.outcome,
                "confidence": t.confidence,
                "correct": t.correct,
                "searches": t.searches,
                "reads": t.reads,
                "retrieve_first": t.retrieve_first,
            }
            content = t.messages[-1]["content"]
            source = "safework/search-" + item.kind
            rows.append(Row("search", source, item.question, content, meta, t.messages))
        split[name] = rows
    manifest = json.loads((corpus / MANIFEST_NAME).read_text(encoding="utf-8"))
    info = {
        "backend": "local:builtin",
        "corpus": {"documents": manifest.get("documents"), "sources": manifest.get("sources")},
        "mix": weights,
        "no_retrieve_first": NO_RETRIEVE_FIRST,
        "outcomes": dict(sorted(outcomes.items())),
        "evaluation": (
            "element questions only from the fit half of split_qa(element_qa, 0.5, "
            f"seed={EVAL_SPLIT_SEED}); evaluation scores the other half"
        ),
    }
    return split["dev"], split["train"], info
