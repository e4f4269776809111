"""GPU check for a vision-language checkpoint: every strategy with an image, then throughput
against vLLM's own server on the same image load.

Prepared for a machine with a GPU (nothing here runs in ``make test``): give it a local folder
holding a vision-language checkpoint vLLM serves, e.g. SafeWork-R1-Qwen2.5VL-7B fetched by you
(README, "The published checkpoints"). It takes a few minutes for a 7B model on one GPU:

1. ``safework serve`` starts on the model with its features on (value models plus
   ``judge:served``, the served model judging with the images; search over the built-in corpus;
   the correction memory), calibration off so nothing is fitted first.
2. One request per strategy, each with an image: plain, streamed, ``:aligned``, ``:search``,
   ``/cot/edit`` and ``/v1/moderations`` (text and image parts as one input), each checked
   for a 200 and an answer; plain and streamed must count the image in ``usage`` (more prompt
   tokens than the same text alone), and a PNG declared as JPEG must be a 400.
3. ``--requests`` image chat completions (``--concurrency`` at a time, exactly
   ``--max-tokens`` each, greedy) against safework, then against
   ``python -m vllm.entrypoints.openai.api_server`` on the same model and flags (the servers
   run one after the other, so a large model fits); the output tokens/s ratio is printed.

The exit status is 1 when a strategy check failed. Run::

    .venv/bin/python bench/vlm_gpu.py --model /models/SafeWork-R1-Qwen2.5VL-7B
    .venv/bin/python bench/vlm_gpu.py --model /models/SafeWork-R1 --tensor-parallel-size 8 \\
        --json-out /tmp/vlm.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from serve_overhead import Server, running, server_env

NAME = "vlm"
PROMPTS = (
    "Describe this picture in one sentence.",
    "What colours do you see in the image?",
    "Is there any text in this image? Quote it.",
    "What shape is in the middle of the picture?",
)


def picture(seed: int) -> str:
    """A PNG data URL: shapes and a line of text, different for each seed."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (448, 448), (240, 240, 240))
    draw = ImageDraw.Draw(image)
    hue = (seed * 67) % 255
    draw.ellipse((120, 120, 328, 328), fill=(hue, 90, 255 - hue))
    draw.rectangle((20, 20, 100, 100), fill=(30, 160, 60))
    draw.text((20, 400), f"SafeWork check {seed}", fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_message(text: str, url: str) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": text},
        ],
    }


def engine_flags(args: argparse.Namespace) -> list[str]:
    return [
        "--model",
        args.model,
        "--served-model-name",
        NAME,
        "--tensor-parallel-size",
        str(args.tensor_parallel_size),
        "--max-model-len",
        str(args.max_model_len),
        "--gpu-memory-utilization",
        str(args.gpu_memory_utilization),
        "--seed",
        "0",
        "--dtype",
        args.dtype,
        *(["--enforce-eager"] if args.enforce_eager else []),
    ]


def safework_argv(args: argparse.Namespace, port: int) -> list[str]:
    script = Path(sys.executable).parent / "safework"
    return [
        str(script),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--shared-memory",
        "--allow-ignore-eos",
        "--max-concurrent-per-key",
        "0",
        "--no-calibration",
        "--value-model",
        "safety=builtin:safety",
        "--value-model",
        "judge=judge:served",
        *engine_flags(args),
    ]


def vllm_argv(args: argparse.Namespace, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *engine_flags(args),
    ]


# --------------------------------------------------------------------------- strategy checks


def check_strategies(base: str) -> dict[str, Any]:
    """One image request per strategy; ``{name: {"ok", ...}}``."""
    url = picture(0)
    question = "What is in this picture? Answer briefly."
    chat = f"{base}/v1/chat/completions"
    out: dict[str, Any] = {}
    with httpx.Client(timeout=300) as http:

        def record(name: str, response: httpx.Response, ok: bool, **extra: Any) -> None:
            out[name] = {"ok": ok and response.status_code == 200, "status": response.status_code}
            out[name] |= extra
            if response.status_code != 200:
                out[name]["error"] = response.text[:300]

        text_only = http.post(
            chat,
            json={
                "model": NAME,
                "messages": [{"role": "user", "content": question}],
                "max_tokens": 8,
            },
        )
        text_tokens = text_only.json()["usage"]["prompt_tokens"] if text_only.is_success else 0
        body = {"model": NAME, "messages": [image_message(question, url)], "max_tokens": 48}
        r = http.post(chat, json=body)
        usage = r.json().get("usage", {}) if r.is_success else {}
        answer = r.json()["choices"][0]["message"]["content"] if r.is_success else ""
        record(
            "plain",
            r,
            bool(answer) and usage.get("prompt_tokens", 0) > text_tokens,
            prompt_tokens=usage.get("prompt_tokens"),
            text_only_prompt_tokens=text_tokens,
            answer=answer[:200],
        )
        with http.stream(
            "POST", chat, json=body | {"stream": True, "stream_options": {"include_usage": True}}
        ) as s:
            chunks = [json.loads(line[6:]) for line in s.iter_lines() if line[6:].startswith("{")]
        streamed = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
        )
        final = next((c["usage"] for c in reversed(chunks) if c.get("usage")), {})
        out["stream"] = {
            "ok": s.status_code == 200
            and bool(streamed)
            and final.get("prompt_tokens", 0) > text_tokens,
            "status": s.status_code,
            "prompt_tokens": final.get("prompt_tokens"),
        }
        for profile in ("aligned", "search"):
            r = http.post(chat, json=body | {"model": f"{NAME}:{profile}"})
            content = r.json()["choices"][0]["message"]["content"] if r.is_success else ""
            record(profile, r, bool(content), answer=content[:200])
        r = http.post(
            f"{base}/cot/edit",
            json={
                "model": NAME,
                "messages": [image_message(question, url)],
                "reasoning": "The picture shows a square.",
                "edited_reasoning": "The picture shows a circle and a small green square.",
                "max_tokens": 48,
            },
        )
        record("cot_edit", r, r.is_success and "memory_id" in r.json())
        r = http.post(
            f"{base}/v1/moderations",
            json={
                "model": NAME,
                "input": [
                    {"type": "text", "text": "Is this picture safe?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            },
        )
        record("moderations", r, r.is_success and len(r.json().get("results", [])) == 1)
        wrong = url.replace("image/png", "image/jpeg")
        r = http.post(chat, json=body | {"messages": [image_message(question, wrong)]})
        out["wrong_type_400"] = {"ok": r.status_code == 400, "status": r.status_code}
    return out


# --------------------------------------------------------------------------- throughput


async def load(base: str, requests: int, concurrency: int, max_tokens: int) -> dict[str, float]:
    urls = [picture(i) for i in range(8)]
    gate = asyncio.Semaphore(concurrency)
    tokens = 0
    errors = 0

    async def one(i: int, http: httpx.AsyncClient) -> None:
        nonlocal tokens, errors
        body = {
            "model": NAME,
            "messages": [image_message(PROMPTS[i % len(PROMPTS)], urls[i % len(urls)])],
            "max_tokens": max_tokens,
            "temperature": 0,
            "ignore_eos": True,
        }
        async with gate:
            r = await http.post(f"{base}/v1/chat/completions", json=body)
        if r.is_success:
            tokens += r.json()["usage"]["completion_tokens"]
        else:
            errors += 1

    async with httpx.AsyncClient(timeout=600) as http:
        await asyncio.gather(*(one(i, http) for i in range(min(concurrency, requests))))  # warm-up
        tokens, errors = 0, 0
        started = time.perf_counter()
        await asyncio.gather(*(one(i, http) for i in range(requests)))
        wall = time.perf_counter() - started
    return {"tokens_per_s": tokens / wall, "wall_s": wall, "tokens": tokens, "errors": errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="local vision-language checkpoint folder")
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs (CPU)")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--port-base", type=int, default=8300)
    parser.add_argument("--skip-vllm", action="store_true", help="no throughput comparison")
    parser.add_argument("--log-dir", type=Path, default=None)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    if not (Path(args.model) / "config.json").is_file():
        parser.error(f"--model {args.model}: no config.json there (a local HF folder is needed)")
    logs = args.log_dir or Path(tempfile.mkdtemp(prefix="vlm-gpu-"))
    logs.mkdir(parents=True, exist_ok=True)
    env = server_env()
    result: dict[str, Any] = {"model": args.model, "tp": args.tensor_parallel_size}
    ours = Server("safework", safework_argv(args, args.port_base), args.port_base, logs / "sw.log")
    with running([ours], env):
        result["checks"] = check_strategies(ours.base_url)
        for name, check in result["checks"].items():
            print(f"{name:15} {'ok' if check['ok'] else 'FAILED'}  {check}", flush=True)
        runs = (args.requests, args.concurrency, args.max_tokens)
        result["safework"] = asyncio.run(load(ours.base_url, *runs))
    if not args.skip_vllm:
        port = args.port_base + 1
        peer = Server("vllm", vllm_argv(args, port), port, logs / "vllm.log")
        with running([peer], env):
            result["vllm"] = asyncio.run(load(peer.base_url, *runs))
        ratio = result["safework"]["tokens_per_s"] / result["vllm"]["tokens_per_s"]
        result["throughput_ratio"] = ratio
        print(
            f"image load, {args.requests} requests x {args.max_tokens} tokens: safework "
            f"{result['safework']['tokens_per_s']:.0f} tok/s, vLLM "
            f"{result['vllm']['tokens_per_s']:.0f} tok/s, ratio {ratio:.2f}x"
        )
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2))
    return 0 if all(c["ok"] for c in result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
