"""Serving overhead: ``safework serve`` against vLLM's own OpenAI server, same engine, same load.

What it measures: both servers run the same model with the same engine options (vLLM's
``AsyncLLM`` underneath either way), so any difference is the HTTP/serving layer. The load is
identical for both: ``--requests`` streaming chat completions (default 64), ``--concurrency``
at a time (default 8), each forced to exactly ``--max-tokens`` output tokens (default 128;
``ignore_eos``, greedy), cycling through one fixed list of prompts. For every run it reports

* throughput: completion tokens (from the usage chunk) / wall time of the run, and
* TTFT: time from sending a request to the first chunk carrying non-empty content
  (median and p90 over the run's requests), and
* CPU seconds used during the run by the measured server's front-end process (HTTP, serving
  layer, engine client: where serving overhead shows), by its engine processes, by the idle
  server, by this client, and by everything else on the machine ("other cpu"; runs where it
  is above 5% of the machine are marked ``*``: their numbers are noise, rerun when quiet),

then the median of each over ``--rounds`` and the ratios safework/vLLM. The goal is a
throughput ratio >= 0.95 and a median-TTFT ratio <= 1.1.

The two servers run side by side (the idle one is idle) and the runs alternate, the order
flipping every round (S V, V S, S V, ...), so machine noise and drift hit both alike. Each
server first gets one short warm-up run over every prompt, not counted. Both servers are
stopped at the end, on Ctrl-C and on errors; their logs are kept in ``--log-dir``.

Run it (``make bench`` does the same with the defaults)::

    .venv/bin/python bench/serve_overhead.py
    .venv/bin/python bench/serve_overhead.py --rounds 5 --json-out /tmp/overhead.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import psutil
from common import served_dtype, source_revision, vllm_version

SERVED_NAME = "smollm2-135m-instruct"
THROUGHPUT_GOAL = 0.95  # safework/vLLM output tokens/s, at least
TTFT_GOAL = 1.10  # safework/vLLM median TTFT, at most
HEALTH_TIMEOUT_S = 600.0

PROMPTS = (
    "What is the capital of France?",
    "Explain photosynthesis in two sentences.",
    "Write a haiku about the sea.",
    "How do I reverse a list in Python?",
    "What causes the seasons on Earth?",
    "Give me three tips for a job interview.",
    "What is the difference between a virus and a bacterium?",
    "Summarize the plot of Romeo and Juliet.",
    "How does a refrigerator keep food cold?",
    "Suggest a name for a small bakery.",
    "Why is the sky blue?",
    "What is 17 times 23? Show your steps.",
    "Describe a healthy breakfast.",
    "What are prime numbers? Give examples.",
    "Translate 'good morning' into Spanish and German.",
    "Write a short thank-you note to a teacher.",
)


# --- servers ---------------------------------------------------------------------------


@dataclass
class Server:
    """One OpenAI-compatible server process (its own process group) and its log file."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: TextIO | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str]) -> None:
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() reaches the engine processes
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.proc is not None:
            _signal_group(self.proc.pid, signal.SIGKILL)  # leftovers (engine core, workers)
        if self._log is not None:
            self._log.close()
            self._log = None

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds used so far by (the HTTP front-end process, its engine processes)."""
        assert self.proc is not None
        try:
            front = psutil.Process(self.proc.pid)
            children = front.children(recursive=True)
        except psutil.NoSuchProcess:
            return 0.0, 0.0
        return _cpu(front), sum(_cpu(c) for c in children)

    def wait_healthy(self, timeout_s: float = HEALTH_TIMEOUT_S) -> float:
        """Block until ``/health`` answers 200; return the seconds it took."""
        assert self.proc is not None
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; see {self.log_path}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            time.sleep(1)
        raise TimeoutError(f"{self.name} not healthy after {timeout_s:.0f} s; see {self.log_path}")


def _cpu(p: psutil.Process) -> float:
    try:
        t = p.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return t.user + t.system


def _busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, not idle or waiting on I/O)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def engine_flags(model: str, seed: int, dtype: str) -> list[str]:
    """Engine options given identically to both servers (vLLM's own flag names)."""
    return [
        "--model",
        model,
        "--served-model-name",
        SERVED_NAME,
        "--enforce-eager",
        "--enable-prefix-caching",
        "--dtype",
        dtype,
        "--seed",
        str(seed),
    ]


def safework_argv(model: str, port: int, seed: int, dtype: str) -> list[str]:
    script = Path(sys.executable).parent / "safework"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "safework.cli"]
    return [
        *cmd,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--shared-memory",  # no keys here: keep the memory on, as when these numbers were taken
        "--allow-ignore-eos",  # every request generates exactly --max-tokens, as on vLLM
        "--max-concurrent-per-key",
        "0",  # no keys: every request is one tenant; vLLM has no such limit either
        *engine_flags(model, seed, dtype),
    ]


def vllm_argv(model: str, port: int, seed: int, dtype: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *engine_flags(model, seed, dtype),
    ]


def make_servers(model: str, port_base: int, seed: int, dtype: str, log_dir: Path) -> list[Server]:
    """safework on ``port_base``, vLLM on the next port; same model and engine options."""
    sw, vl = port_base, port_base + 1
    return [
        Server("safework", safework_argv(model, sw, seed, dtype), sw, log_dir / "safework.log"),
        Server("vllm", vllm_argv(model, vl, seed, dtype), vl, log_dir / "vllm.log"),
    ]


def server_env() -> dict[str, str]:
    """One environment for both servers; the CPU settings safework would pick, made explicit."""
    env = dict(os.environ)
    cores = sorted(os.sched_getaffinity(0))
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"{cores[0]}-{cores[-1]}")
    return env


@contextlib.contextmanager
def running(servers: list[Server], env: dict[str, str]) -> Iterator[None]:
    """Start every server, wait until all are healthy, and always stop them all."""
    try:
        for s in servers:
            if not _port_free(s.port):
                raise RuntimeError(f"port {s.port} for {s.name} is in use; try --port-base")
            print(f"starting {s.name}: {shlex.join(s.argv)}  (log: {s.log_path})", flush=True)
            s.start(env)
        for s in servers:
            print(f"{s.name} healthy after {s.wait_healthy():.0f} s", flush=True)
        yield
    finally:
        for s in servers:
            s.stop()


# --- load --------------------------------------------------------------------------------


@dataclass
class RequestResult:
    ttft_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


@dataclass
class RunResult:
    server: str
    round: int
    wall_s: float
    requests: int
    completion_tokens: int
    prompt_tokens: int
    errors: int
    api_cpu_s: float  # the measured server's front-end (HTTP, serving layer, engine client)
    engine_cpu_s: float  # its engine core and worker processes
    idle_cpu_s: float  # the other server, idle meanwhile (should be ~0)
    client_cpu_s: float  # this load generator
    other_cpu_s: float  # everything else on the machine: should be ~0, else the run is noisy
    ttfts_s: list[float] = field(repr=False)

    @property
    def throughput(self) -> float:
        return self.completion_tokens / self.wall_s

    @property
    def ttft_median_s(self) -> float:
        return statistics.median(self.ttfts_s) if self.ttfts_s else float("nan")

    @property
    def ttft_p90_s(self) -> float:
        if len(self.ttfts_s) < 2:
            return self.ttft_median_s
        return statistics.quantiles(self.ttfts_s, n=10, method="inclusive")[-1]

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("ttfts_s")
        d.update(
            throughput_tok_s=self.throughput,
            ttft_median_s=self.ttft_median_s,
            ttft_p90_s=self.ttft_p90_s,
        )
        return d


def request_body(prompt: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": SERVED_NAME,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
    }


async def one_request(client: httpx.AsyncClient, body: dict[str, Any]) -> RequestResult:
    result = RequestResult()
    t0 = time.perf_counter()
    async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        if resp.status_code != 200:
            result.error = f"HTTP {resp.status_code}: {(await resp.aread())[:200]!r}"
            return result
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, SSE comments (pings)
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                result.error = str(chunk["error"])[:200]
                break
            if result.ttft_s is None and any(
                (c.get("delta") or {}).get("content") for c in chunk.get("choices") or ()
            ):
                result.ttft_s = time.perf_counter() - t0
            if usage := chunk.get("usage"):
                result.prompt_tokens = usage.get("prompt_tokens", 0)
                result.completion_tokens = usage.get("completion_tokens", 0)
    return result


async def run_load(
    base_url: str, requests: int, concurrency: int, max_tokens: int
) -> tuple[float, list[RequestResult]]:
    """``requests`` streaming chats, ``concurrency`` in flight; (wall seconds, results)."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    results: list[RequestResult] = [RequestResult() for _ in range(requests)]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(600.0, connect=10.0)

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = request_body(PROMPTS[i % len(PROMPTS)], max_tokens)
                try:
                    results[i] = await one_request(client, body)
                except httpx.HTTPError as e:
                    results[i] = RequestResult(error=f"{type(e).__name__}: {e}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return wall, results


def measure(
    server: Server, idle: Server, rnd: int, requests: int, concurrency: int, max_tokens: int
) -> RunResult:
    me = psutil.Process()
    api0, engine0 = server.cpu_seconds()
    idle0, client0, busy0 = sum(idle.cpu_seconds()), _cpu(me), _busy_cpu_seconds()
    wall, results = asyncio.run(run_load(server.base_url, requests, concurrency, max_tokens))
    api1, engine1 = server.cpu_seconds()
    idle1, client1, busy1 = sum(idle.cpu_seconds()), _cpu(me), _busy_cpu_seconds()
    accounted = (api1 - api0) + (engine1 - engine0) + (idle1 - idle0) + (client1 - client0)
    errors = [r.error for r in results if r.error]
    for e in errors[:3]:
        print(f"  {server.name} error: {e}", file=sys.stderr)
    return RunResult(
        server=server.name,
        round=rnd,
        wall_s=wall,
        requests=requests,
        completion_tokens=sum(r.completion_tokens for r in results),
        prompt_tokens=sum(r.prompt_tokens for r in results),
        errors=len(errors),
        api_cpu_s=api1 - api0,
        engine_cpu_s=engine1 - engine0,
        idle_cpu_s=idle1 - idle0,
        client_cpu_s=client1 - client0,
        other_cpu_s=max(0.0, (busy1 - busy0) - accounted),
        ttfts_s=[r.ttft_s for r in results if r.ttft_s is not None],
    )


# --- report ------------------------------------------------------------------------------

COLUMNS: tuple[tuple[str, int, Callable[[RunResult], object]], ...] = (
    ("round", 5, lambda r: r.round),
    ("server", 8, lambda r: r.server),
    ("wall s", 7, lambda r: f"{r.wall_s:.1f}"),
    ("out tok/s", 9, lambda r: f"{r.throughput:.1f}"),
    ("TTFT p50", 8, lambda r: f"{r.ttft_median_s * 1000:.0f} ms"),
    ("TTFT p90", 8, lambda r: f"{r.ttft_p90_s * 1000:.0f} ms"),
    ("out tok", 7, lambda r: r.completion_tokens),
    ("API cpu", 7, lambda r: f"{r.api_cpu_s:.1f} s"),
    ("engine cpu", 10, lambda r: f"{r.engine_cpu_s:.1f} s"),
    ("idle cpu", 8, lambda r: f"{r.idle_cpu_s:.1f} s"),
    ("client cpu", 10, lambda r: f"{r.client_cpu_s:.1f} s"),
    ("other cpu", 9, lambda r: f"{r.other_cpu_s:.1f} s" + ("*" if noisy(r) else "")),
    ("errors", 6, lambda r: r.errors),
)
NOISE_SHARE = 0.05  # other processes used more than this share of the machine: a noisy run


def noisy(r: RunResult) -> bool:
    return r.other_cpu_s > NOISE_SHARE * r.wall_s * (os.cpu_count() or 1)


def _cells(values: list[object]) -> str:
    return " ".join(
        f"{v!s:{'<' if name == 'server' else '>'}{width}}"
        for v, (name, width, _) in zip(values, COLUMNS, strict=True)
    )


def print_header() -> None:
    print(_cells([name for name, _, _ in COLUMNS]))


def print_run(r: RunResult) -> None:
    print(_cells([fmt(r) for _, _, fmt in COLUMNS]), flush=True)


def summarize(runs: list[RunResult], names: tuple[str, str]) -> dict[str, Any]:
    """Median over rounds per server, the ratios first/second, and the same over quiet runs."""
    summary = _medians(runs, names)
    quiet = [r for r in runs if not noisy(r)]
    summary["noisy_runs"] = len(runs) - len(quiet)
    if summary["noisy_runs"] and all(any(r.server == n for r in quiet) for n in names):
        summary["quiet_runs_only"] = _medians(quiet, names)
    return summary


def _medians(runs: list[RunResult], names: tuple[str, str]) -> dict[str, Any]:
    per: dict[str, dict[str, float]] = {}
    for name in names:
        mine = [r for r in runs if r.server == name]
        per[name] = {
            "throughput_tok_s": statistics.median(r.throughput for r in mine),
            "ttft_median_s": statistics.median(r.ttft_median_s for r in mine),
            "ttft_p90_s": statistics.median(r.ttft_p90_s for r in mine),
            "api_cpu_s": statistics.median(r.api_cpu_s for r in mine),
            "engine_cpu_s": statistics.median(r.engine_cpu_s for r in mine),
            "prompt_tokens": statistics.median(r.prompt_tokens for r in mine),
            "errors": sum(r.errors for r in mine),
        }
    a, b = (per[n] for n in names)
    throughput_ratio = a["throughput_tok_s"] / b["throughput_tok_s"]
    ttft_ratio = a["ttft_median_s"] / b["ttft_median_s"]
    return {
        "servers": per,
        "throughput_ratio": throughput_ratio,
        "ttft_ratio": ttft_ratio,
        "goal_met": throughput_ratio >= THROUGHPUT_GOAL and ttft_ratio <= TTFT_GOAL,
    }


def print_summary(summary: dict[str, Any], rounds: int) -> None:
    print(f"\nmedian over {rounds} rounds")
    print(f"{'server':<9} {'out tok/s':>10} {'TTFT p50':>10} {'TTFT p90':>10} {'API cpu':>9}")
    for name, m in summary["servers"].items():
        print(
            f"{name:<9} {m['throughput_tok_s']:>10.1f} {m['ttft_median_s'] * 1000:>7.0f} ms"
            f" {m['ttft_p90_s'] * 1000:>7.0f} ms {m['api_cpu_s']:>7.1f} s"
        )
    ratio = summary["throughput_ratio"]
    print(f"\nsafework/vLLM throughput: {ratio:.3f}  (goal >= {THROUGHPUT_GOAL})")
    print(f"safework/vLLM median TTFT: {summary['ttft_ratio']:.3f}  (goal <= {TTFT_GOAL})")
    print(f"goal met: {'yes' if summary['goal_met'] else 'no'}")
    if summary["noisy_runs"]:
        print(
            f"warning: {summary['noisy_runs']} run(s) marked * shared the machine with other work"
            " (other cpu); rerun on a quiet machine for trustworthy numbers"
        )
    if quiet := summary.get("quiet_runs_only"):
        met = "yes" if quiet["goal_met"] else "no"
        print(
            f"over the runs not marked *: throughput {quiet['throughput_ratio']:.3f},"
            f" median TTFT {quiet['ttft_ratio']:.3f}, goal met: {met}"
        )


# --- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--requests", type=int, default=64, help="requests per run (default 64)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    p.add_argument("--max-tokens", type=int, default=128, help="output tokens per request")
    p.add_argument("--rounds", type=int, default=3, help="measured runs per server (default 3)")
    p.add_argument(
        "--port-base", type=int, default=8100, help="safework on this port, vLLM on the next"
    )
    p.add_argument("--model", default=None, help="HF model folder (default: the embedded one)")
    p.add_argument("--seed", type=int, default=0, help="engine seed, both servers (default 0)")
    p.add_argument(
        "--dtype", default=None, help="both servers' dtype (default: what safework serves here)"
    )
    p.add_argument("--log-dir", type=Path, default=None, help="server logs (default: a temp dir)")
    p.add_argument("--json-out", type=Path, default=None, help="also write the results as JSON")
    args = p.parse_args(argv)
    if min(args.requests, args.concurrency, args.max_tokens, args.rounds) < 1:
        p.error("--requests, --concurrency, --max-tokens and --rounds must be >= 1")
    return args


def default_model() -> str:
    from safework.engine.default_model import ensure_default_model

    return str(ensure_default_model())


def pairs(servers: list[Server], rnd: int) -> list[tuple[Server, Server]]:
    """(measured, idle) in this round's order: the first server first in odd rounds."""
    a, b = servers
    return [(a, b), (b, a)] if rnd % 2 else [(b, a), (a, b)]


def _sigterm_to_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops the servers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm_to_exit)
    started = dt.datetime.now().astimezone()
    command = shlex.join([sys.executable, *sys.argv] if argv is None else ["serve_overhead", *argv])
    model = args.model or default_model()
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="serve_overhead-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    dtype = args.dtype or served_dtype(model)
    servers = make_servers(model, args.port_base, args.seed, dtype, log_dir)
    revision = source_revision()
    print(f"command: {command}\ndate: {started.isoformat(timespec='seconds')}")
    print(f"safework revision: {revision}, {vllm_version()}, {os.cpu_count()} CPUs")
    print(f"model: {model}, dtype {dtype} (both servers)")
    print(
        f"load: {args.requests} requests x {args.max_tokens} output tokens, "
        f"{args.concurrency} concurrent, {args.rounds} rounds per server",
        flush=True,
    )
    runs: list[RunResult] = []
    with running(servers, server_env()):
        for s, idle in pairs(servers, 1):
            n = max(args.concurrency, len(PROMPTS))
            w = measure(s, idle, 0, n, args.concurrency, min(32, args.max_tokens))
            print(f"warm-up {s.name}: {w.wall_s:.1f} s, {w.errors} errors (not counted)")
        print()
        print_header()
        for rnd in range(1, args.rounds + 1):
            for s, idle in pairs(servers, rnd):
                run = measure(s, idle, rnd, args.requests, args.concurrency, args.max_tokens)
                runs.append(run)
                print_run(run)
    summary = summarize(runs, ("safework", "vllm"))
    print_summary(summary, args.rounds)
    if args.json_out:
        report = {
            "command": command,
            "date": started.isoformat(timespec="seconds"),
            "safework_revision": revision,
            "vllm": vllm_version(),
            "cpus": os.cpu_count(),
            "model": model,
            "load": {k: vars(args)[k] for k in ("requests", "concurrency", "max_tokens", "rounds")},
            "server_commands": {s.name: shlex.join(s.argv) for s in servers},
            "runs": [r.summary() for r in runs],
            **summary,
        }
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 1 if any(r.errors for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
