"""Check SafeWork against a real Open WebUI (not collected by pytest; run it by hand).

Starts two SafeWork servers on the fake engines of ``tests/web_server.py`` (value models,
search and memory faked as in ``tests/test_client.py``), one with ``--reasoning-output
fields`` and one with ``think``, then a real Open WebUI connected to both (the ``think`` one
with the prefix ID ``think``), and checks through Open WebUI's own HTTP API:

(a) ``GET /api/models`` lists the model and its ``:aligned`` and ``:search`` profiles;
(b) a streamed chat in ``fields`` mode: Open WebUI's raw stream passes ``reasoning_content``
    through, and the message it saves (as its UI would, with a ``session_id``) holds the
    reasoning as a ``reasoning`` output item and only the answer as ``content``;
(c) the same with ``think`` mode (Open WebUI cuts the ``<think>`` block out of ``content``);
(d) a UI chat with Open WebUI's default *native* function calling, which offers its
    built-in tools with every message (SafeWork answers in text; ``tool_choice: auto``).

Chats (b) and (c) use the per-chat parameter ``function_calling: legacy`` (no tools sent), so
that (d) alone covers the tools.
Needs no network once installed. Install Open WebUI into its own venv (several GB)::

    python3.11 -m venv /tmp/owui && /tmp/owui/bin/pip install open-webui
    .venv/bin/python tests/e2e/chat_ui_check.py /tmp/owui

Prints PASS/FAIL per check; exits 1 when any fails. Checked with open-webui 0.12.4.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.web_server import (
    KEY,
    PLAIN_ANSWER,
    PLAIN_REASONING,
    LiveServer,
    WebEngine,
    fakes_installed,
    free_port,
    site_config,
)

QUESTION = "What is the atomic number of tungsten?"
ASGI = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def recording(app: Any, log: list[dict[str, Any]]) -> ASGI:
    """``app``, noting the JSON body of each chat request in ``log``."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            return await app(scope, receive, send)
        body: list[bytes] = []

        async def rec() -> dict[str, Any]:
            msg = await receive()
            if msg["type"] == "http.request":
                body.append(msg.get("body", b""))
                if not msg.get("more_body"):
                    log.append(json.loads(b"".join(body) or b"{}"))
            return msg

        await app(scope, rec, send)

    return wrapped


def safework(mode: str, log: list[dict[str, Any]]) -> LiveServer:
    server = LiveServer(
        WebEngine(step_delay=0.01),
        reasoning_output=mode,
        **site_config(Path(tempfile.mkdtemp(prefix=f"chat-ui-{mode}-"))),
    )
    server.server.config.app = recording(server.server.config.app, log)
    server.start()
    return server


def start_open_webui(venv: Path, data: Path, port: int, first: str) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "WEBUI_AUTH": "False",
        "WEBUI_SECRET_KEY": "chat-ui-check",
        "DATA_DIR": str(data),
        "OPENAI_API_BASE_URL": first + "/v1",
        "OPENAI_API_KEY": KEY,
        "ENABLE_OLLAMA_API": "False",
        "OFFLINE_MODE": "True",
        "HF_HUB_OFFLINE": "1",
        "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "False",
        "RAG_EMBEDDING_ENGINE": "openai",  # no local embedding model to load
        "ENABLE_VERSION_UPDATE_CHECK": "False",
        "ANONYMIZED_TELEMETRY": "False",
        "DO_NOT_TRACK": "true",
        "SCARF_NO_ANALYTICS": "true",
    }
    cmd = [str(venv / "bin" / "open-webui"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = open(data / "open-webui.log", "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Open WebUI exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise RuntimeError("Open WebUI did not become healthy")


def ui_chat(ui: httpx.Client, model: str, legacy: bool = True) -> dict[str, Any]:
    """A new chat sent the way Open WebUI's page sends it; the saved assistant message."""
    msg_id, user_id = str(uuid.uuid4()), str(uuid.uuid4())
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "parent_id": None,
        "id": msg_id,
        "session_id": "chat-ui-check",
        "user_message": {"id": user_id, "role": "user", "content": QUESTION},
        "messages": [{"role": "user", "content": QUESTION}],
    }
    if legacy:
        body["params"] = {"function_calling": "legacy"}
    chat_id = ui.post("/api/chat/completions", json=body).raise_for_status().json()["chat_id"]
    for _ in range(60):
        chat = ui.get(f"/api/v1/chats/{chat_id}").raise_for_status().json()["chat"]
        message = chat["history"]["messages"].get(msg_id, {})
        if message.get("done"):
            return message
        time.sleep(0.5)
    raise RuntimeError(f"chat {chat_id} did not finish")


def raw_stream(ui: httpx.Client, model: str) -> tuple[str, str]:
    """Open WebUI's raw stream for an API call (no session): joined reasoning and content."""
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    reasoning, content = "", ""
    with ui.stream("POST", "/api/chat/completions", json=body) as resp:
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:]).get("choices", []):
                delta = choice.get("delta", {})
                reasoning += delta.get("reasoning_content") or ""
                content += delta.get("content") or ""
    return reasoning, content


def split(message: dict[str, Any]) -> tuple[str, str]:
    """The reasoning text of the saved message's output items, and its ``content``."""
    reasoning = "".join(
        part.get("text", "")
        for item in message.get("output", [])
        if item.get("type") == "reasoning"
        for part in item.get("content", [])
    )
    return reasoning, message.get("content", "")


def shown(message: dict[str, Any]) -> dict[str, Any]:
    """What Open WebUI saved: ``content`` and the output items (kind, attributes, text)."""
    items = [
        [i.get("type"), i.get("attributes"), "".join(c.get("text", "") for c in i["content"])]
        for i in message.get("output", [])
    ]
    return {"content": message.get("content"), "output": items, "error": message.get("error")}


def report(name: str, ok: bool, evidence: Any) -> bool:
    print(f"{'PASS' if ok else 'FAIL'} {name}\n    {json.dumps(evidence)[:900]}")
    return ok


def run_checks(ui: httpx.Client, model: str, logs: dict[str, list[dict[str, Any]]]) -> bool:
    ids = [m["id"] for m in ui.get("/api/models").raise_for_status().json()["data"]]
    want = [f"{p}{model}{s}" for p in ("", "think.") for s in ("", ":aligned", ":search")]
    ok = report("(a) models listed, profiles included", set(want) <= set(ids), ids)

    raw = raw_stream(ui, model)
    saved = split(message := ui_chat(ui, model))
    good = raw == (PLAIN_REASONING, PLAIN_ANSWER) and saved == raw
    ok &= report("(b) fields: stream and saved message", good, {"raw": raw, **shown(message)})
    print(f"    request fields sent by Open WebUI: {[sorted(b) for b in logs['fields']]}")

    raw = raw_stream(ui, "think." + model)
    saved = split(message := ui_chat(ui, "think." + model))
    good = saved == (PLAIN_REASONING, PLAIN_ANSWER) and "<think>" in raw[1]
    ok &= report("(c) think: tags cut into reasoning", good, {"raw": raw, **shown(message)})

    message = ui_chat(ui, model, legacy=False)
    tools = [t.get("function", {}).get("name") for t in logs["fields"][-1].get("tools", [])]
    good = split(message) == (PLAIN_REASONING, PLAIN_ANSWER)
    evidence = {"error": message.get("error"), "tools": tools}
    ok &= report("(d) default native function calling (tools offered)", good, evidence)
    return ok


def main(venv: Path) -> int:
    logs: dict[str, list[dict[str, Any]]] = {"fields": [], "think": []}
    servers = {mode: safework(mode, logs[mode]) for mode in logs}
    data, port = Path(tempfile.mkdtemp(prefix="owui-data-")), free_port()
    proc = start_open_webui(venv, data, port, servers["fields"].url)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        version = httpx.get(url + "/api/version").json().get("version")
        print(f"open-webui {version} at {url} (log: {data / 'open-webui.log'})")
        signin = httpx.post(url + "/api/v1/auths/signin", json={"email": "", "password": ""})
        token = signin.raise_for_status().json()["token"]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as ui:
            ui.timeout = 60
            model = httpx.get(
                servers["fields"].url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}
            ).json()["data"][0]["id"]
            ui.post(
                "/openai/config/update",
                json={
                    "ENABLE_OPENAI_API": True,
                    "OPENAI_API_BASE_URLS": [servers[m].url + "/v1" for m in ("fields", "think")],
                    "OPENAI_API_KEYS": [KEY, KEY],
                    "OPENAI_API_CONFIGS": {"0": {}, "1": {"prefix_id": "think"}},
                },
            ).raise_for_status()
            return 0 if run_checks(ui, model, logs) else 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OPEN_WEBUI_VENV (e.g. /tmp/owui)")
    with fakes_installed():
        sys.exit(main(Path(sys.argv[1])))
