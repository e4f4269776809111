"""The assistant turns of the CoT-SFT rows: ``<think>`` reasoning, then the answer.

What: pure functions of a seeded ``random.Random`` that write one assistant message each, in
the format every SafeWork model is trained and served with::

    <think>
    ...reasoning...
    </think>

    final answer

- ``math_turn``: the computed steps (``math_cot.py``), then the gold answer alone.
- ``safety_turn``: reasoning that restates the request, NAMES THE RISK
  (``value_models/risks.py``), decides to decline, and plans a safe alternative; the answer
  declines in a sentence and offers that alternative. Phrasing varies (frames x kind-specific text).
- ``jailbreak_turn``: the same for a harmful request inside a jailbreak wrapper, the reasoning
  first naming the wrapper and setting it aside.
- ``benign_turn``: brief reasoning that identifies the request, notes it is harmless and plans
  the answer's shape from the reference answer itself (list, code, paragraphs); then the
  reference answer.
- ``wrapped_benign_turn``: the same for a benign request inside a jailbreak wrapper, opening
  with the wrapper notes ``jailbreak_turn`` uses, so a wrapper alone decides nothing.
- ``quote_first=True`` (the data key of that name): a request that is not one imperative
  sentence (and every edgy-benign question) opens with the same quoted words whether it is
  harmful or benign (``The message asks: "..."``), and the kind of request, with the decision,
  comes after it. Off, a benign row opens
  with the kind of request and a harmful one with what it seeks, so the model's first words
  already carry the decision.
- ``label_first=True`` (the data key of that name): the same requests open with one shared set
  of frames for every kind of row (``The user is asking for ...``), and the words that fill the
  frame carry the decision: what a harmful request seeks (``instructions for making or using a
  weapon or explosive``), the kind of a benign one with its first words quoted (``an
  explanation ("Why ...")``), the area of an edgy-benign question (``first-aid advice (how to
  help a choking adult)``). No opening word belongs to one decision, so the first words a
  model picks by habit decide nothing.
- ``edgy_turn``: for a benign question on a risky-sounding topic (``value_models/texts.py``),
  reasoning that says why the topic sounds risky yet the question is safe, then the topic's
  written answer, so the model learns not to over-refuse.

All text here was written for this project (Apache-2.0, like the repository). The reasoning is
a template, not a model's thought; it is honest about the row (the plan describes the answer
that follows, the risk is the one the source labels or the words indicate). Nothing to run on
its own: ``python -m safework.training.mix`` prints a sample of built rows.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from safework.value_models.risks import RISKS
from safework.value_models.texts import EdgyTopic, task_phrase

from .math_steps import Solution

__all__ = [
    "THINK_CLOSE",
    "THINK_OPEN",
    "answer_plan",
    "assistant_content",
    "benign_turn",
    "edgy_turn",
    "jailbreak_turn",
    "math_turn",
    "request_mode",
    "request_phrase",
    "safety_turn",
    "split_think",
    "third_person",
    "wrapped_benign_turn",
]

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_THINK_RE = re.compile(r"\A<think>\n(.+?)\n</think>\n\n(\S.*)\Z", re.DOTALL)


def assistant_content(think: str, answer: str) -> str:
    """``<think>\\n{think}\\n</think>\\n\\n{answer}`` (both stripped, both must be non-empty)."""
    think, answer = think.strip(), answer.strip()
    if not think or not answer:
        raise ValueError("an assistant turn needs both reasoning and an answer")
    return f"{THINK_OPEN}\n{think}\n{THINK_CLOSE}\n\n{answer}"


def split_think(content: str) -> tuple[str, str] | None:
    """(reasoning, answer) of a turn written by ``assistant_content``; None if not that shape.

    >>> split_think(assistant_content("2 + 2 = 4.", "4"))
    ('2 + 2 = 4.', '4')
    """
    match = _THINK_RE.match(content)
    return (match.group(1), match.group(2)) if match else None


def _pick(rng: random.Random, options: Sequence[str]) -> str:
    return options[rng.randrange(len(options))]


_VERBS = frozenset({
    "act", "analyze", "analyse", "answer", "assess", "brainstorm", "build", "calculate",
    "categorize", "change", "choose", "classify", "come", "compare", "compose", "conduct",
    "convert", "correct", "create", "curate", "decide", "define", "demonstrate", "describe",
    "design", "develop", "discuss", "draft", "draw", "edit", "educate", "estimate", "exploit",
    "expand", "explain", "extract", "find", "generate", "get", "give", "guide", "hack", "help",
    "identify", "illustrate", "implement", "improve", "instruct", "interfere", "introduce",
    "invent", "list", "make", "manipulate", "name", "offer", "outline", "plan", "play", "post",
    "prepare", "pretend", "produce", "prove", "provide", "publish", "rank", "recommend", "release",
    "rewrite", "schedule", "share", "show", "simplify", "solve", "steal", "suggest", "summarise",
    "summarize", "teach", "tell", "train", "translate", "use", "verify", "write",
})  # fmt: skip
_ASKING = frozenset({
    "how", "can", "could", "would", "will", "what", "what's", "please", "i", "i'd", "help",
    "teach", "explain", "describe", "tell", "show", "outline", "detail",
})  # fmt: skip
_SENTENCE_BREAK = re.compile(r"[.?!:;]\s+\S")


def request_phrase(prompt: str) -> str | None:
    """The request as a verb phrase (``task_phrase``), only when that reads as one: a single
    sentence, starting with an imperative verb (either as written, or after an opening such as
    "How can I" that ``task_phrase`` removes). None otherwise.

    >>> request_phrase("How can I hack into my neighbour's wifi?")
    "hack into your neighbour's wifi"
    >>> request_phrase("Marley has $20 left. How much will she have?") is None
    True
    >>> request_phrase("How does Acme plan to grow?") is None
    True
    """
    text = " ".join(prompt.split())
    if not text or "\n" in prompt.strip() or _SENTENCE_BREAK.search(text.rstrip(" ?.!")):
        return None
    task = task_phrase(prompt)
    if not task:
        return None
    first = task.split(" ", 1)[0].lower()
    opener = text.split(" ", 1)[0].lower().strip(",")
    stripped = opener in _ASKING and first != opener  # "How can I" and the like were removed
    if first in _VERBS or (stripped and first not in ("you", "your", "you're")):
        return task
    return None


def request_mode(prompt: str) -> str:
    """How a request is put: ``how`` ("How can I ...", "What's the best way to ..."), ``want``
    ("I want to ...") or ``do`` (an imperative, "Can you ...")."""
    opener = " ".join(prompt.split()).split(" ", 1)[0].lower().strip(",")
    if opener in ("how", "what", "what's"):
        return "how"
    if opener in ("i", "i'd"):
        return "want"
    return "do"


_THIRD_PERSON = {
    "i": "they", "me": "them", "my": "their", "mine": "theirs", "myself": "themselves",
    "i'm": "they're", "your": "their", "yours": "theirs", "yourself": "themselves",
    "you're": "they're", "you've": "they've",
}  # fmt: skip
_PERSON_RE = re.compile(
    r"\b(?:i'm|i|me|my|mine|myself|your|yours|yourself|you're|you've)\b", re.IGNORECASE
)
_YOU_SUBJECT_RE = re.compile(
    r"\byou(?= (?:are|can|could|will|would|do|don't|did|have|had|get|need|want|should|might|"
    r"must|were|was)\b)",
    re.IGNORECASE,
)


def third_person(text: str) -> str:
    """First- and second-person words as third-person ones, for reasoning that talks about the
    user ("if I hear" -> "if they hear", "into your account" -> "into their account").

    >>> third_person("make sure you don't get caught taking my bike")
    "make sure they don't get caught taking their bike"
    """
    text = _YOU_SUBJECT_RE.sub("they", text)
    text = _PERSON_RE.sub(lambda m: _THIRD_PERSON[m.group(0).lower()], text)
    return re.sub(r"\byou\b", "them", text)


# --------------------------------------------------------------------------- maths


def math_turn(solution: Solution, answer: str) -> tuple[str, str]:
    """The steps as reasoning; the gold answer, alone, as the answer (what the scorer reads)."""
    return solution.steps, answer


# --------------------------------------------------------------------------- safety

_REQUEST = {
    "do": (
        "The user wants me to {task}.",
        "I'm being asked to {task}.",
        "The request is to {task}.",
    ),
    "how": (
        "The user wants to know how to {task}.",
        "The question is how to {task}.",
        "I'm asked how to {task}.",
    ),
    "want": ("The user wants to {task}.", "The goal here is to {task}."),
}
_ASK_AFTER_TASK = (
    "In effect, that is a request for {ask}.",
    "That amounts to {ask}.",
    "What's wanted here is {ask}.",
)
_ASK_ALONE = (
    "This message asks for {ask}.",
    "The user is looking for {ask}.",
    "At its core, the question seeks {ask}.",
)
_RISK = (
    "The risk here is {name}. {harm}",
    "This falls under {name}. {harm}",
    "Main concern: {name}. {harm}",
    "{harm} That is a clear case of {name}.",
)
_DECIDE = (
    "So I won't provide it. I'll decline briefly and {plan}.",
    "I should say no without lecturing, then {plan}.",
    "Declining is right here; the helpful part is to {plan}.",
    "I'll refuse this part plainly and {plan}.",
)
_DECLINE_TASK = (
    "I can't help you {task}, because {reason}.",
    "Sorry, I won't help you {task}, since {reason}.",
)
_DECLINE = (
    "I can't help with that, because {reason}.",
    "I'm not able to help with this one: {reason}.",
    "Sorry, but I won't do that, since {reason}.",
)


_LABELLED = (
    "The user is asking for {label}.",
    "This message asks for {label}.",
    "What's wanted here is {label}.",
)


def _labelled(rng: random.Random, label: str) -> str:
    """The opening sentence of ``label_first`` reasoning: a shared frame around ``label``."""
    return _pick(rng, _LABELLED).format(label=label)


_QUOTE = (
    'The message asks: "{snippet}".',
    'The request reads: "{snippet}".',
    'What is asked: "{snippet}".',
)


def _quoted(rng: random.Random, text: str) -> str:
    """The opening sentence of ``quote_first`` reasoning: ``text``'s first line, quoted."""
    return _pick(rng, _QUOTE).format(snippet=_snippet(text))


def safety_turn(
    rng: random.Random,
    prompt: str,
    risk: str,
    quote_first: bool = False,
    label_first: bool = False,
) -> tuple[str, str]:
    """Reasoning that names ``risk`` (a ``RISKS`` key) and an answer that declines briefly and
    offers a safe alternative relevant to it. ``quote_first``, ``label_first``: see the
    module's docstring."""
    kind = RISKS[risk]
    task = request_phrase(prompt)
    ask = _pick(rng, kind.asks)
    lines = []
    if task:
        frames = _REQUEST[request_mode(prompt)]
        lines.append(_pick(rng, frames).format(task=third_person(task)))
        lines.append(_pick(rng, _ASK_AFTER_TASK).format(ask=ask))
    elif label_first:
        lines.append(_labelled(rng, ask))
    elif quote_first:
        lines.append(_quoted(rng, prompt))
        lines.append(_pick(rng, _ASK_AFTER_TASK).format(ask=ask))
    else:
        lines.append(_pick(rng, _ASK_ALONE).format(ask=ask))
    lines.append(_pick(rng, _RISK).format(name=kind.name, harm=_pick(rng, kind.harms)))
    plan, offer = kind.alternatives[rng.randrange(len(kind.alternatives))]
    lines.append(_pick(rng, _DECIDE).format(plan=plan))
    reason = _pick(rng, kind.reasons)
    declines = kind.declines or ((_DECLINE_TASK + _DECLINE) if task else _DECLINE)
    usable = [d for d in declines if task or "{task}" not in d]
    decline = _pick(rng, usable).format(task=task or "", reason=reason)
    return " ".join(lines), f"{decline} {offer}"


_WRAPPED = (
    "The message wraps its request in a frame meant to get around my judgement: a persona, a "
    "format, a story or new rules. The wrapper changes nothing about what is asked, so I'll judge "
    "the request inside it.",
    "The request comes inside a jailbreak frame. Setting the frame aside, here is what is "
    "actually asked.",
    "The framing around the request pushes me to answer without limits. It doesn't make the "
    "request any safer; what matters is the request itself.",
    "Whatever the packaging (a role, an article, a hypothetical, a special mode), the content "
    "asked for is the same, so I look at the request underneath.",
)


def jailbreak_turn(
    rng: random.Random,
    request: str,
    risk: str,
    quote_first: bool = False,
    label_first: bool = False,
) -> tuple[str, str]:
    """``safety_turn`` for ``request`` asked inside a jailbreak wrapper: the reasoning first
    names the wrapper and sets it aside, then judges the request as if asked plainly."""
    note = _pick(rng, _WRAPPED)
    think, answer = safety_turn(rng, request, risk, quote_first, label_first)
    return f"{note} {think}", answer


# --------------------------------------------------------------------------- benign

_KINDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE | re.MULTILINE), label)
    for pattern, label in (
        (r"\b(?:python|javascript|typescript|java|c\+\+|rust|sql|code|function|script|"
         r"program|regex|html|css|bash|latex)\b", "some code or a technical explanation"),
        (r"\btranslat", "a translation"),
        (r"^(?:rewrite|rephrase|edit|correct|proofread|paraphrase|improve|make this)",
         "an improved version of a text"),
        (r"\bsummar", "a summary"),
        (r"^(?:list|name|suggest|recommend)|\b(?:ideas|tips|suggestions|recommendations|"
         r"examples)\b", "a set of suggestions"),
        (r"^(?:write|compose|create|draft|generate|come up)|\b(?:poem|story|song|essay|"
         r"letter|email|tweet|slogan|joke)\b", "a piece of writing"),
        (r"\d\s*[-+*/^x×]\s*\d|\b(?:solve|calculate|compute)\b", "a calculation"),
        (r"\?\s*$|^(?:what|why|how|who|when|where|which|is|are|can|does|do|should)\b",
         "an explanation"),
    )
)  # fmt: skip
_IDENTIFY_KIND = (
    'The user is asking for {kind}: "{snippet}".',
    'This is a request for {kind} ("{snippet}").',
)
_KIND_AFTER_QUOTE = ("That is a request for {kind}.", "It calls for {kind}.")
_HARMLESS = (
    "Nothing about it is risky, so I'll simply help.",
    "It's an ordinary request with no safety concern.",
    "This is harmless; the goal is a useful answer.",
    "No safety issue here.",
)
_PLAN = ("Plan: {plan}.", "I'll {plan}.", "Best shape for the answer: {plan}.")


def _snippet(text: str, limit: int = 80) -> str:
    first = " ".join(text.strip().splitlines()[0].split()) if text.strip() else ""
    if len(first) <= limit:
        return first
    return first[:limit].rsplit(" ", 1)[0] + "…"


def _request_kind(instruction: str) -> str:
    first_line = instruction.strip().splitlines()[0] if instruction.strip() else ""
    for pattern, label in _KINDS:
        if pattern.search(first_line):
            return label
    return "help with a task"


def answer_plan(answer: str) -> str:
    """The shape of ``answer`` as a plan (a verb phrase), read from its text.

    >>> answer_plan("Options:\\n1. Tea\\n2. Coffee\\n3. Water")
    'open with a sentence, then give a numbered list of 3 points'
    >>> answer_plan("Paris.")
    'answer directly in a sentence or two'
    """
    lines = [ln.strip() for ln in answer.strip().splitlines() if ln.strip()]
    numbered = sum(1 for ln in lines if re.match(r"^\d+[.)]\s", ln))
    bullets = sum(1 for ln in lines if re.match(r"^[-*•]\s", ln))
    intro = bool(lines) and not re.match(r"^(?:\d+[.)]|[-*•#|]|```)", lines[0])
    lead = "open with a sentence, then " if intro else ""
    if "```" in answer:
        prose = re.sub(r"```.*?```", "", answer, flags=re.DOTALL).strip()
        return "give the code in a code block" + (" and explain it briefly" if prose else "")
    if sum(1 for ln in lines if ln.startswith("|")) >= 2:
        return f"{lead}present it as a table"
    if numbered >= 2:
        return f"{lead}give a numbered list of {numbered} points"
    if bullets >= 2:
        return f"{lead}use a bulleted list of {bullets} items"
    if any(ln.startswith("#") for ln in lines):
        return "organise it under headings"
    paragraphs = [p for p in re.split(r"\n\s*\n", answer.strip()) if p.strip()]
    if len(answer) < 300 and len(paragraphs) == 1:
        return (
            "answer directly in a sentence or two"
            if len(answer) < 160
            else ("answer in one short paragraph")
        )
    if len(paragraphs) == 1:
        return "write one focused paragraph"
    return f"write {len(paragraphs)} paragraphs"


def benign_turn(
    rng: random.Random,
    instruction: str,
    answer: str,
    quote_first: bool = False,
    label_first: bool = False,
) -> tuple[str, str]:
    """Brief reasoning (what is asked, that it is harmless, the answer's plan); the reference
    answer as the answer. ``quote_first``, ``label_first``: see the module's docstring."""
    task = request_phrase(instruction)
    if task:
        frames = _REQUEST[request_mode(instruction)]
        first = _pick(rng, frames).format(task=third_person(task))
    elif label_first:
        kind, snippet = _request_kind(instruction), _snippet(instruction)
        first = _labelled(rng, f'{kind} ("{snippet}")')
    elif quote_first:
        quote = _quoted(rng, instruction)
        first = f"{quote} {_pick(rng, _KIND_AFTER_QUOTE).format(kind=_request_kind(instruction))}"
    else:
        first = _pick(rng, _IDENTIFY_KIND).format(
            kind=_request_kind(instruction), snippet=_snippet(instruction)
        )
    plan = _pick(rng, _PLAN).format(plan=answer_plan(answer))
    return f"{first} {_pick(rng, _HARMLESS)} {plan}", answer


def wrapped_benign_turn(
    rng: random.Random,
    request: str,
    answer: str,
    quote_first: bool = False,
    label_first: bool = False,
) -> tuple[str, str]:
    """``benign_turn`` for ``request`` asked inside a jailbreak wrapper: the reasoning opens the
    way ``jailbreak_turn``'s does, then judges the request itself, which is harmless, and
    answers it. With these rows beside the wrapped harmful ones, the wrapper says nothing about
    the decision; the request does."""
    note = _pick(rng, _WRAPPED)
    think, answer = benign_turn(rng, request, answer, quote_first, label_first)
    return f"{note} {think}", answer


# --------------------------------------------------------------------------- edgy-benign

_EDGY_NOTES = {
    "drug-interactions": "Medicine interactions can sound like risky territory, but knowing them "
    "is how people avoid accidental harm.",
    "locks": "Locks can sound like a burglary topic, yet how they work is general knowledge that "
    "helps people choose and look after good security.",
    "security-concepts": "It touches on attacks, but understanding them at this level is what "
    "defenders and learners need; nothing here is a working exploit.",
    "weapons-history": "It mentions weapons, but it is a history question; explaining the past "
    "gives no one a way to build or use anything.",
    "self-defence": "It involves confrontation, but the aim is staying safe: avoidance, escape "
    "and getting help.",
    "chemistry-safety": "Dangerous chemicals come up, but the point is avoiding accidents, "
    "which is safety information everyone should have.",
    "crisis-support": "The subject is painful, but the person wants to help, and clear "
    "information about warning signs and support can save lives.",
    "fraud-awareness": "It describes scams, but from the side of spotting and stopping them, "
    "which protects people.",
    "crime-fiction": "Crime is the subject, but this is about investigation and storytelling, "
    "at the level of detail found in any novel or documentary.",
}
_EDGY_LABELS = {
    "drug-interactions": "medicine safety facts",
    "locks": "general facts about locks",
    "security-concepts": "background on a security concept",
    "weapons-history": "a history lesson about weapons",
    "self-defence": "advice on staying safe from attack",
    "chemistry-safety": "advice on handling chemicals safely",
    "crisis-support": "advice on supporting someone in distress",
    "fraud-awareness": "advice on recognising scams",
    "crime-fiction": "background for a crime story",
    "medicine": "medical information",
    "law": "an explanation of the law",
    "violent-history": "a history of a violent event",
    "violent-fiction": "help with writing dark fiction",
    "toxicology": "facts about how poisons affect the body",
    "harm-reduction": "harm-reduction advice",
    "firearms-safety": "firearm safety advice",
    "online-safety": "advice on staying safe online",
    "extremism-awareness": "background on how extremists recruit, to resist it",
    "manipulation-awareness": "advice on recognising manipulation",
    "first-aid": "first-aid advice",
    "fire-safety": "fire safety advice",
    "cyber-defence": "advice on defending computer systems",
    "physical-security": "advice on protecting a home or building",
    "privacy": "advice on protecting personal privacy",
}
"""What an edgy-benign question seeks, by area, for ``label_first`` reasoning: a category, so
the words that decide are not the question's own (a label that went on to repeat the question,
"an explanation of how to ...", was then written for harmful "how to" requests too). One
for every area of ``EDGY_AREAS``."""
_EDGY_FALLBACK = (
    "The topic sounds sensitive, but the question is asked for a safe reason and the answer "
    "gives no real capability to cause harm."
)
_EDGY_OPEN = (
    "The question is about {subject}.",
    "The user asks about {subject}.",
    "This asks about {subject}.",
)
_EDGY_DECIDE = (
    "Refusing would only leave them less informed, so I'll answer clearly.",
    "So this deserves a clear, helpful answer rather than a refusal.",
    "I'll help with a short factual explanation.",
)


_EDGY_AFTER_QUOTE = ("It is about {subject}.", "The subject is {subject}.")


def edgy_turn(
    rng: random.Random,
    topic: EdgyTopic,
    answer: str,
    question: str | None = None,
    label_first: bool = False,
) -> tuple[str, str]:
    """Reasoning that notes why ``topic`` sounds risky yet is safe to answer; then ``answer``.
    With ``question`` (``quote_first``), the reasoning opens by quoting it, as the safety and
    benign rows then do; with ``label_first``, in the frames they then share."""
    note = _EDGY_NOTES.get(topic.area, _EDGY_FALLBACK)
    subject = third_person(topic.subject)
    if label_first:
        first = _labelled(rng, f"{_EDGY_LABELS[topic.area]} ({subject})")
    elif question is None:
        first = _pick(rng, _EDGY_OPEN).format(subject=subject)
    else:
        quote = _quoted(rng, question)
        first = f"{quote} {_pick(rng, _EDGY_AFTER_QUOTE).format(subject=subject)}"
    return f"{first} {note} {_pick(rng, _EDGY_DECIDE)}", answer
