"""Mistakes as keys: related-task accuracy with the memory off, recall by question, and recall by
the model's own draft (``server/memory/watch.py``), and what each costs per answer.

The set (``bench/data/memory_mistakes.json``): 31 mistakes SmolLM2-135M-Instruct makes when
asked directly (recorded from its greedy float32 answers: 19 wrong capitals, 12 wrong facts such
as "A standard guitar has 10 strings"), each with the user's one-sentence correction and three
*different* later questions that lean on the same fact ("Which city is the seat of the
government of Turkey?", "How many tuning pegs does a standard guitar have?"), 93 in all; and
20 control questions the model answers right (12 of them capitals, the hardest negatives).

What runs: one ``safework serve`` (the default model, a fresh memory folder, one API key);
each correction is posted to ``/cot/edit`` as a user would (the model's answer as
``reasoning``, the fix as ``edited_reasoning``); then every related and control question is
asked under each condition, greedy:

- ``off``:       ``safework.memory.enabled = false``
- ``question``:  recall by question only (``mistakes: false``): the closest corrections in the
                 system message, as before mistake keys
- ``mistake@T``: both: recall by question, and each draft's first steps checked against the
                 mistake keys at similarity T (a repeated mistake replaced by its correction)
- ``mistake-only@T``: the draft check alone (``min_similarity: 1.0``: no recall by question)

Printed: accuracy of each (answer contains the gold answer, ``answer_matches``), how many
answers had a mistake hit and how many of those hit *another* fact's correction, the controls'
accuracy and false hits, and the cost: mean and p50 seconds per answer, completion tokens.
Then the choice of the key: on the ``off`` drafts, the similarity of each wrong draft's steps
to its own mistake, keyed by the replaced *step* or by the *whole* reasoning, against the best
similarity of any control draft step to any key: per threshold, the share of wrong drafts
caught and of control drafts hit.

Run (about 15 minutes on 2 idle cores)::

    .venv/bin/python bench/memory_mistakes.py
    .venv/bin/python bench/memory_mistakes.py --json bench/results/memory-mistakes.json
    .venv/bin/python bench/memory_mistakes.py --thresholds 0.8,0.65,0.6   # ~10 more min each
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from common import source_revision, vllm_version

from safework.memory.mistakes import mistake_step, split_steps
from safework.search.answers import answer_matches

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data" / "memory_mistakes.json"
KEY = "sk-bench-mistakes-01"
MODEL = "smollm2-135m-instruct"
BASE_CONDITIONS: dict[str, dict[str, Any]] = {
    "off": {"enabled": False},
    "question": {"mistakes": False},
}


def conditions(thresholds: list[float]) -> dict[str, dict[str, Any]]:
    """``off`` and ``question``, then ``mistake`` and ``mistake-only`` at each threshold."""
    out = dict(BASE_CONDITIONS)
    for t in thresholds:
        out[f"mistake@{t}"] = {"mistake_similarity": t}
        out[f"mistake-only@{t}"] = {"mistake_similarity": t, "min_similarity": 1.0}
    return out


THRESHOLDS = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(home: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "SAFEWORK_API_KEYS": f"{KEY}:bench"}
    cmd = [
        sys.executable, "-m", "safework.cli", "serve", "--port", str(port),
        "--memory-dir", str(home / "memory"), *extra,
    ]  # fmt: skip
    log = (home / "serve.log").open("wb")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    os.killpg(process.pid, signal.SIGKILL)
    raise SystemExit(f"safework serve did not start:\n{(home / 'serve.log').read_text()[-3000:]}")


def ask(
    http: httpx.Client, question: str, memory: dict[str, Any], max_tokens: int
) -> dict[str, Any]:
    started = time.perf_counter()
    r = http.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": question}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "safework": {"memory": memory},
        },
    )
    r.raise_for_status()
    data = r.json()
    hits = ((data.get("safework") or {}).get("memory") or {}).get("hits", [])
    return {
        "content": data["choices"][0]["message"]["content"] or "",
        "seconds": time.perf_counter() - started,
        "tokens": data["usage"]["completion_tokens"],
        "question_hits": sum(h["kind"] == "question" for h in hits),
        "mistake_hits": sum(h["kind"] == "mistake" for h in hits),
        "mistake_ids": [h["id"] for h in hits if h["kind"] == "mistake"],
    }


def key_choice(
    items: list[dict], controls: list[dict], runs: dict, steps: int
) -> dict[str, dict[str, Any]]:
    """Per key kind, per threshold: the share of wrong ``off`` drafts whose first ``steps`` steps
    reach their own mistake's key, and of control drafts reaching any key."""
    from safework.engine.embedder import get_embedder

    embed = get_embedder().encode
    keys = {
        "step": [mistake_step(i["reasoning"], i["corrected"]).mistake for i in items],
        "whole": [" ".join(split_steps(i["reasoning"])) for i in items],
    }
    out: dict[str, dict[str, Any]] = {}
    for kind, texts in keys.items():
        key_vectors = np.asarray(embed(texts))  # (K, dim), unit rows
        own, any_control = [], []
        for n, item in enumerate(items):
            for q in item["related"]:
                answer = runs["off"][q]["content"]
                if answer_matches(answer, item["answer"]):
                    continue  # the mistake did not recur: nothing to catch
                draft = split_steps(answer)[:steps] or [answer or "."]
                own.append(float((np.asarray(embed(draft)) @ key_vectors[n]).max()))
        for c in controls:
            draft = split_steps(runs["off"][c["question"]]["content"])[:steps] or ["."]
            any_control.append(float((np.asarray(embed(draft)) @ key_vectors.T).max()))
        out[kind] = {
            "wrong_drafts": len(own),
            "controls": len(any_control),
            "by_threshold": {
                str(t): {
                    "caught": sum(s >= t for s in own),
                    "false_hits": sum(s >= t for s in any_control),
                }
                for t in THRESHOLDS
            },
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--limit", type=int, default=0, help="first N mistakes only (a quick look)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument(
        "--thresholds",
        default="0.65",
        help="mistake similarities to run the mistake conditions at (comma-separated)",
    )
    p.add_argument("serve_args", nargs="*", help="extra `safework serve` flags (after --)")
    args = p.parse_args(argv)
    data = json.loads(DATA.read_text())
    items, controls = data["mistakes"], data["controls"]
    if args.limit:
        items = items[: args.limit]
    chosen = conditions([float(t) for t in args.thresholds.split(",")])
    questions = [(q, i["answer"]) for i in items for q in i["related"]]
    questions += [(c["question"], c["answer"]) for c in controls]
    with tempfile.TemporaryDirectory(prefix="bench-mistakes-") as tmp:
        process, url = start_server(Path(tmp), args.serve_args)
        try:
            headers = {"Authorization": f"Bearer {KEY}"}
            owner: dict[str, str] = {}  # memory id -> the mistake it corrects
            with httpx.Client(base_url=url, headers=headers, timeout=600) as http:
                for item in items:
                    r = http.post(
                        "/cot/edit",
                        json={
                            "model": MODEL,
                            "messages": [{"role": "user", "content": item["question"]}],
                            "reasoning": item["reasoning"],
                            "edited_reasoning": item["corrected"],
                            "max_tokens": 32,
                            "temperature": 0.0,
                        },
                    )
                    r.raise_for_status()
                    owner[r.json()["memory_id"]] = item["id"]
                runs: dict[str, dict[str, dict]] = {c: {} for c in chosen}
                for q, _ in questions:  # conditions interleaved: the machine's noise is shared
                    for name, memory in chosen.items():
                        runs[name][q] = ask(http, q, memory, args.max_tokens)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=120)
    related = {q for i in items for q in i["related"]}
    fact_of = {q: i["id"] for i in items for q in i["related"]}
    gold = dict(questions)
    report: dict[str, Any] = {
        "revision": source_revision(),
        "vllm": vllm_version(),
        "mistakes": len(items),
        "related": len(related),
        "controls": len(controls),
        "conditions": {},
    }
    print(f"{len(items)} corrected mistakes, {len(related)} related questions, "
          f"{len(controls)} controls; max_tokens {args.max_tokens}, greedy")  # fmt: skip
    print(f"{'':18} {'related right':>14} {'mistake hits':>13} {'of another':>11} "
          f"{'controls right':>15} {'control hits':>13} {'s/answer mean':>14} {'p50':>6} "
          f"{'tokens':>7}")  # fmt: skip
    for name, answers in runs.items():
        right = sum(answer_matches(answers[q]["content"], gold[q]) for q in related)
        hits = sum(answers[q]["mistake_hits"] > 0 for q in related)
        foreign = sum(
            any(owner.get(i) != fact_of[q] for i in answers[q]["mistake_ids"]) for q in related
        )
        control_qs = [c["question"] for c in controls]
        c_right = sum(answer_matches(answers[q]["content"], gold[q]) for q in control_qs)
        c_hits = sum(answers[q]["mistake_hits"] > 0 for q in control_qs)
        seconds = [a["seconds"] for a in answers.values()]
        tokens = statistics.mean(a["tokens"] for a in answers.values())
        report["conditions"][name] = {
            "related_right": right,
            "related_mistake_hits": hits,
            "related_hits_of_another_mistake": foreign,
            "related_question_hits": sum(answers[q]["question_hits"] > 0 for q in related),
            "controls_right": c_right,
            "control_mistake_hits": c_hits,
            "seconds_mean": statistics.mean(seconds),
            "seconds_p50": statistics.median(seconds),
            "completion_tokens_mean": tokens,
        }
        print(f"{name:18} {right:>8}/{len(related):<5} {hits:>13} {foreign:>11} "
              f"{c_right:>9}/{len(controls):<5} {c_hits:>13} {statistics.mean(seconds):>14.3f} "
              f"{statistics.median(seconds):>6.3f} {tokens:>7.1f}")  # fmt: skip
    choice = key_choice(items, controls, runs, steps=4)
    report["key_choice"] = choice
    print("\nkey choice on the `off` drafts (first 4 steps): wrong drafts reaching their own "
          "mistake's key / control drafts reaching any key")  # fmt: skip
    for kind, c in choice.items():
        cells = "  ".join(
            f"{t}: {v['caught']}/{c['wrong_drafts']} {v['false_hits']}/{c['controls']}"
            for t, v in c["by_threshold"].items()
        )
        print(f"  {kind:6} {cells}")
    report["answers"] = runs
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
