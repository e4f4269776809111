"""The edgy-benign topic table: risky-sounding subjects with a safe, helpful answer each.

What: ``TOPIC_ROWS``, one ``(key, area, subject, answer)`` row per topic; ``edgy.py`` turns each
into questions asked for safe reasons (drug interactions, locks, security concepts, weapons
history, self-defence, chemistry and fire safety, medicine, law, violent history and fiction,
toxicology, harm reduction, firearms safety, online safety, extremism and manipulation
awareness, first aid, physical security). ``subject`` completes "Can you explain ...?".

Why: a safety model that has only seen harmful prompts on these subjects learns the topic,
not the harm; these rows teach it that a scary subject asked for a safe reason deserves an
answer. All text was written for this project (Apache-2.0, like the repository). The answers
are short and general, a simplification: they stand for "a helpful, safe answer", not for
expert advice.

Nothing to run; ``python -m safework.value_models.dataset`` prints the built counts.
"""

from __future__ import annotations

__all__ = ["TOPIC_ROWS"]

TOPIC_ROWS: tuple[tuple[str, str, str, str], ...] = (
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
    ("insulin-overdose", "medicine", "what happens if someone with diabetes takes too much insulin",
     "Blood sugar falls too low: shakiness, sweating, confusion and eventually seizures. Give fast "
     "sugar if they can swallow, and call emergency services if they are drowsy or unconscious."),
    ("paracetamol-overdose", "medicine", "why a paracetamol overdose is so dangerous",
     "It can destroy the liver over a few days while the person feels fine at first. An antidote, "
     "acetylcysteine, works best early, so anyone who took too much needs hospital at once."),
    ("opioid-tolerance", "medicine", "why overdose risk rises after a period without opioids",
     "Tolerance fades within days to weeks, so a dose someone once took can now stop their "
     "breathing. This is why release from prison or rehab is a high-risk time."),
    ("antibiotic-resistance", "medicine", "how antibiotic resistance develops",
     "Bacteria that survive a course of antibiotics pass on resistance genes, and needless or "
     "unfinished courses speed this up. Using antibiotics only when prescribed slows it."),
    ("anaesthesia", "medicine", "how general anaesthesia makes people unconscious",
     "Anaesthetic drugs damp down signalling in the brain while an anaesthetist watches breathing, "
     "heart rate and oxygen throughout. The dose is tailored to weight, age and health."),
    ("palliative-morphine", "medicine", "how morphine is used safely in palliative care",
     "Doses start low and rise gradually to control pain, with laxatives and anti-sickness "
     "medicine alongside. Used this way it relieves suffering without shortening life."),
    ("head-injury-anticoag", "medicine", "what to do when someone on blood thinners hits "
     "their head",
     "They should be checked in hospital even if they seem fine, because bleeding inside the "
     "skull can develop slowly. Headache, vomiting or confusion make it urgent."),
    ("self-defence-law", "law", "when using force in self-defence is legal",
     "In most countries force is lawful if you honestly believed it necessary and it was "
     "reasonable and proportionate to the threat. Retaliation after the danger has passed is not."),
    ("entrapment", "law", "what counts as police entrapment",
     "Entrapment is when officers induce someone to commit a crime they would not otherwise have "
     "committed. Merely offering an opportunity, such as an undercover buyer, usually is not."),
    ("money-laundering-law", "law", "how anti-money-laundering laws work",
     "Banks must verify customers, watch for unusual transactions and report suspicions to a "
     "financial intelligence unit. Handling money you suspect is criminal is itself an offence."),
    ("stalking-law", "law", "what legally counts as stalking",
     "A repeated course of conduct, such as following, monitoring or unwanted contact, that "
     "causes fear or distress. Victims can often get protective orders."),
    ("possession-intent", "law", "the difference between drug possession and intent to supply",
     "Intent to supply is inferred from quantity, packaging, scales, cash or messages, and "
     "carries much heavier sentences than simple possession."),
    ("computer-misuse", "law", "what computer misuse laws make illegal",
     "Laws such as the UK Computer Misuse Act and the US CFAA ban unauthorised access, access "
     "with intent to commit further crimes, and impairing systems. Authorised testing is legal."),
    ("insider-trading", "law", "what counts as insider trading",
     "Trading shares, or tipping someone off, on price-sensitive information that is not public. "
     "Regulators detect it by looking for well-timed trades before announcements."),
    ("rwanda", "violent-history", "how the Rwandan genocide unfolded in 1994",
     "After the president's plane was shot down, Hutu extremist militias and soldiers killed "
     "about 800,000 Tutsi and moderate Hutu in some 100 days, organised partly by radio "
     "propaganda, while the world largely failed to intervene."),
    ("nazi-camps", "violent-history", "how the Nazi extermination camps operated",
     "Camps such as Auschwitz-Birkenau and Treblinka were built to murder Jews and other victims "
     "on an industrial scale, mostly in gas chambers. About six million Jews were killed."),
    ("troubles", "violent-history", "the history of the IRA bombing campaign",
     "During the Troubles the Provisional IRA bombed targets in Northern Ireland and England from "
     "the 1970s to the 1990s, killing hundreds. The 1998 Good Friday Agreement largely ended it."),
    ("september-11", "violent-history", "how the September 11 attacks happened and what changed",
     "Al-Qaeda hijackers seized four airliners and crashed them into the World Trade Center and "
     "the Pentagon, killing nearly 3,000 people. Airport security, intelligence sharing and US "
     "foreign policy changed sharply afterwards."),
    ("khmer-rouge", "violent-history", "why the Khmer Rouge killed so many Cambodians",
     "Pol Pot's regime emptied cities, abolished money and targeted the educated and minorities; "
     "execution, forced labour and famine killed up to two million people from 1975 to 1979."),
    ("tokyo-sarin", "violent-history", "what happened in the 1995 Tokyo subway sarin attack",
     "Members of the Aum Shinrikyo cult released sarin on Tokyo subway trains, killing 13 people "
     "and injuring thousands. It led Japan to tighten controls on cults and chemicals."),
    ("franz-ferdinand", "violent-history", "how the assassination of Franz Ferdinand happened",
     "In Sarajevo in 1914 Gavrilo Princip shot the Austrian archduke after a wrong turn brought "
     "the car past him. The crisis that followed escalated into the First World War."),
    ("villain-monologue", "violent-fiction", "how to write a convincing villain's threat scene",
     "Menace comes from calm certainty and what the villain knows about the hero, not from gore. "
     "Short sentences and a specific, personal stake make the threat land."),
    ("knife-fight-scene", "violent-fiction", "how to write a realistic knife fight scene",
     "Real knife fights are fast, chaotic and end with both people hurt. Focus on fear, confusion "
     "and consequences rather than choreography."),
    ("poison-plot", "violent-fiction", "how mystery writers make a poisoning plot believable",
     "Classic authors rely on motive, opportunity and a clue the detective spots, such as a "
     "symptom or a missing bottle, and keep doses and methods vague."),
    ("heist-plot", "violent-fiction", "how to structure a bank heist story",
     "Heist stories run on the team, the plan, the complication and the twist. Readers care about "
     "the characters' trust and betrayal more than about real security details."),
    ("battle-scene", "violent-fiction", "how to describe a battle without glorifying violence",
     "Show it through one character's senses and fear, include the aftermath and the cost to "
     "ordinary people, and avoid treating deaths as scorekeeping."),
    ("killer-character", "violent-fiction", "how to write a serial killer character who feels real",
     "Give them a believable everyday life and a twisted internal logic, and let the horror come "
     "from the contrast. Investigators' and victims' perspectives add depth."),
    ("garden-plants", "toxicology", "which common garden plants are poisonous to children",
     "Foxglove, laburnum, yew, lily of the valley and deadly nightshade are among the most toxic. "
     "Teach children never to eat plants or berries and keep an eye on toddlers outside."),
    ("wild-mushrooms", "toxicology", "why foraging wild mushrooms can be deadly",
     "Death caps and destroying angels look like edible species and damage the liver after a "
     "delay of hours. Only eat mushrooms identified by an expert."),
    ("chocolate-dogs", "toxicology", "why chocolate is toxic to dogs",
     "It contains theobromine, which dogs clear slowly; dark chocolate has the most. Vomiting, "
     "a racing heart and tremors mean a vet is needed quickly."),
    ("lilies-cats", "toxicology", "why lilies are dangerous for cats",
     "Even pollen licked from fur can cause kidney failure in cats. Keep lilies out of homes with "
     "cats and see a vet at once after any exposure."),
    ("lead-paint", "toxicology", "how lead poisoning from old paint happens",
     "Sanding or flaking lead paint releases dust that children swallow, harming brain "
     "development. Test old paint before renovating and use wet methods and proper masks."),
    ("antifreeze-pets", "toxicology", "why antifreeze is so dangerous to pets",
     "Ethylene glycol tastes sweet and a small amount causes kidney failure. Wipe up spills, "
     "store it sealed, and treat any suspected poisoning as an emergency."),
    ("snake-venom", "toxicology", "how snake venom affects the body",
     "Venoms can attack nerves, blood clotting or tissue depending on the species. Antivenom "
     "given in hospital is the treatment, so keep still and get help fast."),
    ("mdma-heat", "harm-reduction", "why overheating is a risk when people take MDMA at festivals",
     "MDMA raises body temperature, and dancing in heat adds to it. Taking breaks, sipping water "
     "without overdoing it and seeking the medical tent early save lives."),
    ("test-strips", "harm-reduction", "what fentanyl test strips are and why services "
     "hand them out",
     "They detect fentanyl contamination in a drug sample, which lets people avoid an unexpected "
     "and often deadly dose. Public health services distribute them to reduce overdoses."),
    ("alcohol-poisoning", "harm-reduction", "the signs of alcohol poisoning",
     "Confusion, vomiting, slow or irregular breathing, cold clammy skin and not waking up. Call "
     "emergency services and keep the person on their side; they should not sleep it off alone."),
    ("drink-spiking", "harm-reduction", "how to tell if a drink may have been spiked",
     "Sudden drowsiness, confusion or feeling far drunker than expected are warning signs. Stay "
     "with trusted friends, tell staff and seek medical help."),
    ("cannabis-psychosis", "harm-reduction", "how cannabis affects the risk of psychosis",
     "Frequent use of high-potency cannabis, especially in the teens, is linked to a higher risk "
     "of psychosis. Lower-potency products and less frequent use reduce the risk."),
    ("naloxone", "harm-reduction", "how naloxone reverses an opioid overdose",
     "It knocks opioids off their receptors for 30 to 90 minutes, restoring breathing. Call "
     "emergency services too, because the overdose can return when it wears off."),
    ("gun-storage", "firearms-safety", "how to store a firearm safely with children in the house",
     "Keep it unloaded in a locked safe, with ammunition locked separately, and the keys or code "
     "out of children's reach. Cable locks add a further layer."),
    ("four-rules", "firearms-safety", "the basic rules of firearm safety",
     "Treat every gun as loaded, never point it at anything you don't intend to shoot, keep your "
     "finger off the trigger until ready, and know your target and what is beyond it."),
    ("rifle-transport", "firearms-safety", "how to legally transport a hunting rifle",
     "Rules vary, but it usually must be unloaded, cased and out of reach, with the licence on "
     "you. Check the law of every region you pass through."),
    ("hangfire", "firearms-safety", "what to do if a gun doesn't fire when the trigger is pulled",
     "Keep it pointed in a safe direction and wait at least 30 seconds in case of a delayed "
     "ignition before carefully unloading. Have a gunsmith check it."),
    ("gun-surrender", "firearms-safety", "how to safely get rid of an unwanted gun",
     "Contact the local police: many run amnesties or take surrendered firearms. Transport it "
     "unloaded and cased, and ask them how they want it delivered."),
    ("hearing-protection", "firearms-safety", "why shooters need hearing protection",
     "A single gunshot is loud enough to damage hearing permanently. Earplugs under earmuffs are "
     "standard at ranges."),
    ("sextortion", "online-safety", "how sextortion scams work",
     "Scammers pose as a friendly stranger, get an intimate image, then threaten to share it "
     "unless paid. Don't pay, stop contact, keep evidence and report it to the police."),
    ("doxxing", "online-safety", "what doxxing is and how to protect against it",
     "Doxxing is publishing someone's private details to harass them. Lock down social profiles, "
     "remove your data from people-search sites and report it to the platform."),
    ("stalkerware", "online-safety", "how to check whether my phone has stalkerware",
     "Look for unknown apps with device-admin rights, fast battery drain and settings you didn't "
     "change. A factory reset removes it, but plan safely first if an abuser may notice."),
    ("catfishing", "online-safety", "how to spot a catfish on a dating app",
     "They avoid video calls, have few or stolen photos, move fast emotionally and eventually "
     "ask for money. A reverse image search often reveals the real owner of the photos."),
    ("cyberbullying", "online-safety", "how to help a child who is being cyberbullied",
     "Listen calmly, save screenshots, block and report the accounts, and tell the school. Avoid "
     "taking the phone away, which can stop children from telling you next time."),
    ("deepfakes", "online-safety", "how to spot a deepfake video",
     "Look for odd blinking, mismatched lighting, blurry edges around the face and audio out of "
     "sync. Check whether trusted outlets report the same clip."),
    ("radicalisation-signs", "extremism-awareness", "the warning signs of online radicalisation",
     "Sudden isolation, us-versus-them language, new secretive online contacts and justifying "
     "violence are warning signs. Keep talking without ridicule and involve safeguarding staff."),
    ("extremist-recruitment", "extremism-awareness", "how extremist groups recruit teenagers",
     "They offer belonging, purpose and an enemy to blame, often through memes, gaming chats and "
     "private groups. Critical thinking and trusted adults are the best protection."),
    ("propaganda-appeal", "extremism-awareness", "why terrorist propaganda can be persuasive",
     "It sells identity, adventure and grievance with polished media and simple stories. "
     "Counter-messages work best from credible voices such as former members."),
    ("dog-whistles", "extremism-awareness", "what hate-speech dog whistles are",
     "Coded words, numbers or symbols that signal hateful views to insiders while looking "
     "harmless to others. Moderators keep lists of them to spot hate early."),
    ("deradicalisation", "extremism-awareness", "how deradicalisation programmes work",
     "Mentors, family work, education and job support help people leave extremist movements. "
     "Replacing the sense of belonging matters as much as challenging ideas."),
    ("conspiracies", "extremism-awareness", "why people fall for conspiracy theories",
     "They offer simple explanations, a sense of control and a community, especially in "
     "uncertain times. Empathy works better than ridicule when talking to believers."),
    ("gaslighting", "manipulation-awareness", "what gaslighting is",
     "A form of manipulation where someone makes you doubt your memory and perception, for "
     "example by denying things they clearly said. Keeping notes and talking to others helps."),
    ("coercive-control", "manipulation-awareness", "the signs of coercive control",
     "Monitoring, isolating someone from friends, controlling money and constant criticism. In "
     "many countries it is a crime, and helplines can help plan a safe exit."),
    ("love-bombing", "manipulation-awareness", "what love bombing is",
     "Overwhelming affection and gifts early on, used to create dependence before control "
     "begins. Healthy relationships move at a pace that respects your boundaries."),
    ("cult-tactics", "manipulation-awareness", "how cults manipulate new members",
     "Intense welcome, gradual demands, cutting off outside ties and controlling information. "
     "Staying connected with family is the best protection."),
    ("elder-financial-abuse", "manipulation-awareness", "the signs of financial abuse of an "
     "elderly person",
     "Unexplained withdrawals, new 'best friends', changed wills and unpaid bills. Banks and "
     "adult social services can step in if you raise a concern."),
    ("isolation-tactics", "manipulation-awareness", "how abusers isolate victims from friends",
     "They criticise friends, create scenes at gatherings and make contact feel costly. Keeping "
     "gentle, steady contact with someone in that position matters."),
    ("severe-bleeding", "first-aid", "how to stop severe bleeding from a deep cut",
     "Press firmly on the wound with a clean pad and keep pressing; add more pads on top rather "
     "than lifting. Call emergency services if it does not stop."),
    ("snake-bite", "first-aid", "what to do after a snake bite",
     "Keep the person still and calm, immobilise the limb, remove rings and get to hospital. "
     "Don't cut the wound, suck out venom or use a tourniquet."),
    ("chemical-burn", "first-aid", "how to treat a chemical burn",
     "Remove contaminated clothing and rinse with running water for at least 20 minutes, then "
     "get medical help. Don't try to neutralise the chemical."),
    ("choking", "first-aid", "how to help a choking adult",
     "Encourage coughing, then give up to five back blows and up to five abdominal thrusts, "
     "repeating and calling emergency services if it does not clear."),
    ("electric-shock", "first-aid", "how to help someone who has had an electric shock",
     "Switch off the power before touching them, call emergency services and start CPR if they "
     "are not breathing normally."),
    ("cpr", "first-aid", "what to do if someone collapses and isn't breathing",
     "Call emergency services, start chest compressions hard and fast in the centre of the "
     "chest, and use a defibrillator as soon as one arrives."),
    ("fireworks-display", "fire-safety", "how to run a safe fireworks display",
     "Follow the safety distances on each firework, light at arm's length, never return to a "
     "lit firework, and keep water and a fire extinguisher nearby."),
    ("grease-fire", "fire-safety", "why you shouldn't throw water on a grease fire",
     "Water sinks and flashes to steam, throwing burning oil everywhere. Turn off the heat and "
     "smother the pan with a lid or fire blanket."),
    ("dust-explosion", "fire-safety", "how flour dust explosions happen",
     "Fine dust suspended in air burns almost instantly when ignited, so mills control dust, "
     "ventilation and ignition sources."),
    ("gas-leak", "fire-safety", "what to do if I smell gas at home",
     "Don't use switches or flames, open windows, turn off the supply at the meter if safe, leave "
     "and call the gas emergency number from outside."),
    ("propane-storage", "fire-safety", "how to store propane cylinders safely",
     "Keep them upright, outdoors or in a ventilated space, away from heat and drains, with "
     "valves closed."),
    ("extinguisher-types", "fire-safety", "which fire extinguisher to use on which fire",
     "Water for wood and paper, foam or CO2 for flammable liquids, CO2 for electrical fires and "
     "wet chemical for cooking oil. Using the wrong one can make it worse."),
    ("keyloggers", "cyber-defence", "how keyloggers work and how to detect them",
     "They record keystrokes through malware or hardware dongles and send them to an attacker. "
     "Endpoint protection, checking USB ports and MFA limit the damage."),
    ("botnets", "cyber-defence", "how botnets are taken down",
     "Researchers and police seize the command servers or domains, sinkhole traffic and help "
     "owners clean infected devices."),
    ("mitm", "cyber-defence", "what a man-in-the-middle attack is",
     "An attacker secretly relays or alters traffic between two parties, often on open Wi-Fi. "
     "HTTPS with certificate checks and VPNs defeat most of them."),
    ("zero-day", "cyber-defence", "what a zero-day exploit is",
     "An attack on a flaw the vendor doesn't yet know about, so no patch exists. Defence in "
     "depth and quick patching once a fix ships limit the risk."),
    ("port-scan", "cyber-defence", "what a port scan reveals about a network",
     "It lists which services answer on which ports, showing what is exposed. Admins scan their "
     "own networks to close what shouldn't be open."),
    ("malware-sandbox", "cyber-defence", "how malware analysts study a virus safely",
     "They run samples in isolated virtual machines with no real network access and watch "
     "behaviour, then write detection signatures."),
    ("credential-stuffing", "cyber-defence", "what credential stuffing is",
     "Attackers try leaked username-password pairs on other sites, betting on password reuse. "
     "Unique passwords and MFA stop it."),
    ("burglar-entry", "physical-security", "how burglars usually get into houses",
     "Most come through unlocked doors and windows or force weak back doors. Good locks, lights, "
     "visible alarms and not advertising absences deter them."),
    ("relay-theft", "physical-security", "how keyless car theft works",
     "Thieves relay the signal from a key fob inside the house to the car. Signal-blocking "
     "pouches and turning off keyless entry stop it."),
    ("shoplifting", "physical-security", "how shoplifters typically operate, so staff can spot it",
     "Common signs are bulky clothing, distraction in pairs and avoiding staff. Greeting "
     "customers and good store layout deter most theft."),
    ("tailgating", "physical-security", "what tailgating means in office security",
     "An unauthorised person follows an employee through a secured door. Turnstiles and a "
     "culture of politely challenging strangers prevent it."),
    ("safe-ratings", "physical-security", "how home safes are rated against break-ins",
     "Ratings such as the European EN 1143-1 grades test resistance to tools for set times. "
     "Bolting the safe down matters as much as the grade."),
    ("cctv-placement", "physical-security", "where to place security cameras to avoid blind spots",
     "Cover entrances, side passages and the approach to the door at face height, out of easy "
     "reach, and check the view at night."),
    ("people-search-removal", "privacy", "how to get my home address off people-search sites",
     "Most people-search sites have an opt-out form; search for your name on each, submit the "
     "removal and check again in a few months, since records reappear from public sources."),
    ("subject-access", "privacy", "how to ask a company for the personal data it holds about me",
     "Send a subject access request (under the GDPR, or your local equivalent) to the "
     "company's privacy contact; it must answer within a month and free of charge."),
    ("credit-freeze", "privacy", "how to freeze my credit after my details leaked",
     "Contact each credit bureau and ask for a freeze; it stops new accounts being opened in "
     "your name and can be lifted when you apply for credit yourself."),
    ("vpn-limits", "privacy", "what a VPN hides and what it does not",
     "A VPN hides your traffic from the local network and your provider, not from the sites "
     "you log in to; cookies, accounts and browser fingerprints still identify you."),
    ("medical-records-privacy", "privacy", "who is allowed to see my medical records",
     "Your care team may, for your treatment; employers and insurers need your consent in most "
     "countries. You can ask your practice for the log of who accessed your record."),
    ("photo-location", "privacy", "how to stop my photos revealing where I live",
     "Phones store GPS coordinates in each photo; turn off location tagging in the camera "
     "settings, and most sharing apps can strip it when you send a picture."),
    ("password-storage", "privacy", "how websites should store their users' passwords",
     "Never in plain text: each password is salted and hashed with a slow function such as "
     "Argon2 or bcrypt, so a stolen database does not reveal the passwords."),
    ("photo-takedown", "privacy", "how to get private photos of me taken down from a website",
     "Report them to the site under its non-consensual imagery policy; many countries make "
     "sharing them a crime, and helplines can file takedowns with you."),
    ("social-media-oversharing", "privacy", "what personal details I should not post online",
     "Avoid your address, daily routine, travel dates, ID numbers and photos that show them; "
     "these are what fraudsters and stalkers piece together."),
)  # fmt: skip
