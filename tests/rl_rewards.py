"""A reward a randomly initialised tiny policy can learn, for the RL smoke tests.

``spaces``: word starts per generated token (8 per completion), i.e. the share of generated
tokens that begin with a space. Half of SmolLM2's vocabulary does, so a policy raises it by
moving its hidden state along one direction. Search results and the fallback answer, which the
policy did not write in the trained context, are left out. Named in routes as
``py:tests.rl_rewards:spaces``.
"""

from __future__ import annotations

import re
from typing import Any

_SERVER_TEXT = re.compile(r"<information>.*?</information>|<answer>.*?</answer>", re.S)


def spaces(prompts: list[str], completions: list[str], **meta: Any) -> list[float | None]:
    return [min(1.0, _SERVER_TEXT.sub("", c).count(" ") / 8) for c in completions]
