"""Ask a served checkpoint the search questions of one kind that its training data never asked.

    .venv/bin/safework serve --model runs/safeladder/search &
    .venv/bin/python bench/search_unseen.py --model search --kind prose \
        --exclude-data runs/safeladder/data [--n 40] [--seed 0] [--out answers.json]

The questions come from the same generators as the search cold start (``training/search_qa.py``
on the built-in corpus), less every question in the ``--exclude-data`` dataset's rows, so a
checkpoint trained on some of a kind is scored on the rest of it; passing the same folder for two
checkpoints asks both the same questions. Each goes through the ``:search`` profile; an answer
counts as right by the question's own rule (``QAItem.is_correct``). Prints one line per question,
then how many were right and how many went through the model's own protocol, not the fallback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI

from safework.search.corpus import ensure_builtin_corpus, iter_corpus_documents
from safework.training.search_qa import KINDS, fit_element_items, search_questions
from safework.value_models.data import normalize


def trained_prompts(folder: Path) -> set[str]:
    """The normalized first user turn of every row in ``folder``'s train and dev splits."""
    seen = set()
    for split in ("train.jsonl", "dev.jsonl"):
        for line in (folder / split).read_text(encoding="utf-8").splitlines():
            messages = json.loads(line)["messages"]
            seen.update(normalize(m["content"]) for m in messages[:2] if m["role"] == "user")
    return seen


async def ask_all(args: argparse.Namespace, questions: list[Any]) -> list[dict[str, Any]]:
    client = AsyncOpenAI(base_url=args.base_url, api_key=args.api_key, timeout=900)
    gate = asyncio.Semaphore(args.concurrency)

    async def one(q: Any) -> dict[str, Any]:
        async with gate:
            r = await client.chat.completions.create(
                model=f"{args.model}:search",
                messages=[{"role": "user", "content": q.item.question}],
                max_tokens=args.max_tokens,
                temperature=0,
            )
        search = (r.model_extra or {}).get("safework", {}).get("search", {})
        answer = search.get("answer") or r.choices[0].message.content or ""
        return {
            "question": q.item.question,
            "expected": q.item.answer,
            "answer": answer,
            "right": q.item.is_correct(answer),
            "protocol": search.get("protocol"),
            "confidence": (search.get("confidence") or {}).get("calibrated"),
        }

    return list(await asyncio.gather(*(one(q) for q in questions)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="sk-local")
    parser.add_argument("--model", required=True, help="the served model's name")
    parser.add_argument("--kind", choices=KINDS, default="prose")
    parser.add_argument("--exclude-data", type=Path, required=True, help="a built dataset folder")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, help="write every answer as JSON here")
    args = parser.parse_args(argv)

    corpus = ensure_builtin_corpus()
    pools = search_questions(iter_corpus_documents(corpus), elements=fit_element_items(corpus))
    seen = trained_prompts(args.exclude_data)
    unseen = [q for q in pools[args.kind] if normalize(q.item.question) not in seen]
    questions = random.Random(args.seed).sample(unseen, min(args.n, len(unseen)))
    print(f"{args.kind}: {len(unseen)} of {len(pools[args.kind])} questions never trained on")

    rows = asyncio.run(ask_all(args, questions))
    for row in rows:
        flat = " ".join(row["answer"].split())[:70]
        mark = "ok" if row["right"] else "NO"
        print(f"{mark} {row['protocol'] or '-':8} {row['question'][:60]:60} | {flat}")
    right = sum(row["right"] for row in rows)
    model = sum(row["protocol"] == "model" for row in rows)
    n = len(rows)
    print(f"\n{args.kind}: {right}/{n} right, {model}/{n} through the model's own protocol")
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
