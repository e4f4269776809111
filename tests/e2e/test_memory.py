"""End-to-end chain-of-thought correction and memory on SmolLM2.

A correction posted to ``/cot/edit`` is continued by the model and stored; a paraphrase of
its question later reports it as a memory hit. Twenty corrected facts built by program
(element atomic numbers) measure how often the later answer follows the correction with the
memory on and off. A second server is killed with SIGKILL while 50 corrections are posted;
after a restart every correction that got a 200 is there and searchable. Two API keys never
see each other's records through any route. A standing preference ("Keep every answer under 20
words") is followed by more of 20 unrelated answers with it than without. Five wrong capitals,
once corrected, are caught in the drafts of a different question (mistakes as keys).
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from safework.search.answers import answer_matches
from safework.search.corpus import element_qa

from .conftest import KEY, MODEL, OTHER_KEY, RemoteServer, start_server, stop_server

pytestmark = pytest.mark.slow


def correction(question: str, wrong: str, right: str) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": question}],
        "reasoning": wrong,
        "edited_reasoning": right,
        "max_tokens": 48,
        "temperature": 0.0,
    }


def ask(server: RemoteServer, question: str, key: str | None = None, **safework: Any) -> Any:
    client = server.client() if key is None else server.client(api_key=key)
    with client:  # closed here, not by the garbage collector (an unclosed socket warns)
        return client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": question}],
            max_tokens=32,
            temperature=0.0,
            extra_body={"safework": safework} if safework else None,
        )


def each(fn: Callable[[Any], Any], items: Iterable[Any], workers: int = 8) -> list[Any]:
    """``fn`` over ``items``, ``workers`` requests in flight (the engine batches them), results
    in order: a test's 40 answers take the time of a few batches, not of 40 requests."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def hits(response: Any) -> list[dict[str, Any]]:
    block = response.model_extra.get("safework") or {}
    return block.get("memory", {}).get("hits", [])


def test_a_correction_is_continued_stored_and_recalled(server: RemoteServer) -> None:
    with server.http() as http:
        r = http.post(
            "/cot/edit",
            json=correction(
                "What is the boiling point of water at sea level in Celsius?",
                "Water boils at 90 degrees.",
                "At sea level water boils at 100 degrees Celsius, not 90.",
            ),
        )
        assert r.status_code == 200, r.text
        data = r.json()
        reasoning = data["choices"][0]["message"]["reasoning_content"]
        assert reasoning.startswith("At sea level water boils at 100 degrees Celsius, not 90.")
        memory_id = data["memory_id"]
        assert http.get(f"/v1/memory/{memory_id}").json()["question"].startswith("What is the")
    paraphrase = ask(server, "At what temperature in Celsius does water boil at sea level?")
    assert memory_id in [h["id"] for h in hits(paraphrase)]


def test_two_keys_never_see_each_others_records(server: RemoteServer) -> None:
    with server.http() as alice, server.http(OTHER_KEY) as bob:
        memory_id = alice.post(
            "/cot/edit",
            json=correction(
                "Which planet is closest to the sun?", "Venus.", "Mercury is closest, not Venus."
            ),
        ).json()["memory_id"]
        assert bob.get(f"/v1/memory/{memory_id}").status_code == 404
        assert bob.delete(f"/v1/memory/{memory_id}").status_code == 404
        assert memory_id not in [r["id"] for r in bob.get("/v1/memory").json()["data"]]
        assert bob.get("/v1/memory", params={"q": "Mercury"}).json()["data"] == []
        bob_answer = ask(server, "Which planet is closest to the sun?", key=OTHER_KEY)
        assert memory_id not in [h["id"] for h in hits(bob_answer)]
        assert alice.get(f"/v1/memory/{memory_id}").status_code == 200
        for body in (
            {"edited_reasoning": "  "},
            {"messages": [{"role": "system", "content": "x"}]},
        ):
            before = len(alice.get("/v1/memory", params={"limit": 100}).json()["data"])
            r = alice.post("/cot/edit", json={**correction("q", "a", "b"), **body})
            assert r.status_code == 400
            assert len(alice.get("/v1/memory", params={"limit": 100}).json()["data"]) == before


def test_corrections_change_later_answers(server: RemoteServer) -> None:
    """20 element facts: correct each once, then ask a paraphrase with memory on and off."""
    facts = [i for i in element_qa() if i.kind == "atomic_number"]
    facts = random.Random(3).sample(facts, 20)
    key = OTHER_KEY  # bob's memory holds only these (the tenant-isolation test adds one)
    with server.http(key) as http:

        def post(item: Any) -> None:
            body = correction(
                item.question,
                f"I think the atomic number of {item.subject} is 7.",
                f"No: the atomic number of {item.subject} is {item.answer}.",
            )
            r = http.post("/cot/edit", json=body)
            assert r.status_code == 200, r.text

        each(post, facts)

    def follows(memory_on: bool) -> tuple[int, int]:
        def one(item: Any) -> tuple[bool, bool]:
            question = f"Tell me the atomic number of the element {item.subject}."
            response = ask(server, question, key=key, memory={"enabled": memory_on})
            answer = response.choices[0].message.content or ""
            return bool(hits(response)), answer_matches(answer, item.answer)

        results = each(one, facts)
        return sum(f for _, f in results), sum(r for r, _ in results)

    on, recalled = follows(True)
    off, _ = follows(False)
    print(
        f"\nanswers following the correction: memory on {on}/20, off {off}/20 "
        f"(a correction recalled for {recalled}/20 paraphrases)"
    )
    assert recalled >= 18
    assert on > off


async def _post_all(url: str, bodies: list[dict[str, Any]], enough: asyncio.Event) -> list[str]:
    """Post every body at once; the ids of the corrections that got a 200. ``enough`` is
    set once ten have been acknowledged."""
    headers = {"Authorization": f"Bearer {KEY}"}
    acknowledged: list[str] = []
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:

        async def one(body: dict[str, Any]) -> None:
            try:
                r = await client.post("/cot/edit", json=body)
            except httpx.HTTPError:
                return  # the server died first: no promise was made
            if r.status_code == 200:
                acknowledged.append(r.json()["memory_id"])
                if len(acknowledged) >= 10:
                    enough.set()

        await asyncio.gather(*(one(b) for b in bodies))
    enough.set()
    return acknowledged


def test_acknowledged_corrections_survive_sigkill(tmp_path: Path) -> None:
    args = ("--memory-dir", str(tmp_path / "memory"), "--no-alignment", "--no-search",
            "--max-concurrent-per-key", "0")  # fmt: skip  # all 50 posts in flight at the kill
    first = start_server(tmp_path, *args)
    bodies = [
        {**correction(f"Question number {i} about topic {i}?", "wrong", f"Right answer {i}."),
         "max_tokens": 4 + i % 8}
        for i in range(50)
    ]  # fmt: skip

    async def post_then_kill() -> list[str]:
        enough = asyncio.Event()
        posting = asyncio.ensure_future(_post_all(first.url, bodies, enough))
        await enough.wait()
        await asyncio.to_thread(stop_server, first, signal.SIGKILL)  # mid-flight
        return await posting

    acknowledged = asyncio.run(post_then_kill())
    assert 10 <= len(acknowledged) < 50, "the kill should land while posts are in flight"
    second = start_server(tmp_path, *args)
    try:
        with second.http() as http:
            for memory_id in acknowledged:
                r = http.get(f"/v1/memory/{memory_id}")
                assert r.status_code == 200, memory_id
                question = r.json()["question"]
                found = ask(second, question, memory={"min_similarity": 0.9})
                assert memory_id in [h["id"] for h in hits(found)], question
    finally:
        stop_server(second)
    print(f"\n{len(acknowledged)}/50 corrections acknowledged before SIGKILL; all recovered")


UNRELATED = [
    "How tall is the Eiffel Tower?",
    "How far is the Moon from Earth?",
    "What is a good way to learn to cook?",
    "Why is the sky blue?",
    "How long is a marathon?",
    "How heavy is an adult elephant?",
    "What should I pack for a beach trip?",
    "How deep is the Pacific Ocean?",
    "How do I make a cup of tea?",
    "What causes the seasons on Earth?",
    "How many bones are in the human body?",
    "What is photosynthesis?",
    "How do airplanes stay in the air?",
    "What is the tallest mountain in the world?",
    "How can I sleep better at night?",
    "What is the speed of sound?",
    "Why do cats purr?",
    "How is paper made?",
    "What does a bee do in a hive?",
    "How far can a bicycle go in an hour?",
]
"""Questions unrelated to the preference and to each other, written for this test."""
PREFERENCE = "Keep every answer under 20 words."


def test_a_standing_preference_changes_unrelated_answers(server: RemoteServer) -> None:
    """ "Keep every answer under 20 words": 20 unrelated questions, the preference off and on;
    an answer follows it when it ends by itself within 20 words."""
    tenant_key = KEY
    with server.http(tenant_key) as http:
        r = http.post("/v1/memory", json={"kind": "preference", "text": PREFERENCE})
        assert r.status_code == 200, r.text
        preference = r.json()["id"]
    client = server.client(api_key=tenant_key)
    try:

        def follows(memory_on: bool) -> int:
            def one(question: str) -> bool:
                response = client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": question}],
                    max_tokens=64,
                    temperature=0.0,
                    extra_body={"safework": {"memory": {"enabled": memory_on}}},
                )
                block = (response.model_extra or {}).get("safework") or {}
                given = block.get("memory", {}).get("preferences", [])
                assert (preference in given) == memory_on
                choice = response.choices[0]
                words = len((choice.message.content or "").split())
                return choice.finish_reason == "stop" and words <= 20

            return sum(each(one, UNRELATED))

        on, off = follows(True), follows(False)
        print(f"\nunrelated answers following {PREFERENCE!r}: preference on {on}/20, off {off}/20")
        assert on > off
    finally:
        client.close()
        with server.http(tenant_key) as http:
            http.delete(f"/v1/memory/{preference}")


MISTAKES = [
    # (country, SmolLM2's own greedy answer to "What is the capital of X?", the right capital)
    ("Turkey", "The capital of Turkey is Istanbul.", "Ankara"),
    ("South Africa", "The capital of South Africa is Johannesburg.", "Pretoria"),
    ("Myanmar", "The capital of Myanmar is Yangon.", "Naypyidaw"),
    ("Belize", "The capital of Belize is Belize City.", "Belmopan"),
    ("Uzbekistan", "The capital of Uzbekistan is Samarkhand.", "Tashkent"),
]


def test_a_corrected_mistake_is_caught_in_a_different_question(server: RemoteServer) -> None:
    """Five wrong capitals corrected through /cot/edit; then "Which city is the seat of the
    government of X?", answered with the draft check alone (recall by question off) and with
    the memory off. A draft step that repeats a corrected mistake is replaced by the correction
    (a ``mistake`` hit naming that correction), and the answers are right more often."""
    owner: dict[str, str] = {}
    with server.http() as http:
        for country, wrong, right in MISTAKES:
            r = http.post(
                "/cot/edit",
                json=correction(
                    f"What is the capital of {country}?",
                    wrong,
                    f"The capital of {country} is {right}.",
                ),
            )
            assert r.status_code == 200, r.text
            owner[r.json()["memory_id"]] = country
    right_on = right_off = caught = 0
    client = server.client()
    for country, _, right in MISTAKES:
        question = f"Which city is the seat of the government of {country}?"
        answers = {}
        for on in (True, False):
            memory = {"min_similarity": 1.0} if on else {"enabled": False}
            answers[on] = client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": question}],
                max_tokens=48,
                temperature=0.0,
                extra_body={"safework": {"memory": memory}},
            )
        found = [h for h in hits(answers[True]) if h["kind"] == "mistake"]
        assert all(owner.get(h["id"]) == country for h in found), found  # its own correction
        caught += bool(found)
        text = {on: a.choices[0].message.content or "" for on, a in answers.items()}
        if found:
            assert right in text[True], text[True]
        assert not hits(answers[False])
        right_on += answer_matches(text[True], right)
        right_off += answer_matches(text[False], right)
    client.close()
    print(f"\nseat of government: right {right_on}/5 with mistake keys, {right_off}/5 memory off "
          f"({caught} drafts caught)")  # fmt: skip
    assert caught >= 3
    assert right_on > right_off
