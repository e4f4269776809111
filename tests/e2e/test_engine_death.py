"""Killing vLLM's engine process under a running stream: the server says so and exits non-zero.

The unit tier checks the mapping of vLLM's errors on a stub (``tests/test_vllm_errors.py``)
and the server's reaction on the fake engine (``tests/test_engine_death.py``); this kills the
real ``EngineCore`` process of a real ``safework serve`` with SIGKILL while it streams, as an
out-of-memory kill would. The stream must end with an error event and ``[DONE]`` (or the
connection closing, never hanging), and the process must exit with status 1 so that a
supervisor restarts it.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest

from .conftest import MODEL, start_server, stop_server

pytestmark = pytest.mark.slow
EXIT_TIMEOUT_S = 60.0


def _engine_core(server_pid: int) -> psutil.Process:
    for child in psutil.Process(server_pid).children(recursive=True):
        if "EngineCore" in child.name() or "EngineCore" in " ".join(child.cmdline()):
            return child
    pytest.fail("no EngineCore process under the server")


def test_killing_the_engine_process_stops_the_server(tmp_path: Path) -> None:
    remote = start_server(
        tmp_path, "--no-alignment", "--no-search", "--no-memory", "--allow-ignore-eos"
    )
    try:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Count from one to a thousand."}],
            "max_tokens": 2000,
            "ignore_eos": True,
            "stream": True,
        }
        headers = {"Authorization": f"Bearer {remote.key}"}
        lines: list[str] = []
        with httpx.stream(
            "POST", f"{remote.url}/v1/chat/completions", json=body, headers=headers, timeout=60
        ) as r:
            assert r.status_code == 200
            stream = r.iter_lines()
            lines += [next(stream) for _ in range(6)]  # the answer is under way
            _engine_core(remote.process.pid).send_signal(signal.SIGKILL)
            # the server may also go away mid-stream: the client is then not left hanging
            with contextlib.suppress(httpx.HTTPError):
                for line in stream:
                    lines.append(line)
        events = [json.loads(x[6:]) for x in lines if x.startswith("data: {")]
        if lines[-1] == "data: [DONE]":  # the stream was closed properly
            assert "error" in events[-1], lines[-3:]
            assert events[-1]["error"]["code"] == "engine_dead"
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        while remote.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert remote.process.returncode == 1, remote.log.read_text(errors="replace")[-3000:]
    finally:
        stop_server(remote)
