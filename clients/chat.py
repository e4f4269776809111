"""``safework chat``: a terminal chat with a SafeWork server, over HTTP with ``SafeWork``.

    safework chat                                   # http://127.0.0.1:8000, $SAFEWORK_API_KEY
    safework chat --url http://gpu-box:8000 --api-key sk-... --profile aligned

Answers stream; the reasoning is shown dimmed while it is written and collapsed afterwards
(``/show`` expands it), with each chosen step's value scores, the search queries, sources
and confidence. Commands:

    /plain /aligned /search   switch the answer profile
    /edit [inline]            correct the last reasoning ($EDITOR, or typed here) and continue
    /show                     the last reasoning in full
    /memory                   your stored corrections and preferences; /forget ID deletes one
    /prefer TEXT              a standing preference for every answer ("Answer in metric units.")
    /history                  this session's turns; /new starts a new conversation
    /help, /quit

The conversation is kept for the session (each question is sent with the turns before it)
and written to a transcript (``--transcript``; by default under the user's cache).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import openai
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .chat_view import AnswerView, expanded
from .client import SafeWork
from .stream import ChatStream

PROFILES = ("plain", "aligned", "search")
HINTS = {
    "aligned": "start the server with --value-model NAME=SPEC",
    "search": "start the server with --search-backend SPEC",
}


@dataclass
class Turn:
    question: str
    reasoning: str = ""
    content: str = ""
    memory_id: str | None = None


@dataclass
class ChatSession:
    """The conversation and the settings of one ``safework chat`` run."""

    client: SafeWork
    console: Console
    model: str
    profiles: set[str]
    profile: str = "plain"
    max_tokens: int | None = None
    transcript: Path | None = None
    turns: list[Turn] = field(default_factory=list)

    # --- the conversation ---------------------------------------------------------------

    def messages(self, question: str, before: int | None = None) -> list[dict[str, str]]:
        """The first ``before`` turns (all by default; answers without their reasoning),
        then ``question``."""
        out: list[dict[str, str]] = []
        for turn in self.turns[:before]:
            out.append({"role": "user", "content": turn.question})
            out.append({"role": "assistant", "content": turn.content})
        out.append({"role": "user", "content": question})
        return out

    def limits(self) -> dict[str, int]:
        return {"max_completion_tokens": self.max_tokens} if self.max_tokens else {}

    def ask(self, question: str) -> None:
        model = self.model if self.profile == "plain" else f"{self.model}:{self.profile}"
        stream = self.client.chat.completions.create(
            model=model,
            messages=self.messages(question),
            stream=True,
            **self.limits(),
        )
        assert isinstance(stream, ChatStream)
        turn = Turn(question)
        self._show(stream, turn)
        self.turns.append(turn)
        self._record(turn, "answer")

    def edit(self, corrected: str, feedback: str | None) -> None:
        last = self.turns[-1]
        stream = self.client.cot_edit(
            self.messages(last.question, before=len(self.turns) - 1),
            corrected,
            reasoning=last.reasoning,
            answer=last.content,
            feedback=feedback,
            model=self.model,
            stream=True,
            **self.limits(),
        )
        assert isinstance(stream, ChatStream)
        fixed = Turn(last.question)
        self._show(stream, fixed)
        self.turns[-1] = fixed
        self._record(fixed, "correction")
        if fixed.memory_id:
            self.console.print(Text(f"correction stored as {fixed.memory_id}", style="green"))

    def _show(self, stream: ChatStream, turn: Turn) -> None:
        """Stream into a live view; then print the finished turn (reasoning collapsed)."""
        view = AnswerView()
        try:
            with Live(view, console=self.console, refresh_per_second=8, transient=True):
                for kind, payload in stream.parts():
                    view.add(kind, payload)
        finally:
            stream.close()
            turn.reasoning, turn.content = stream.reasoning, stream.content
            turn.memory_id = stream.memory_id
            self.console.print(view.final(stream.info))

    def _record(self, turn: Turn, kind: str) -> None:
        if self.transcript is None:
            return
        self.transcript.parent.mkdir(parents=True, exist_ok=True)
        entry = {"time": time.time(), "kind": kind, "profile": self.profile, **asdict(turn)}
        with self.transcript.open("a") as f:
            f.write(json.dumps(entry) + "\n")

    # --- commands -----------------------------------------------------------------------

    def switch(self, profile: str) -> None:
        if profile != "plain" and profile not in self.profiles:
            self.console.print(f"[yellow]This server has no {profile} profile ({HINTS[profile]}).")
            return
        self.profile = profile
        self.console.print(f"[cyan]profile: {profile}")

    def show(self) -> None:
        if not self.turns or not self.turns[-1].reasoning:
            self.console.print("[yellow]No reasoning to show yet.")
            return
        self.console.print(expanded(self.turns[-1].reasoning))

    def memory(self) -> None:
        page = self.client.memory.list(limit=20)
        if not page.data:
            self.console.print("No stored corrections or preferences.")
            return
        table = Table("id", "question", "corrected reasoning", box=None, header_style="bold")
        for record in page.data:
            if record.kind == "preference":
                table.add_row(record.id, "(every answer)", (record.text or "")[:60])
            else:
                table.add_row(record.id, record.question[:40], record.corrected_reasoning[:60])
        self.console.print(table)

    def prefer(self, text: str) -> None:
        if not text:
            self.console.print("[yellow]Say what every answer should follow: /prefer TEXT")
            return
        record = self.client.memory.prefer(text)
        self.console.print(f"preference stored as {record.id}")

    def forget(self, memory_id: str) -> None:
        self.client.memory.delete(memory_id)
        self.console.print(f"deleted {memory_id}")

    def history(self) -> None:
        for i, turn in enumerate(self.turns, 1):
            self.console.print(Text(f"{i}. you: {turn.question}", style="bold"))
            self.console.print(f"   {turn.content.strip()[:200]}")
        if not self.turns:
            self.console.print("No turns yet.")


def edit_text(text: str, console: Console, inline: bool) -> str | None:
    """The user's correction of ``text``: in ``$VISUAL``/``$EDITOR``, or typed at a prompt."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if inline or not editor:
        console.print(expanded(text))
        console.print("Type the corrected reasoning; end with a line holding only '.'")
        lines = []
        while (line := console.input("")) != ".":
            lines.append(line)
        return "\n".join(lines).strip() or None
    with tempfile.NamedTemporaryFile("w+", suffix=".txt", delete=False) as f:
        f.write(text)
    try:
        if subprocess.call([*shlex.split(editor), f.name]) != 0:
            console.print("[yellow]The editor failed; nothing was sent.")
            return None
        edited = Path(f.name).read_text().strip()
    finally:
        os.unlink(f.name)
    if edited == text.strip():
        console.print("[yellow]The reasoning is unchanged; nothing was sent.")
        return None
    return edited or None


def run_command(session: ChatSession, line: str) -> bool:
    """Run a ``/command``; ``False`` means quit."""
    name, _, arg = line.partition(" ")
    actions: dict[str, Callable[[], Any]] = {
        "/plain": lambda: session.switch("plain"),
        "/aligned": lambda: session.switch("aligned"),
        "/search": lambda: session.switch("search"),
        "/show": session.show,
        "/memory": session.memory,
        "/forget": lambda: session.forget(arg.strip()),
        "/prefer": lambda: session.prefer(arg.strip()),
        "/history": session.history,
        "/new": lambda: session.turns.clear(),
        "/help": lambda: session.console.print(__doc__.split("Commands:")[1].split("The ")[0]),
    }
    if name in ("/quit", "/exit"):
        return False
    if name == "/edit":
        correct_last(session, inline=arg.strip() == "inline")
    elif name in actions:
        actions[name]()
    else:
        session.console.print(f"[yellow]Unknown command {name}; /help lists them.")
    return True


def correct_last(session: ChatSession, inline: bool) -> None:
    """``/edit``: the last reasoning (or, if the model gave none, its answer) is edited into
    the reasoning the model continues from."""
    if not session.turns:
        session.console.print("[yellow]Ask something first: there is no reasoning to edit.")
        return
    last = session.turns[-1]
    corrected = edit_text(last.reasoning or last.content, session.console, inline)
    if corrected is None:
        return
    feedback = session.console.input("What was wrong? (optional) ").strip() or None
    session.edit(corrected, feedback)


def explain(error: Exception, url: str) -> str:
    """A clear one-line message for an error (no stack trace)."""
    if isinstance(error, openai.AuthenticationError):
        return "The server refused the API key: pass --api-key or set SAFEWORK_API_KEY."
    if isinstance(error, openai.APIConnectionError):
        return f"Lost the connection to {url}: {error.message}"
    if isinstance(error, openai.APIStatusError):
        return f"The server said ({error.status_code}): {error.message}"
    return f"{type(error).__name__}: {error}"


def connect(client: SafeWork, console: Console, url: str) -> tuple[str, set[str]] | None:
    """The served model and its profiles, or ``None`` (and a message) if unreachable."""
    try:
        ids = [m.id for m in client.models.list().data]
    except (openai.APIError, openai.APIConnectionError) as e:
        message = explain(e, url)
        if isinstance(e, openai.APIConnectionError):
            message = f"Cannot reach a SafeWork server at {url} (is `safework serve` running?)"
        console.print(f"[red]{message}")
        return None
    model = ids[0]
    return model, {i.split(":", 1)[1] for i in ids if ":" in i}


def repl(session: ChatSession, url: str) -> None:
    console = session.console
    while True:
        try:
            line = console.input(f"[bold]\\[{session.profile}] you>[/bold] ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not line:
            continue
        try:
            if line.startswith("/"):
                if not run_command(session, line):
                    return
            else:
                session.ask(line)
        except KeyboardInterrupt:
            console.print("[yellow](interrupted)")
        except (openai.APIError, openai.APIConnectionError, ValueError) as e:
            console.print(f"[red]{explain(e, url)}")


def default_transcript() -> Path:
    cache = Path(os.environ.get("SAFEWORK_CACHE", Path.home() / ".cache" / "safework"))
    return cache / "chat" / f"{time.strftime('%Y%m%d-%H%M%S')}.jsonl"


def main(args: Any) -> int:
    console = Console(highlight=False)
    url = args.url.rstrip("/")
    client = SafeWork(base_url=url + "/v1", api_key=args.api_key, max_retries=0, timeout=600)
    found = connect(client, console, url)
    if found is None:
        return 1
    model, profiles = found
    transcript = None if args.transcript == "-" else Path(args.transcript or default_transcript())
    session = ChatSession(
        client,
        console,
        args.model or model,
        profiles,
        max_tokens=args.max_tokens,
        transcript=transcript,
    )
    available = ", ".join(["plain", *sorted(profiles)])
    console.print(f"[bold]SafeWork chat[/bold] with {session.model} at {url} ({available}); /help")
    if args.profile != "plain":
        session.switch(args.profile)
    repl(session, url)
    return 0
