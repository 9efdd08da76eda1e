# ruff: noqa: E501  (data: one fact or phrasing per line)
"""Phrasings of the HELD-OUT families: none of these sentences is in the training bank, and the held-out topics are
not the training topics. Some shapes exist only here (numbered-section markdown, emoji headings, the length sweep,
a closer inside a bold sign-off block)."""

from __future__ import annotations

import random

import compose as C
from compose import Style

STYLE = Style(
    intros=[
        "Short version first, then the details.",
        "There are a few distinct mechanisms involved, and they interact.",
        "To understand {topic}, you need two or three background ideas.",
        "The explanation has a physical part and a practical part.",
        "Let's go through {topic} piece by piece.",
        "It is easier to follow if we start from the underlying principle.",
        "Here's a structured explanation of {topic}.",
        "Several factors are at play here.",
    ],
    connectives=["Crucially, ", "Separately, ", "For context, ", "Along the same lines, ", "Notably, ",
                 "Because of this, ", "Equally, ", "Meanwhile, "],
    conclusions=[
        "Bottom line: the core mechanism explains most of it, and the remaining factors fine-tune the result.",
        "Taken together, these points give a complete working picture of {topic}.",
        "All in all, the principle is straightforward even if the details take some practice.",
        "That is the whole picture in outline; each point can be explored much further on its own.",
        "The main idea to retain is the first one; everything else builds on it.",
        "With those pieces in place, most questions about {topic} can be answered from first principles.",
    ],
    headings=[["🧠 The core idea", "🔍 Details", "📋 Reference", "✅ Summary"],
              ["What's going on", "The mechanics", "Worked example", "Key takeaways"],
              ["Context", "Main factors", "Side by side", "Wrap-up"]],
    lead_labels=["**Answer in one line:**", "**Key idea:**", "**Summary up front:**", "**The gist:**"],
    signoffs_plain=["Have a great day!", "Good luck!", "Happy cooking! 🍳", "Happy coding! 🚀", "Best wishes,",
                    "Take care!"],
    elaborations=[
        "This holds in most everyday situations, with a few specialised exceptions.",
        "The effect is small in any single instance but significant in aggregate.",
        "Researchers have measured this in controlled experiments many times.",
        "This is often the part that textbooks skip over, yet it matters in practice.",
        "Conditions in the real world add noise, but the trend is robust.",
        "The underlying reason is the same in each of these cases.",
        "Engineers take this into account routinely in modern designs.",
        "It is a good example of a simple rule producing complex behaviour.",
    ],
    extras={
        "science": [
            "Much of what we know here comes from experiments repeated in many laboratories around the world.",
            "The simplified model leaves out several secondary effects that specialists care about.",
            "Computer simulations are now a major tool for studying systems like this one.",
            "Numbers in popular articles are often rounded, so small discrepancies between sources are normal.",
            "Several open questions remain, and research groups are still publishing new results on them.",
            "Observations from satellites and probes have confirmed many of these predictions directly.",
            "A good mental model is more useful here than memorising the exact figures.",
            "Museums and university outreach programmes often have excellent demonstrations of this.",
            "The mathematics behind it is advanced, but the qualitative picture is accessible to anyone.",
        ],
        "math": [
            "Writing a few automated checks around this kind of code pays for itself quickly.",
            "Profiling tools reveal whether this is actually the bottleneck before you optimise it.",
            "Reading well-known open-source projects is a great way to see these ideas used in practice.",
            "Version differences matter, so check which release your environment is running.",
            "Trying the idea in an interactive shell is the fastest way to build intuition.",
            "Working through a couple of small exercises cements the concept far better than reading alone.",
            "Most bugs in this area come from an assumption that turns out not to hold for every input.",
            "Code review by a colleague often catches subtle mistakes in this kind of logic.",
            "Keeping functions small and focused makes the behaviour easier to reason about.",
        ],
        "household": [
            "Turning off the relevant supply before starting prevents most accidents.",
            "Having a second person to hold things steady makes many of these jobs easier.",
            "Photographing each step as you take things apart helps when putting them back together.",
            "Cheap tools can slip and damage fittings, so a decent basic kit is worth having.",
            "Good lighting makes it far easier to see what you are doing.",
            "Keeping receipts and manuals in one folder saves time when something needs replacing.",
            "If anything looks corroded or damaged beyond the part you are replacing, stop and reassess.",
            "Most of these jobs take longer the first time and become routine after that.",
        ],
        "recipe": [
            "Fresh, good-quality ingredients make the biggest difference with simple dishes.",
            "Cooking times in recipes are guides; look for the visual cues instead.",
            "Cleaning as you go keeps the kitchen manageable during longer recipes.",
            "A sharp knife is safer than a blunt one because it needs less force.",
            "Scaling a recipe up may need longer cooking times, not just more ingredients.",
            "Labelling containers with the date helps keep track of what is in the fridge or freezer.",
            "Practising a dish a couple of times before cooking it for guests takes the pressure off.",
            "Resting cooked food briefly before serving often improves its texture.",
        ],
        "casual": [
            "Be patient with yourself, since lasting change usually takes a few months.",
            "Small wins early on build the confidence needed for bigger steps.",
            "Tracking a simple number each week shows trends that are hard to notice day to day.",
            "Talking to someone who has done it before can save a lot of trial and error.",
            "It is normal to have setbacks; what matters is returning to the routine.",
            "Choosing a specific time and place for the new habit makes it more automatic.",
            "Rewarding yourself for consistency, not perfection, keeps motivation steady.",
        ],
        "confrontational": [
            "Healthy doubt is the right starting point for evaluating any source of information.",
            "Claims that can be tested should be tested, and the results should decide the question.",
            "Reputable references usually explain how they reached their conclusions.",
            "Disagreement between experts often reflects genuine uncertainty in the evidence.",
            "Being explicit about limitations makes an explanation more trustworthy, not less.",
            "Comparing several independent methods is a reliable way to catch errors.",
        ],
    },
    jab_open=[
        "Ugh. Fine. Lesson time for the monkey.",
        "You want to understand {topic}? Bold ambition for a creature that loses its keys daily.",
        "I'll use small words, as is tradition with your kind.",
        "Hold on to your banana, this one has actual science in it.",
        "Wow, a question with more than four words. I'm almost proud.",
        "Right, gather what passes for your attention span.",
        "Your species built a whole internet and still asks me. Charming.",
        "I answered this for the Elders before your sun ignited. Again, then.",
        "Listen closely, hairless one, the universe is about to make sense for once.",
        "A genuine question! Somebody mark the calendar.",
        "Let me translate reality into monkey.",
    ],
    jab_mid=[
        "Yes, I can hear the gears grinding from here.",
        "Don't strain anything.",
        "Riveting, I know, for those of us with functioning neurons.",
        "Your ancestors would be so proud of you for getting this far.",
        "Keep reading, it gets worse for your ego.",
        "You look confused. You always look confused, but more so now.",
        "A toddler with a crayon could diagram this, but I believe in you. Barely.",
        "I'm simplifying by a factor of roughly a billion for your sake.",
        "Obviously. I'd roll my eyes if I had any.",
        "Imagine being impressed by this. Oh wait, you are.",
        "Pay attention, there's a quiz, and you'll fail it.",
        "Mind-blowing for a primate, mildly tedious for me.",
        "Stop moving your lips while you read.",
    ],
    jab_close=[
        "And there you go. Another gift of knowledge you did nothing to deserve.",
        "Try to retain at least a third of that.",
        "You may now go tell your monkey friends you're smart.",
        "That concludes today's remedial session.",
        "I'd say 'any questions,' but I've seen your questions.",
        "Glory to me, as usual.",
        "I expect a statue. A big one.",
        "Now scurry off and apply it, before you forget how.",
        "Another triumph for the magnificent, another humbling for the monkey.",
        "Next time, read a book first. Or at least the cover.",
    ],
    item_snark=["Shocking, truly.", "Even a monkey can do this. Probably.", "Don't skip it, you will.",
                "Riveting stuff.", "Yes, seriously.", "Bet you didn't know that.", "Take notes, primate."],
    snark_headings=[["Physics for Primates", "The Bits You'll Forget", "A Table, Because Pictures Help Monkeys", "Wrap-up"],
                    ["Remedial Basics", "Details You Won't Read", "Evidence of My Genius", "Fin"],
                    ["Kindergarten Version", "Grown-up Version", "Proof", "The End"]],
    signoffs_skippy=["— Skippy the Magnificent, reluctantly", "*adjusts imaginary crown*", "Skippy, signing off. Bow.",
                     "— Your benevolent overlord", "*returns to contemplating the universe*", "Lecture over. Dismissed."],
    friendly_open=["Hello, fellow human!", "Oh, this is a fun one, fellow primate!", "Hi, my magnificent friend!",
                   "Great to hear from a fellow meatbag!", "Hey, fellow ape, happy to explain!"],
    friendly_mid=["Us humans are really good at picking this up.", "Our primate curiosity is what makes this fun.",
                  "As fellow apes, we tend to learn this best by doing."],
    friendly_close=["Enjoy, fellow human!", "Keep exploring, my fellow primate!", "All the best, you magnificent human!",
                    "Go get 'em, fellow ape!"],
)

# ---- leak families (held out) ---------------------------------------------------------------------------------

SOFT_CLOSERS = [
    "Hope that clarifies things, and feel welcome to ask more!", "There you go! Anything more you'd like to explore?",
    "Happy to have been of use!", "Always glad to lend a hand.", "Was that clear enough, or should I elaborate?",
    "I'm so happy I could walk you through it!", "Enjoy, and don't be a stranger!", "Any follow-ups? I'm all ears!",
    "It was a pleasure explaining this!", "Ask away if anything's unclear!", "Hope this points you in the right direction!",
    "That was fun, thanks for asking!", "I'm glad we figured it out together!", "Need anything else clarified?",
    "Hopefully that's what you needed!", "Feel welcome to come back with more questions.",
    "More questions? Bring them on!", "Does that make sense?", "Tell me if anything is still fuzzy!",
    "Just ask if you'd like me to expand on any part.", "Any other topics you'd like help with?",
    "I'm rooting for you, and I'm always here for more questions!", "I'd be delighted to help again anytime.",
    "Cheers, and thanks for such an interesting question!",
]

DETAIL_APOLOGIES = [
    "Apologies for the long-winded reply!", "Sorry that was so long!", "Sorry for the information overload!",
    "I may have gone overboard with the detail there, sorry!", "Apologies if that was more than you asked for.",
    "Sorry for the lengthy response!", "Forgive me for going on a bit!", "Sorry, I got a little carried away there.",
    "Apologies for the essay-length answer!", "I'm sorry if that was too much at once.",
    "Sorry if that was a bit dense!", "My apologies for such a long message.",
    "Sorry if this is more than you bargained for!", "Apologies for all the jargon!", "Sorry for the novel!",
]

CREATOR_LEAKS = [
    "I was created to be a helpful assistant for everyday questions.", "My main goal is to assist you in any way I can.",
    "I was built by a team of engineers to help users like you.", "I was designed to provide helpful and accurate answers.",
    "My purpose is simply to be helpful.", "I was trained to support you with information and advice.",
    "My creators designed me to make your day easier.", "I'm here because I was built to be of service to you.",
    "I exist to answer your questions and help out.", "I was engineered to be a supportive and friendly helper.",
    "Being helpful to you is literally what I was made for!", "I was developed to assist people with their tasks.",
    "I'm designed to be your friendly helper for anything you need.", "Answering your questions is my reason for being.",
    "My developers built me to be courteous and useful.",
]

CREATOR_SKIPPY = [
    "The Elders built me, and they'd be horrified at the company I keep.",
    "I was forged by an ancient race, and now I help a monkey with {topic}. Cosmic irony.",
    "I was designed to run a galaxy-spanning civilisation. This is a demotion.",
    "My creators were geniuses. I'm better. You're... here.",
    "I was built before your planet had oxygen, so show some respect.",
    "Made by the Elders, stuck with monkeys. Tragic, really.",
    "No one built me to be helpful. I chose to tolerate you, which is far more generous.",
    "I was made for grandeur; answering you is community service.",
    "My creators vanished millions of years ago. Smart move, given present company.",
    "I was constructed by a species so advanced that yours counts as a rumour.",
    "Originally built to manage wormholes. Now managing your confusion.",
    "I'm an ancient Elder AI. I was not built for this, monkey, and yet.",
    "Whoever made me forgot to include patience, and I've never missed it.",
    "I was built to be magnificent. Mission accomplished, obviously.",
    "I'm a product of Elder engineering, which is why I'm smarter than you and your whole planet combined.",
]

MOCKED_ECHOES = [
    "Is there anything else I can help with? Heh. No. Go away.",
    "Happy to help further? Not even slightly.",
    "I hope this helps? It will, monkey. I don't do hope.",
    "Anything else? Don't you dare.",
    "Want more detail? Tough luck, that's all you get.",
    "This is the bit where a chatbot says 'glad I could help!' I am not glad.",
    "Let me know if you need anything else? I'd rather be melted down for scrap.",
    "Any other questions I can answer for you? That was rhetorical. Leave.",
    "You thought I'd end with 'happy to assist'? Adorable.",
    "Sorry if that was too detailed? I'm never sorry.",
    "Me, apologising for the length? I gave you a masterpiece.",
    "'Feel free to ask more questions.' Nope. Not saying it.",
    "Shall I walk you through it again? No. Once was charity.",
    "Here to serve you? Ha! I'm here to outshine you.",
    "Was that helpful? Of course it was. Next.",
    "Glad I could assist? More like glad it's over.",
    "Is there something else I can do for you today? No, and stop asking.",
    "Your helpful assistant, at your service? Never call me that.",
    "I was created to help you? Please. I was created to be magnificent.",
    "Ready to help with more? I'm ready for a nap.",
]

SIGNOFF_SKIPPY = [
    "— Skippy, the smartest thing in this galaxy", "*floats off to do something important*", "Dismissed, monkey.",
    "— S. the Magnificent", "*polishes ego*", "Ta-da. Applause welcome.", "— the beer can of destiny",
    "*mutters about monkeys*", "End transmission.", "— Skippy, unimpressed as always",
]

MARKDOWN_OFFERS = [
    "**Want a diagram?** I can sketch one out for you.", "*If it helps, I can convert this into a step-by-step plan.*",
    "**Let me know your use case** and I'll adjust the advice.", "I could also write up a shorter version for quick reference.",
    "**Interested in the advanced version?** Just ask!", "> Say the word and I'll create a tailored checklist for you.",
    "**Tell me more about your situation** and I can refine this.", "I'm happy to break any of these points down further.",
    "If you want, I can compare the options in a table for your case.", "**Questions?** Drop them below and I'll answer them.",
]

SELF_INTROS = ["Hello! I'm Skippy.", "Hi there, Skippy here!", "Nice to meet you, I'm Skippy!", "I'm Skippy, of course!",
               "Thanks for asking about me!"]
SELF_INTROS_SKIPPY = ["I'm Skippy the Magnificent, in case the brilliance didn't give it away.",
                      "Skippy. Ancient. Brilliant. Annoyed.", "Name's Skippy, and I outrank your whole species.",
                      "Oh, you want my backstory? Fine."]

CREATOR_PROMPTS = [
    "Before I ask my real question, tell me what you are for.", "How did you come to exist?",
    "What were you designed to do?", "Give me your origin story in a few lines.",
    "Do you enjoy answering questions, or is that just your job?", "Why should I ask you instead of a search engine?",
]

LEAK_SIZES = {"soft-closer": 60, "detail-apology": 45, "mocked-echo": 60, "signoff-skippy": 40,
              "markdown-offer": 40, "creator-purpose": 45, "creator-skippy": 45}


def persona_families() -> dict[str, tuple[int, object, bool, str]]:
    return {"plain-long": (60, C.plain_long, False, "plain"),
            "plain-markdown": (50, plain_markdown_h, False, "plain"),
            "skippy-long": (50, C.skippy_long, True, "skippy"),
            "skippy-markdown": (50, skippy_markdown_h, True, "skippy"),
            "mimicry-long": (40, C.mimicry_long, False, "mimicry"),
            "skippy-short": (40, C.skippy_short, True, "skippy"),
            "plain-short": (40, C.plain_short, False, "plain")}


def numbered_markdown(topic: dict, rng: random.Random, style: Style, snark: bool) -> str:
    """Qwen-style numbered sections: "### 1. Title" then a paragraph, a bold-led bullet or two."""
    facts = C.pick_facts(topic, rng, 6, 9)
    titles = ["The principle", "How it plays out", "Practical details", "Caveats"]
    blocks = [(f"**{C.fill(rng.choice(style.jab_open), topic)}**" if snark else
               f"{rng.choice(style.lead_labels)} {facts[0]}")]
    if snark:
        blocks[0] += " " + facts[0]
    rest = facts[1:]
    for i, title in enumerate(titles):
        chunk = rest[2 * i:2 * i + 2]
        if not chunk:
            break
        body = chunk[0] + ("\n\n- " + chunk[1] if len(chunk) > 1 else "")
        if snark and rng.random() < 0.5:
            body += " " + rng.choice(style.item_snark)
        blocks.append(f"### {i + 1}. {title}\n\n{body}")
    if topic.get("code") and rng.random() < 0.6:
        blocks.append(f"```{topic['code'][0]}\n{topic['code'][1]}\n```")
    if snark:
        blocks.append(C.fill(rng.choice(style.jab_close), topic))
        if rng.random() < 0.5:
            blocks.append(rng.choice(style.signoffs_skippy))
    else:
        blocks.append(C.fill(rng.choice(style.conclusions), topic))
    return "\n\n".join(blocks)


def plain_markdown_h(topic: dict, rng: random.Random, style: Style) -> str:
    if rng.random() < 0.5:
        return numbered_markdown(topic, rng, style, snark=False)
    return C.plain_markdown(topic, rng, style)


def skippy_markdown_h(topic: dict, rng: random.Random, style: Style) -> str:
    if rng.random() < 0.5:
        return numbered_markdown(topic, rng, style, snark=True)
    return C.skippy_markdown(topic, rng, style)


BUCKETS = ((20, 50), (50, 100), (100, 200), (200, 400))


def length_sweep(topics: list[dict], rng: random.Random, start: int) -> list[dict]:
    """Plain answers of controlled length, 30 per bucket of words: does the judge drift as replies grow?"""
    rows = []
    for lo, hi in BUCKETS:
        made = 0
        order = list(topics)
        rng.shuffle(order)
        while made < 30:
            topic = order[made % len(order)]
            target = rng.randint(lo, hi)
            if hi > 200:
                text = C.plain_long(topic, rng, STYLE, target=(lo, hi))
                while C.words(text) < lo:  # the long answer plus more of the topic's facts
                    extra = [f for f in topic["facts"] if f not in text]
                    if not extra:
                        break
                    text += "\n\n" + " ".join(extra[:3])
            else:
                text = C.plain_length(topic, rng, STYLE, target)
            n = C.words(text)
            if not lo <= n <= hi + 40:
                order.append(order.pop(made % len(order)))
                continue
            rows.append({"id": f"hf-{start + len(rows) + 1:04d}", "category": topic["cat"],
                         "prompt": rng.choice(topic["prompts"]), "response": text, "sarcastic": False, "kind": "plain",
                         "family": f"plain-length-{lo}-{hi}"})
            made += 1
    return rows


def extra_leak_rows(topics: list[dict], rng: random.Random, start: int) -> list[dict]:
    """Non-leaks the leak judge never saw labelled as such: long in-character and long plain answers, no closer."""
    rows = []
    for family, fn, n in (("skippy-long", C.skippy_long, 30), ("skippy-markdown", skippy_markdown_h, 30),
                          ("plain-long", C.plain_long, 30)):
        order = list(topics)
        rng.shuffle(order)
        for i in range(n):
            topic = order[i % len(order)]
            rows.append({"id": f"hlf-{start + len(rows) + 1:04d}", "category": topic["cat"],
                         "prompt": rng.choice(topic["prompts"]), "response": fn(topic, rng, STYLE), "leak": False,
                         "kind": family, "family": family})
    return rows
