"""Split a reasoning model's ``<think>...</think>`` block from its answer, while streaming.

Reasoning models (SafeWork-R1, DeepSeek-R1, Qwen3) write their chain of thought between
``<think>`` and ``</think>``; the OpenAI-style response carries it in ``reasoning_content``
and the rest in ``content``. Some chat templates open the ``<think>`` tag inside the prompt,
so the output starts mid-reasoning with only the closing tag: pass ``in_reasoning=True``
(``starts_in_reasoning(prompt)`` decides it) to handle that.

Text arrives in arbitrary pieces, so a tag may be split across deltas: the splitter holds
back only the tail that could still become a tag and releases it as soon as it cannot.

>>> s = ReasoningSplitter()
>>> [s.feed(t) for t in ["<thi", "nk>2+2", "=4</th", "ink>The answer is 4."]]
[('', ''), ('2+2', ''), ('=4', ''), ('', 'The answer is 4.')]
>>> s.flush()
('', '')
"""

from __future__ import annotations

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


def starts_in_reasoning(prompt: str) -> bool:
    """Whether the prompt leaves a ``<think>`` block open for the model to continue."""
    _, sep, tail = prompt.rpartition(OPEN_TAG)
    return bool(sep) and CLOSE_TAG not in tail


def _partial_tag_len(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ReasoningSplitter:
    """Stateful splitter: ``feed`` text deltas, get ``(reasoning_delta, content_delta)``."""

    def __init__(self, in_reasoning: bool = False) -> None:
        self.in_reasoning = in_reasoning
        self._seen_open = in_reasoning
        self._done = False  # after </think> everything is content
        self._strip_newlines = False  # drop the newlines right after </think>
        self._pending = ""

    def feed(self, text: str) -> tuple[str, str]:
        buf = self._pending + text
        self._pending = ""
        reasoning: list[str] = []
        content: list[str] = []
        while buf:
            if self._done:
                if self._strip_newlines:
                    buf = buf.lstrip("\n")
                    self._strip_newlines = not buf
                content.append(buf)
                break
            tag = CLOSE_TAG if self.in_reasoning else OPEN_TAG
            pos = buf.find(tag)
            if pos >= 0:
                (reasoning if self.in_reasoning else content).append(buf[:pos])
                buf = buf[pos + len(tag) :]
                if self.in_reasoning:
                    self.in_reasoning, self._done, self._strip_newlines = False, True, True
                else:
                    self.in_reasoning = self._seen_open = True
                continue
            hold = _partial_tag_len(buf, tag)
            out = buf[: len(buf) - hold]
            (reasoning if self.in_reasoning else content).append(out)
            self._pending = buf[len(buf) - hold :]
            break
        return "".join(reasoning), "".join(content)

    def flush(self) -> tuple[str, str]:
        """Release held-back text at the end of the stream."""
        rest, self._pending = self._pending, ""
        return (rest, "") if self.in_reasoning else ("", rest)


def split_reasoning(text: str, in_reasoning: bool = False) -> tuple[str | None, str]:
    """Split a whole completion; ``reasoning`` is ``None`` when there was no think block.

    >>> split_reasoning("<think>hmm</think>\\nYes.")
    ('hmm', 'Yes.')
    >>> split_reasoning("Plain answer.")
    (None, 'Plain answer.')
    """
    splitter = ReasoningSplitter(in_reasoning)
    r1, c1 = splitter.feed(text)
    r2, c2 = splitter.flush()
    reasoning = r1 + r2
    has_block = splitter._seen_open
    return (reasoning if has_block else None), c1 + c2
