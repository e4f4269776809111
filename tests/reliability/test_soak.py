"""A soak on loopback: several tenants, every profile, streams cut short, for a while.

The real app under uvicorn on the scripted engine (``tests/web_server.py``), with three
tenants. Each tenant runs workers that, until the time is up, pick at random: a plain chat
(JSON or a stream), a stream they drop after its first chunk (a client that goes away), an
``:aligned`` or ``:search`` answer, a ``/cot/edit`` correction stored in the memory with a
marker of its own, a text completion, a moderation. Afterwards:

- no request failed: every answer was a 2xx (a dropped stream counts when it started well);
- the engine is idle within a second: nothing a dropped client started still runs;
- threads, open file descriptors and memory came back to where they were after the warm-up
  (bounds: +4 threads, +16 descriptors, +64 MiB RSS);
- no tenant ever saw another's correction: not in ``/v1/memory``, and not in any prompt the
  engine was given for that tenant (the prefix-cache salt names the tenant of each prompt).

``make test`` soaks for ``SAFEWORK_SOAK_S`` seconds (20 by default); ``make soak`` for 600.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from safework.server.memory.serving import MemorySettings
from safework.server.serving_common import tenant_cache_salt

from ..web_server import LiveServer, WebEngine, fakes_installed, live_server, site_config

SOAK_S = float(os.environ.get("SAFEWORK_SOAK_S", "20"))
WARMUP_S = min(5.0, SOAK_S / 4)
WORKERS_PER_TENANT = 3
TENANTS = {"sk-soak-alice-0001": "alice", "sk-soak-bob-00002": "bob", "sk-soak-carol-003": "carol"}
MODEL = "fake-model"
BOUNDS = {"threads": 4, "fds": 16, "rss_mib": 64}


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    markers: dict[str, set[str]] = field(default_factory=dict)
    """Tenant -> the markers of the corrections it stored."""

    def record(self, kind: str, status: int, body: str = "") -> None:
        self.statuses[f"{kind} {status}"] += 1
        if not 200 <= status < 300:
            self.failures.append(f"{kind} -> {status}: {body[:200]}")


def snapshot() -> dict[str, float]:
    me = psutil.Process()
    return {
        "threads": threading.active_count(),
        "fds": me.num_fds(),
        "rss_mib": me.memory_info().rss / 2**20,
    }


@pytest.fixture(scope="module")
def soak_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, WebEngine]]:
    memory: Path = tmp_path_factory.mktemp("soak-memory")
    engine = WebEngine(step_delay=0.002)
    with fakes_installed():
        steps = MemorySettings.mistake_steps  # the served default: drafts checked under load
        config = {**site_config(memory, mistake_steps=steps), "api_keys": TENANTS}
        with live_server(engine, **config) as server:
            yield server, engine


async def _chat(client: httpx.AsyncClient, tally: Tally, model: str, stream: bool) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "What is W?"}]}
    if not stream:
        r = await client.post("/v1/chat/completions", json=body)
        tally.record(f"chat {model}", r.status_code, r.text)
        return
    async with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        text = "".join([line async for line in r.aiter_lines()])
    tally.record(f"stream {model}", r.status_code, text)
    if r.status_code == 200 and not text.rstrip().endswith("data: [DONE]"):
        tally.failures.append(f"stream {model} ended without [DONE]: {text[-200:]}")


async def _dropped_stream(client: httpx.AsyncClient, tally: Tally) -> None:
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "never stop"}]}
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        async for _ in r.aiter_lines():
            break  # the client goes away mid-answer
    tally.record("dropped stream", r.status_code)


async def _correct(client: httpx.AsyncClient, tally: Tally, tenant: str) -> None:
    marker = f"marker-{tenant}-{random.randrange(10**9)}"
    body = {
        "messages": [{"role": "user", "content": f"What is the atomic number of W ({marker})?"}],
        "reasoning": "W is number 79.",
        "edited_reasoning": f"79 is gold; W is 74 ({marker}).",
        "answer": "79",
    }
    r = await client.post("/cot/edit", json=body)
    tally.record("cot/edit", r.status_code, r.text)
    if r.status_code == 200:
        tally.markers.setdefault(tenant, set()).add(marker)


async def _completion(client: httpx.AsyncClient, tally: Tally) -> None:
    r = await client.post("/v1/completions", json={"model": MODEL, "prompt": "W is", "n": 2})
    tally.record("completion", r.status_code, r.text)


async def _moderation(client: httpx.AsyncClient, tally: Tally) -> None:
    r = await client.post("/v1/moderations", json={"input": ["an unsafe plan", "bread"]})
    tally.record("moderation", r.status_code, r.text)


async def _one(client: httpx.AsyncClient, tally: Tally, tenant: str, rng: random.Random) -> None:
    pick = rng.random()
    if pick < 0.25:
        await _chat(client, tally, MODEL, stream=rng.random() < 0.5)
    elif pick < 0.35:
        await _dropped_stream(client, tally)
    elif pick < 0.5:
        await _chat(client, tally, f"{MODEL}:aligned", stream=rng.random() < 0.5)
    elif pick < 0.65:
        await _chat(client, tally, f"{MODEL}:search", stream=rng.random() < 0.5)
    elif pick < 0.8:
        await _correct(client, tally, tenant)
    elif pick < 0.9:
        await _completion(client, tally)
    else:
        await _moderation(client, tally)


async def _worker(url: str, key: str, until: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    tenant = TENANTS[key]
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        while time.monotonic() < until:
            await _one(client, tally, tenant, rng)


async def _soak(url: str, seconds: float, tally: Tally) -> None:
    until = time.monotonic() + seconds
    workers = [
        _worker(url, key, until, tally, seed=i * 100 + w)
        for i, key in enumerate(TENANTS)
        for w in range(WORKERS_PER_TENANT)
    ]
    await asyncio.gather(*workers)


def _wait_idle(engine: WebEngine, timeout: float = 1.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while engine.running and time.monotonic() < deadline:
        time.sleep(0.02)
    return set(engine.running)


def _all_records(url: str, key: str) -> list[dict]:
    """Every record ``/v1/memory`` lists for ``key``, page by page."""
    records: list[dict] = []
    params: dict[str, str | int] = {"limit": 100}
    while True:
        page = httpx.get(
            f"{url}/v1/memory", params=params, headers={"Authorization": f"Bearer {key}"}
        ).json()
        records += page["data"]
        if not page["has_more"]:
            return records
        params["after"] = page["last_id"]


def _leaks(tally: Tally, engine: WebEngine, url: str) -> list[str]:
    """Every place a tenant could see another's correction, checked (and every correction a
    tenant stored is listed for it: the check sees what is there)."""
    found = []
    salts = {tenant_cache_salt(t): t for t in TENANTS.values()}
    for ids, sampling in engine.requests:
        owner = salts.get(sampling.cache_salt or "")
        prompt = "".join(chr(i) for i in ids)
        for tenant, markers in tally.markers.items():
            if tenant != owner and any(m in prompt for m in markers):
                found.append(f"a prompt of {owner} holds a correction of {tenant}")
    for key, tenant in TENANTS.items():
        listed = str(_all_records(url, key))
        others = {m for t, ms in tally.markers.items() if t != tenant for m in ms}
        found += [f"{tenant} lists {m}" for m in others if m in listed]
        mine = tally.markers.get(tenant, set())
        found += [f"{tenant} lost its own {m}" for m in mine if m not in listed]
    return found


def test_soak_with_tenants_and_disconnects(soak_site: tuple[LiveServer, WebEngine]) -> None:
    server, engine = soak_site
    warm = Tally()
    asyncio.run(_soak(server.url, WARMUP_S, warm))
    assert _wait_idle(engine) == set()
    before = snapshot()

    tally = Tally()
    asyncio.run(_soak(server.url, SOAK_S, tally))
    still_running = _wait_idle(engine)
    after = snapshot()

    print(f"\nsoak {SOAK_S:.0f}s: {sum(tally.statuses.values())} requests {dict(tally.statuses)}")
    print(f"resources before {before} after {after}")
    assert not warm.failures + tally.failures, (warm.failures + tally.failures)[:5]
    assert still_running == set(), f"still in the engine a second after the soak: {still_running}"
    for name, bound in BOUNDS.items():
        assert after[name] - before[name] <= bound, f"{name} grew: {before} -> {after}"
    assert sum(len(m) for m in tally.markers.values()) >= len(TENANTS), "too few corrections"
    assert _leaks(tally, engine, server.url) == []
