"""``load_conversations``: every malformed row is reported by line and reason; recipe helpers.

Run: ``pytest tests/test_training_rows.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safework.errors import ConfigError
from safework.training.data import load_conversations
from safework.training.math_cot import DEFAULT_MATH_MIX
from safework.training.rows import assign_groups, quotas

# --------------------------------------------------------------------------- load_conversations

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"messages": [', "invalid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"id": "x"}', "no 'messages' list"),
        ('{"messages": []}', "non-empty list"),
        ('{"messages": ["hi"]}', "messages[0] is not an object"),
        ('{"messages": [{"role": "bot", "content": "x"}]}', "role 'bot' is not one of"),
        ('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]}',
         "messages[1]: content must be a non-empty string"),
        ('{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}]}',
         "messages[0]: content must be a non-empty string"),
        ('{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]}',
         "no assistant message"),
        ('{"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]}',
         "the last message must be from the assistant"),
    ],
)  # fmt: skip
def test_load_conversations_reports_line_and_reason(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(f"{json.dumps(GOOD)}\n\n{json.dumps(GOOD)}\n{line}\n{json.dumps(GOOD)}\n")
    with pytest.raises(ConfigError) as info:
        load_conversations(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: ")
    assert reason in message


def test_load_conversations_reads_everything(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    system = {"messages": [{"role": "system", "content": "Be brief."}, *GOOD["messages"]]}
    path.write_text("\n".join(json.dumps(r) for r in (GOOD, system, GOOD)) + "\n")
    assert load_conversations(path) == [GOOD, system, GOOD]
    (tmp_path / "bad.jsonl").write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe\n")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2: not valid UTF-8"):
        load_conversations(tmp_path / "bad.jsonl")
    with pytest.raises(ConfigError, match="cannot read"):
        load_conversations(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    assert load_conversations(tmp_path / "empty.jsonl") == []


# --------------------------------------------------------------------------- helpers


def test_quotas_and_group_assignment() -> None:
    assert quotas(7, {"a": 1, "b": 1, "c": 1}) == {"a": 3, "b": 2, "c": 2}
    assert sum(quotas(600, DEFAULT_MATH_MIX).values()) == 600
    groups = [[f"g{g}r{r}" for r in range(3)] for g in range(4)]
    dev, train = assign_groups(groups, 4, 5)  # type: ignore[arg-type]
    assert dev == ["g0r0", "g0r1", "g0r2", "g1r0"]  # g1's other rows are left out
    assert train == ["g2r0", "g2r1", "g2r2", "g3r0", "g3r1"]
