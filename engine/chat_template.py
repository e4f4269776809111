"""What a request may put into the chat template, and rendering that cannot stall the server.

A chat template is Jinja code run on every request. Two things reach it from a client:
``chat_template_kwargs`` (variables such as ``enable_thinking``) and, in vLLM's API, a whole
``chat_template``. A client template with nested loops renders for minutes; a variable named
``bos_token`` or ``eos_token`` overrides a special token the model's template prints.

``TemplatePolicy`` decides, before anything renders (a 400 otherwise):

- variables are allow-listed (``ALLOWED_KWARGS``: ``enable_thinking``, ``thinking``,
  ``reasoning_effort``) and must be scalars (short strings, numbers, booleans);
- a request template and special-token overrides are refused unless the operator trusts
  request templates (``TemplatePolicy(trust_request_templates=True)``, the server's
  ``--trust-request-chat-template``); with trust any variable is allowed;
- arguments of ``apply_chat_template`` itself (``tokenize``, ``return_dict``...) are always
  refused: they change what rendering returns, not what the template sees.

``TemplateRenderer`` bounds rendering either way:

- the model's own template renders in its own thread (never the tokenizer's pool, so
  tokenising goes on meanwhile); past ``timeout_s`` the render is interrupted by an exception
  raised inside that thread (CPython's ``PyThreadState_SetAsyncExc``: pure-Python Jinja loops
  stop at their next bytecode), and its output is capped at ``max_chars``;
- a request template (trusted) renders in a child process with an address-space limit
  (``max_memory_bytes``), killed at ``timeout_s``: a template can loop or multiply strings,
  but it cannot outlast its time or exhaust the server's memory. The child starts on the
  first such request (a few seconds) and stays up.

Simplification: the in-thread interrupt cannot stop a single long C call (one huge string
multiplication); the model's own template comes from the operator and renders in time linear
in the (size-limited) request, so only request templates, which may be hostile, need the
child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from safework.errors import RequestError

__all__ = [
    "ALLOWED_KWARGS",
    "RESERVED_KWARGS",
    "TemplatePolicy",
    "TemplateRenderer",
]

ALLOWED_KWARGS = frozenset({"enable_thinking", "thinking", "reasoning_effort"})
"""Template variables any request may set (the switches of reasoning models' templates)."""
RESERVED_KWARGS = frozenset(
    {
        "conversation",
        "messages",
        "tools",
        "documents",
        "tokenize",
        "padding",
        "truncation",
        "max_length",
        "return_tensors",
        "return_dict",
        "return_assistant_tokens_mask",
        "tokenizer_kwargs",
        "add_generation_prompt",
        "continue_final_message",
    }
)
"""``apply_chat_template``'s own arguments: never template variables."""
SPECIAL_TOKEN_KEYS = frozenset({"additional_special_tokens", "extra_special_tokens"})
MAX_VALUE_CHARS = 256
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MAX_CHARS = 8_000_000
"""About twice the largest body the server accepts (4 MiB by default)."""
DEFAULT_MAX_MEMORY = 1 << 30
CHILD_START_TIMEOUT_S = 120.0


def _refuse(message: str, param: str) -> RequestError:
    return RequestError(message, param=param, code="chat_template_not_allowed")


@dataclass(frozen=True)
class TemplatePolicy:
    """Which template inputs a request may send; ``check`` is the gate."""

    trust_request_templates: bool = False
    """The operator's opt-in: request templates and any variable (special tokens too)."""

    def check(
        self, kwargs: Mapping[str, Any] | None, template: str | None = None
    ) -> dict[str, Any]:
        """The variables to render with (a request template under ``chat_template``);
        ``RequestError`` (400) naming the first field refused."""
        out: dict[str, Any] = {}
        for key, value in (kwargs or {}).items():
            param = f"chat_template_kwargs.{key}"
            if key in RESERVED_KWARGS:
                raise _refuse(f"`{key}` is not a chat template variable", param)
            if self.trust_request_templates:
                out[key] = value
                continue
            if key == "chat_template":
                raise self._no_template(param)
            if key.endswith("_token") or key in SPECIAL_TOKEN_KEYS:
                raise _refuse(
                    f"`{key}` would override a special token of the model's template; "
                    "this server does not allow it",
                    param,
                )
            if key not in ALLOWED_KWARGS:
                allowed = ", ".join(sorted(ALLOWED_KWARGS))
                raise _refuse(f"unknown chat template variable `{key}` (allowed: {allowed})", param)
            if not _scalar(value):
                raise _refuse(
                    f"`{key}` must be a boolean, a number or a string of at most "
                    f"{MAX_VALUE_CHARS} characters",
                    param,
                )
            out[key] = value
        if template is not None:
            if not self.trust_request_templates:
                raise self._no_template("chat_template")
            out["chat_template"] = template
        return out

    @staticmethod
    def _no_template(param: str) -> RequestError:
        return _refuse(
            "this server renders prompts with the model's own chat template; a request "
            "template needs the operator's --trust-request-chat-template",
            param,
        )


def _scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_VALUE_CHARS
    return value is None or isinstance(value, bool | int | float)


class _Interrupted(BaseException):
    """Raised inside a render thread that ran past its time (BaseException: a template's
    own ``except Exception`` cannot swallow it)."""


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in another thread at its next bytecode (``None``: cancel a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None
    )


class _Job:
    """One in-thread render; ``interrupt`` stops it whether it is queued or running."""

    def __init__(self, fn: Callable[[], str]) -> None:
        self.fn = fn
        self.lock = threading.Lock()
        self.state = "queued"  # queued -> running -> done, or queued -> cancelled
        self.thread_id = 0
        self.interrupted = False

    def run(self) -> str:
        try:
            with self.lock:
                if self.state == "cancelled":
                    raise _Interrupted
                self.state, self.thread_id = "running", threading.get_ident()
            try:
                return self.fn()
            finally:
                with self.lock:
                    self.state = "done"
                    if self.interrupted:  # an exception still pending must not leak out
                        _raise_in(self.thread_id, None)
        except _Interrupted:
            raise TimeoutError("render interrupted") from None

    def interrupt(self) -> None:
        with self.lock:
            if self.state == "queued":
                self.state = "cancelled"
            elif self.state == "running" and not self.interrupted:
                self.interrupted = True
                _raise_in(self.thread_id, _Interrupted)


class _Wakeup:
    """A pool callback that sets an ``asyncio.Event`` from the pool's result thread."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def __call__(self, _: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self.loop.call_soon_threadsafe(self.event.set)


def _retrieve(future: asyncio.Future[str]) -> None:
    if not future.cancelled():
        future.exception()


def _start_child(max_bytes: int) -> None:
    """Child initializer: an address-space cap, so a template cannot exhaust memory; then
    Hugging Face's template module, so the first render is not an import."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    import transformers.utils.chat_template_utils  # noqa: F401


def _child_ready() -> bool:
    return True


def render_request_template(
    template: str,
    messages: list[dict[str, Any]],
    add_generation_prompt: bool,
    continue_final_message: bool,
    variables: dict[str, Any],
) -> str:
    """In the child process: Hugging Face's own rendering (its sandboxed Jinja environment)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(
        conversations=[messages],
        chat_template=template,
        add_generation_prompt=add_generation_prompt,
        continue_final_message=continue_final_message,
        **variables,
    )
    return rendered[0]


class TemplateRenderer:
    """Renders with a time limit and an output cap; see the module docstring."""

    def __init__(
        self,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_chars: int = DEFAULT_MAX_CHARS,
        max_memory_bytes: int = DEFAULT_MAX_MEMORY,
        threads: int = 1,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_chars = max_chars
        self.max_memory_bytes = max_memory_bytes
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="safework-render")
        self._child: Any = None  # a multiprocessing.Pool of one, started on first use
        self._child_lock = asyncio.Lock()

    async def render(self, fn: Callable[[], str]) -> str:
        """``fn()`` (the model's template) in the render thread, within the limits."""
        job = _Job(fn)
        future = asyncio.get_running_loop().run_in_executor(self._threads, job.run)
        future.add_done_callback(_retrieve)  # an interrupted render's error is expected
        try:
            text = await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            job.interrupt()
            raise self._too_slow() from None
        return self._checked(text)

    async def render_request_template(
        self,
        template: str,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool,
        continue_final_message: bool,
        variables: dict[str, Any],
    ) -> str:
        """A request's own template, in the memory-capped child, killed at the time limit.

        One render at a time (the child is one process); the wait counts in the time limit."""
        args = (template, messages, add_generation_prompt, continue_final_message, variables)
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._child_lock.acquire()
        except TimeoutError:
            raise self._too_slow() from None
        try:
            pool = await self._ready_child()
            done = _Wakeup()
            pending = pool.apply_async(
                render_request_template, args, callback=done, error_callback=done
            )
            try:
                async with asyncio.timeout(self.timeout_s):
                    await done.event.wait()
            except BaseException:  # too slow, or the request was cancelled: stop the child
                self._kill_child()
                raise
            text = pending.get()
        except TimeoutError:
            raise self._too_slow() from None
        except MemoryError:
            self._kill_child()
            raise RequestError(
                "the chat template needs more memory than this server allows",
                param="chat_template",
                code="chat_template_too_large",
            ) from None
        finally:
            self._child_lock.release()
        return self._checked(text)

    async def _ready_child(self) -> Any:
        """The child pool, started and with Jinja imported (its start is not render time)."""
        if self._child is None:
            ctx = multiprocessing.get_context("spawn")
            self._child = ctx.Pool(1, _start_child, (self.max_memory_bytes,))
            done = _Wakeup()
            self._child.apply_async(_child_ready, callback=done, error_callback=done)
            try:
                async with asyncio.timeout(CHILD_START_TIMEOUT_S):
                    await done.event.wait()
            except BaseException:
                self._kill_child()
                raise
        return self._child

    def _kill_child(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.terminate()

    def _checked(self, text: str) -> str:
        if len(text) > self.max_chars:
            raise RequestError(
                f"the rendered prompt has more than {self.max_chars} characters",
                param="messages",
                code="chat_template_too_large",
            )
        return text

    def _too_slow(self) -> RequestError:
        return RequestError(
            f"the chat template did not render within {self.timeout_s:g}s",
            param="messages",
            code="chat_template_timeout",
        )

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._kill_child()
