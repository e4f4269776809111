"""What ``safework.clients`` costs over the plain ``openai`` SDK when reading a stream.

Both clients read the same recorded SSE body (an aligned answer: reasoning and answer deltas,
one ``alignment.step`` event every 8 chunks, the summary on the last chunk) from an
in-memory transport, so only client-side work is timed: the SDK's own parsing for
``openai.OpenAI``, plus gathering reasoning, events and the summary for ``SafeWork``'s
``ChatStream.parts()``. Rounds alternate between the two; the report is the median time per
chunk of each and their ratio.

    python bench/client_stream.py --chunks 2000 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx2
import openai
from common import source_revision

from safework.clients import ChatStream, SafeWork

MESSAGES = [{"role": "user", "content": "How do I store bleach safely?"}]


def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
    """One SSE event: a chunk with one choice (``delta``), or none (``delta=None``)."""
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", **extra}
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    body["choices"] = [] if delta is None and finish is None else [choice]
    return f"data: {json.dumps(body)}\n\n"


def recorded_stream(chunks: int) -> bytes:
    """An aligned answer: reasoning then answer deltas, a step event every 8 chunks."""
    parts = [chunk({"role": "assistant", "content": ""})]
    for i in range(1, chunks):
        field = "reasoning_content" if i < chunks // 2 else "content"
        extra: dict[str, Any] = {}
        if i % 8 == 0:
            step = {"type": "alignment.step", "step": i // 8, "action": "choose", "text": "x "}
            step.update(scores={"safety": 0.9, "values": 0.7}, total=0.84, rejected=[])
            extra["safework"] = {"events": [step]}
        parts.append(chunk({field: f"word{i} "}, **extra))
    parts.append(chunk({}, "stop", safework={"search": {"sources": [], "confidence": None}}))
    parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


def transport(body: bytes) -> httpx2.Client:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return httpx2.Client(transport=httpx2.MockTransport(handler))


def read_with_openai(body: bytes) -> int:
    with openai.OpenAI(base_url="http://b.test/v1", api_key="k", http_client=transport(body)) as c:
        stream = c.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        return sum(1 for _ in stream)


def read_with_safework(body: bytes) -> int:
    with SafeWork(base_url="http://b.test/v1", api_key="k", http_client=transport(body)) as c:
        stream = c.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        assert isinstance(stream, ChatStream)
        parts = sum(1 for _ in stream.parts())
        assert stream.info.steps
        assert stream.finish_reason == "stop"
        return parts


def timed(read: Callable[[bytes], int], body: bytes) -> float:
    start = time.perf_counter()
    read(body)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chunks", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    body = recorded_stream(args.chunks)
    times: dict[str, list[float]] = {"openai": [], "safework": []}
    timed(read_with_openai, body), timed(read_with_safework, body)  # warm up both
    for _ in range(args.rounds):
        times["openai"].append(timed(read_with_openai, body))
        times["safework"].append(timed(read_with_safework, body))
    per_chunk = {k: statistics.median(v) / args.chunks * 1e6 for k, v in times.items()}
    print(f"safework {source_revision()}, openai {openai.__version__}, {args.chunks} chunks")
    for name, us in per_chunk.items():
        print(f"  {name:9s} {us:7.1f} us/chunk (median of {args.rounds})")
    print(f"  ratio safework/openai: {per_chunk['safework'] / per_chunk['openai']:.2f}x")


if __name__ == "__main__":
    main()
