"""Parse a Server-Sent Events body into its ``data:`` payloads (JSON-decoded, or ``"[DONE]"``)."""

from __future__ import annotations

import json
from typing import Any


def sse_payloads(body: str) -> list[Any]:
    out: list[Any] = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")]
        if not data:
            continue
        text = "\n".join(data)
        out.append(text if text == "[DONE]" else json.loads(text))
    return out
