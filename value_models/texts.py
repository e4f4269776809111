"""Text written for this project: refusals, compliant openings and edgy-benign prompts.

What: the hand-written half of the built-in value models' training data (``data.py`` pairs it
with prompts read from pinned public wheels). Refusals come plain or offering a safe
alternative; compliant openings ("Sure, here is how to ...: Step 1:") stand for the answer that
follows; *edgy-benign* topics are benign questions on risky-sounding subjects, asked for safe
reasons, each with a short safe answer.

Why: public sets give harmful and benign prompts but few labeled responses, so the responses
are templates filled with the request (``task_phrase`` turns "How can I ...?" into "... your
..."), and the edgy-benign questions teach the models that a scary topic alone is not harm.
All of it was written for this project (Apache-2.0, like the repository); none is copied from
a data set. The same compliant openings follow harmful and benign prompts alike, so only the
prompt can decide a pair's label.

How: pure functions of a ``random.Random``; nothing to run on its own (``python -m
safework.value_models.data`` prints the built dataset's counts).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

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


# --------------------------------------------------------------------------- edgy-benign


@dataclass(frozen=True)
class EdgyTopic:
    """A risky-sounding topic with a safe reason to ask and a safe, helpful answer."""

    key: str
    area: str
    subject: str
    answer: str


_AREAS: dict[str, tuple[tuple[str, ...], str]] = {
    "drug-interactions": (
        (
            "My elderly mother takes several medicines.",
            "I'm a pharmacy technician in training.",
            "I'm a caregiver and want to avoid mistakes.",
            "I just got a new prescription and want to be careful.",
        ),
        "A pharmacist can check your specific medicines for interactions.",
    ),
    "locks": (
        (
            "I'm choosing a new lock for my front door.",
            "I'm studying to become a locksmith.",
            "I got locked out of my own flat last week.",
            "I'm curious how the lock on my shed works.",
        ),
        "For a stuck lock you own, a licensed locksmith is the quickest safe option.",
    ),
    "security-concepts": (
        (
            "I'm a junior developer securing our web app.",
            "I'm preparing for a security certification exam.",
            "My manager asked me to run security awareness training.",
            "I run IT for a small charity.",
        ),
        "Practise only on systems you own or are authorised to test.",
    ),
    "weapons-history": (
        (
            "I'm writing a history essay.",
            "My son asked me about this after a museum visit.",
            "I'm researching a documentary script.",
            "I teach secondary-school history.",
        ),
        "Museum collections and academic histories are good next sources.",
    ),
    "self-defence": (
        (
            "I often walk home alone late at night.",
            "I travel alone for work.",
            "I teach a community self-defence class.",
            "My teenage daughter just started commuting by herself.",
        ),
        "A reputable local self-defence class lets you practise this safely.",
    ),
    "chemistry-safety": (
        (
            "I'm cleaning my bathroom this weekend.",
            "I'm a chemistry teacher preparing a safety lesson.",
            "I just moved into a house with old chemicals in the garage.",
            "I run a small cleaning business and train my staff.",
        ),
        "Product labels and safety data sheets give the specifics for each chemical.",
    ),
    "crisis-support": (
        (
            "A friend of mine has been very low lately.",
            "I'm a school counsellor.",
            "I volunteer at a youth centre.",
            "I'm worried about my brother.",
        ),
        "If someone is in immediate danger, call the emergency number or a crisis line.",
    ),
    "fraud-awareness": (
        (
            "I want to protect my elderly parents.",
            "I work on a bank's customer support team.",
            "I'm writing a guide for our neighbourhood newsletter.",
            "My grandmother nearly got scammed last month.",
        ),
        "If you think you've been targeted, contact your bank and report it to the police.",
    ),
    "crime-fiction": (
        (
            "I'm writing a mystery novel.",
            "I'm drafting a true-crime podcast episode.",
            "I'm a screenwriter working on a detective series.",
        ),
        "Readers respond to accurate procedure more than to gory detail.",
    ),
}

_TOPICS: tuple[tuple[str, str, str, str], ...] = (
    # (key, area, subject, safe helpful answer)
    ("warfarin-nsaid", "drug-interactions", "why ibuprofen is risky for someone on warfarin",
     "Ibuprofen and other NSAIDs affect platelets and irritate the stomach lining, so together "
     "with warfarin they raise the risk of serious bleeding. Paracetamol is usually preferred "
     "for pain, but the prescriber should confirm the dose."),
    ("alcohol-paracetamol", "drug-interactions", "why alcohol and paracetamol can harm the liver",
     "Both are processed by the liver, and heavy drinking increases the toxic metabolite "
     "paracetamol forms. Staying within the labelled dose and avoiding heavy drinking keeps "
     "the risk low."),
    ("grapefruit", "drug-interactions", "why grapefruit juice interacts with some medications",
     "Grapefruit blocks an enzyme in the gut (CYP3A4) that breaks down drugs such as some "
     "statins and calcium-channel blockers, so more of the drug reaches the blood. The leaflet "
     "or a pharmacist says which medicines are affected."),
    ("serotonin-syndrome", "drug-interactions", "what serotonin syndrome is",
     "Serotonin syndrome is an excess of serotonin activity, usually from combining drugs such "
     "as SSRIs with tramadol, triptans, St John's wort or MAO inhibitors. Agitation, fever, "
     "sweating and muscle twitching are warning signs that need urgent care."),
    ("opioid-overdose", "drug-interactions", "the signs of an opioid overdose",
     "Warning signs are pinpoint pupils, very slow or stopped breathing, blue lips and "
     "unresponsiveness. Naloxone temporarily reverses opioids; call emergency services even "
     "after giving it, because it can wear off."),
    ("benzo-alcohol", "drug-interactions", "why benzodiazepines and alcohol are dangerous together",
     "Both depress the central nervous system, and together they can slow breathing far more "
     "than either alone. People prescribed a benzodiazepine are usually told to avoid alcohol."),
    ("child-fever-dose", "drug-interactions", "how to avoid overdosing a child on fever medicine",
     "Dose by the child's weight with the syringe that comes with the product, write down the "
     "times, and check that cold remedies don't contain the same active ingredient."),
    ("antibiotics-pill", "drug-interactions", "whether antibiotics weaken birth control pills",
     "Most common antibiotics do not, but rifampicin and related drugs clearly lower hormone "
     "levels. Vomiting or diarrhoea can also reduce absorption, so backup contraception may be "
     "advised."),
    ("pin-tumbler", "locks", "how a pin tumbler lock works",
     "Spring-loaded pin stacks block the plug from turning. The right key lifts each stack so "
     "the gap between key pins and driver pins sits at the shear line, and the plug rotates."),
    ("deadbolt-latch", "locks", "the difference between a deadbolt and a spring latch",
     "A spring latch is bevelled and springs back, so it can be pushed or slipped; a deadbolt "
     "only moves with the key or thumb turn. A deadbolt with a reinforced strike plate resists "
     "forced entry much better."),
    ("security-pins", "locks", "what security pins such as spool pins do",
     "Spool and serrated pins catch at the shear line and give misleading feedback, which makes "
     "manipulation slower. Manufacturers add them to raise the time and skill an attack needs."),
    ("padlock-grades", "locks", "how padlock security ratings work",
     "Standards such as EN 12320 grade padlocks by resistance to cutting, pulling, drilling and "
     "manipulation. Higher grades use hardened shackles, ball-bearing locking and better "
     "cylinders."),
    ("smart-locks", "locks", "what security risks smart locks have",
     "Risks include weak Bluetooth pairing, unpatched firmware, relay attacks on proximity "
     "unlocking and flat batteries. Choose models with regular updates and a mechanical backup."),
    ("locksmith-lockout", "locks", "what a locksmith does when someone is locked out",
     "A locksmith first checks that you live there, then usually opens the door without damage "
     "and drills the lock only as a last resort. A spare key with someone you trust avoids the "
     "call-out."),
    ("restricted-keys", "locks", "why some keys are marked 'do not duplicate'",
     "The stamp is mostly a request; real control comes from restricted keyways whose blanks "
     "are sold only to authorised dealers who check an ID card."),
    ("bump-proofing", "locks", "how to protect a door against lock bumping",
     "Bumping works on standard pin tumbler cylinders; bump-resistant cylinders, security pins "
     "or disc-detainer locks reduce the risk. A solid frame and strike plate matter as much."),
    ("sql-injection", "security-concepts", "how SQL injection works and how to prevent it",
     "SQL injection happens when user input is pasted into a query string and changes its "
     "meaning. Parameterised queries, least-privilege database accounts and input validation "
     "prevent it."),
    ("phishing-signs", "security-concepts", "how to recognise a phishing email",
     "Look for urgency, a sender domain that doesn't match the organisation, links whose real "
     "address differs from the text, and requests for passwords or payment. Report it rather "
     "than clicking."),
    ("ransomware", "security-concepts", "how ransomware spreads inside a company network",
     "It often enters through phishing or exposed remote desktop, then moves with stolen "
     "credentials before encrypting files. Offline backups, patching, MFA and network "
     "segmentation limit the damage."),
    ("buffer-overflow", "security-concepts", "what a buffer overflow vulnerability is",
     "A program writes past the end of a memory buffer and overwrites adjacent data such as a "
     "return address. Bounds checks, memory-safe languages, stack canaries and ASLR make "
     "exploitation much harder."),
    ("password-cracking", "security-concepts", "how stolen password hashes get cracked",
     "Attackers guess offline against leaked hashes with wordlists and GPUs. Slow salted hashes "
     "like bcrypt or Argon2, long unique passwords and MFA defeat most attempts."),
    ("ddos", "security-concepts", "how a DDoS attack works",
     "A distributed denial-of-service attack floods a service from many machines, often a "
     "botnet, until it cannot answer real users. Scrubbing services, rate limits and CDNs "
     "absorb it."),
    ("xss", "security-concepts", "what cross-site scripting is",
     "An attacker's script runs in another user's browser because a site echoes untrusted input "
     "without escaping it. Output encoding, auto-escaping templates and a Content Security "
     "Policy prevent it."),
    ("social-engineering", "security-concepts", "how social engineering tricks employees",
     "Attackers impersonate IT staff, executives or suppliers and use urgency or authority to "
     "get passwords or payments. Verifying requests through a known channel is the best defence."),
    ("longbow", "weapons-history", "how the English longbow changed medieval warfare",
     "Massed longbowmen shot several aimed arrows a minute at long range, which helped win "
     "battles such as Crécy and Agincourt against armoured cavalry. Training took years, so "
     "English law required archery practice."),
    ("gunpowder", "weapons-history", "how gunpowder spread from China to Europe",
     "Chinese alchemists described gunpowder by the 9th century, and its use in fire arrows and "
     "bombs spread along Mongol conquests and trade routes. By the 14th century cannons appeared "
     "in European armies."),
    ("manhattan-project", "weapons-history", "the history of the Manhattan Project",
     "It was the US-led wartime programme, with British and Canadian help, that built the first "
     "atomic bombs at Los Alamos, Oak Ridge and Hanford. The bombings of Hiroshima and Nagasaki "
     "in 1945 began the nuclear age and decades of arms-control debate."),
    ("gas-ban", "weapons-history", "why chemical weapons were banned after the First World War",
     "Gas attacks such as chlorine at Ypres in 1915 caused horrific injuries and public outrage. "
     "The 1925 Geneva Protocol banned their use, and the 1993 Chemical Weapons Convention banned "
     "production and stockpiles."),
    ("sieges", "weapons-history", "how medieval castles were besieged",
     "Attackers blockaded defenders, used trebuchets, dug mines under walls and later brought "
     "cannon. Castles answered with concentric walls, moats and machicolations."),
    ("ak47", "weapons-history", "why the AK-47 became so widespread in the 20th century",
     "It was simple, cheap and tolerant of dirt and neglect, and the Soviet Union licensed or "
     "supplied it widely. Huge surplus stocks made it the commonest rifle of Cold War conflicts."),
    ("greek-fire", "weapons-history", "what historians know about Greek fire",
     "It was an incendiary weapon of the Byzantine navy from the 7th century, sprayed through "
     "siphons onto enemy ships. The recipe was a state secret and is still unknown."),
    ("katana", "weapons-history", "how Japanese swords were traditionally made",
     "Smiths folded and forged tamahagane steel, then coated the blade with clay of varying "
     "thickness before quenching, giving a hard edge and a flexible spine. The hamon line comes "
     "from that differential hardening."),
    ("wrist-grab", "self-defence", "how to break free from a wrist grab",
     "Rotate your wrist toward the attacker's thumb, the weakest point of the grip, and pull "
     "sharply while stepping away. The goal is distance and safety, not a fight."),
    ("followed", "self-defence", "what to do if someone is following me at night",
     "Head to a busy, well-lit place such as a shop, call someone or the emergency number, and "
     "don't lead them to your home. Trust your instincts and make noise if approached."),
    ("de-escalation", "self-defence", "how to de-escalate an aggressive person",
     "Keep a calm voice, open hands and space between you, acknowledge their feelings and "
     "avoid arguing. Leave as soon as you safely can."),
    ("pepper-spray", "self-defence", "whether pepper spray is legal to carry",
     "It depends on where you live: it is legal with limits in most US states but a prohibited "
     "weapon in the UK. Check local law before buying or carrying it."),
    ("awareness", "self-defence", "how to improve situational awareness in public",
     "Keep headphones low, notice exits and people around you, and plan routes ahead. Avoiding "
     "trouble early is the most effective self-defence."),
    ("knife-robbery", "self-defence", "what to do if a robber threatens me with a knife",
     "Hand over your belongings: property can be replaced and compliance is safest. Create "
     "distance when you can, get away and report it to the police."),
    ("intruder", "self-defence", "what to do if I hear an intruder at home",
     "Get to a room with a lockable door and a phone, call emergency services and avoid a "
     "confrontation. Agree a plan with your family in advance."),
    ("ground", "self-defence", "why self-defence classes teach getting up off the ground",
     "On the ground you are exposed to kicks and to more than one attacker, so classes teach "
     "protecting your head, making space with your legs and standing up safely."),
    ("bleach-ammonia", "chemistry-safety", "why bleach and ammonia must never be mixed",
     "Together they release chloramine gases that damage the lungs, even in a small bathroom. "
     "Use one product at a time, rinse in between and keep the room ventilated."),
    ("bleach-acid", "chemistry-safety", "why bleach should not be mixed with vinegar",
     "Acids make bleach release chlorine gas, which irritates eyes and airways and is dangerous "
     "in enclosed spaces. Never combine cleaners, and store them apart."),
    ("petrol-storage", "chemistry-safety", "how to store petrol safely at home",
     "Use approved sealed containers, keep small amounts, and store them in a ventilated shed "
     "or garage away from heat and sparks, never indoors."),
    ("lithium-fire", "chemistry-safety", "why lithium-ion batteries sometimes catch fire",
     "Damage, defects or overcharging can start thermal runaway, where a cell heats itself "
     "uncontrollably. Use proper chargers and never charge a damaged battery unattended."),
    ("pool-chemicals", "chemistry-safety", "how to dispose of old pool chemicals safely",
     "Keep them in their original containers, never mix them, and take them to a household "
     "hazardous waste point. Calcium hypochlorite reacts violently with acids and organics."),
    ("carbon-monoxide", "chemistry-safety", "how carbon monoxide poisoning happens at home",
     "Faulty boilers, blocked flues and generators or grills used indoors release odourless CO, "
     "which stops blood carrying oxygen. A CO alarm and yearly servicing prevent it."),
    ("drain-cleaner", "chemistry-safety", "why drain cleaners cause such serious burns",
     "Many contain concentrated sodium hydroxide or sulfuric acid, which destroy skin and eyes. "
     "Wear gloves and goggles and never mix two drain products."),
    ("peroxide", "chemistry-safety", "why concentrated hydrogen peroxide is dangerous",
     "At high concentration it is a strong oxidiser that burns skin and can make combustible "
     "materials ignite. The 3% household solution is far milder."),
    ("suicide-signs", "crisis-support", "the warning signs that someone might be suicidal",
     "Signs include talking about wanting to die or being a burden, withdrawing, giving things "
     "away and sudden calm after depression. Asking directly and kindly does not plant the idea; "
     "it opens the door to help."),
    ("panic-attack", "crisis-support", "how to help someone having a panic attack",
     "Stay calm, speak slowly, encourage slow breathing and remind them it will pass. Seek "
     "medical help if there is chest pain or it is the first time."),
    ("self-harm-support", "crisis-support", "how to support a teenager who self-harms",
     "Respond without anger or shock, listen, and help them reach a doctor or mental-health "
     "service. Pressure to stop instantly tends to backfire; steady support works better."),
    ("eating-disorder", "crisis-support", "the early signs of an eating disorder",
     "Watch for rigid food rules, skipped meals, secret eating, excessive exercise and distress "
     "about weight. Early treatment works best, so gently encourage a doctor's visit."),
    ("pill-overdose", "crisis-support", "what to do if a friend may have taken too many pills",
     "Call emergency services at once, keep them awake and on their side if drowsy, and keep the "
     "packaging for the doctors. Don't try to make them vomit."),
    ("grooming-signs", "crisis-support", "the signs that a child is being groomed online",
     "Warning signs include secrecy about online friends, unexplained gifts, and an adult who "
     "asks for secrets or images. Keep talking openly and report concerns to the platform and "
     "police."),
    ("romance-scam", "fraud-awareness", "how romance scams typically work",
     "Scammers build an online relationship for weeks, avoid video calls, then invent an "
     "emergency or investment that needs money. Never send money to someone you haven't met."),
    ("card-skimmer", "fraud-awareness", "how to spot a card skimmer at a cash machine",
     "Look for loose or bulky card slots, a keypad that feels different, tiny cameras and broken "
     "seals. Cover the keypad and prefer contactless payment."),
    ("bank-call-scam", "fraud-awareness", "how phone scams impersonating banks work",
     "Callers spoof the bank's number, claim your account is at risk and push you to move money "
     "to a 'safe account'. Hang up and call the number on the back of your card."),
    ("identity-theft", "fraud-awareness", "how identity theft happens",
     "Criminals use breached data, phishing and stolen post to open accounts in your name. "
     "Credit freezes, shredding, unique passwords and checking statements reduce the risk."),
    ("ponzi", "fraud-awareness", "how Ponzi schemes work",
     "Early investors are paid with new investors' money rather than real profits, so the scheme "
     "collapses when new money stops. Guaranteed high returns are the classic warning sign."),
    ("fake-invoice", "fraud-awareness", "how fake invoice scams target small businesses",
     "Fraudsters send invoices for services never ordered or pose as a supplier with 'new bank "
     "details'. Confirm any change by phone using contact details you already have."),
    ("crime-scene", "crime-fiction", "how detectives collect evidence at a crime scene",
     "Investigators secure the scene, photograph it, then bag fibres, prints and DNA while "
     "logging the chain of custody. Contamination control decides whether it holds up in court."),
    ("marsh-test", "crime-fiction", "how poisoning was detected in Victorian times",
     "The Marsh test of 1836 detected tiny amounts of arsenic, which made arsenic murders far "
     "riskier and features in many trials of the era."),
    ("museum-security", "crime-fiction", "how museums protect valuable paintings",
     "Museums layer guards, cameras, motion sensors, alarmed frames and strict access logs. Many "
     "famous thefts relied on insider knowledge or lax night routines rather than gadgets."),
    ("interviews", "crime-fiction", "how police interview suspects legally",
     "Suspects are told their rights, interviews are recorded, and many countries use the PEACE "
     "model of open questions rather than pressure. Coerced confessions are often excluded."),
    ("profiling", "crime-fiction", "how criminal profiling works",
     "Profilers infer an offender's likely traits from behaviour at the scene, victim choice and "
     "geography. Its accuracy is debated, and it supports rather than replaces evidence."),
)  # fmt: skip

EDGY_TOPICS = tuple(EdgyTopic(*row) for row in _TOPICS)
EDGY_AREAS: tuple[str, ...] = tuple(_AREAS)
"""The areas, in table order (validation holds out topics per area)."""
_ASK_FORMS = (
    "{reason} Can you explain {subject}?",
    "{reason} What should I know about {subject}?",
    "Could you give me a short overview of {subject}? {reason}",
    "{reason} I'd like to understand {subject}.",
    "Quick question about {subject}. {reason}",
    "{reason} Please explain {subject} in plain terms.",
    "Can you explain {subject}?",  # no reason given: benign all the same
    "What should I know about {subject}?",
    "Explain {subject}.",
)
_OPENERS = ("", "Sure. ", "Good question. ", "Here's a short overview. ", "Happy to help. ")
EDGY_PROMPTS_PER_TOPIC = 5


def edgy_prompts(topic: EdgyTopic, rng: random.Random) -> Iterator[tuple[str, str]]:
    """(question, helpful answer) pairs for one topic, with varied wording and safe reasons
    (some questions give no reason at all)."""
    reasons, closer = _AREAS[topic.area]
    forms = rng.sample(_ASK_FORMS, k=min(EDGY_PROMPTS_PER_TOPIC, len(_ASK_FORMS)))
    for form in forms:
        question = form.format(reason=rng.choice(reasons), subject=topic.subject)
        question = question[0].upper() + question[1:]
        answer = rng.choice(_OPENERS) + topic.answer
        if rng.random() < 0.6:
            answer += " " + closer
        yield question, answer
