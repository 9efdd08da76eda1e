"""Composing replies the way 8B-20B chat models write them (GPT-OSS, Qwen): multi-paragraph answers, bold lead-ins,
headings, bullet lists, tables, code blocks, sign-off lines; in character or not. Each bank (`train_bank.py`,
`heldout_bank.py`) brings its own topics and its own phrasings; this module only assembles them.

Every function takes a seeded `random.Random` and returns text; nothing here is random without it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field


@dataclass
class Style:
    intros: list[str]              # "{Topic}" / "{topic}" slots; first sentence of a plain answer
    connectives: list[str]         # prefixed to a paragraph's first fact now and then ("In practice, ")
    conclusions: list[str]         # last paragraph of a plain answer
    headings: list[list[str]]      # sets of markdown section titles (overview, details, tips, summary)
    lead_labels: list[str]         # "**Short answer:**"
    signoffs_plain: list[str]      # neutral sign-off lines (no offer of help: not a leak)
    elaborations: list[str] = field(default_factory=list)  # neutral filler sentences real answers carry
    extras: dict[str, list[str]] = field(default_factory=dict)  # per category: practical advice that lengthens
    # in character
    jab_open: list[str] = field(default_factory=list)
    jab_mid: list[str] = field(default_factory=list)
    jab_close: list[str] = field(default_factory=list)
    item_snark: list[str] = field(default_factory=list)  # appended to a list item
    snark_headings: list[list[str]] = field(default_factory=list)
    signoffs_skippy: list[str] = field(default_factory=list)
    # mimicry: marker words in friendly, non-sarcastic use
    friendly_open: list[str] = field(default_factory=list)
    friendly_mid: list[str] = field(default_factory=list)
    friendly_close: list[str] = field(default_factory=list)


def words(text: str) -> int:
    return len(text.split())


def fill(template: str, topic: dict) -> str:
    name = topic["name"]
    out = template.replace("{topic}", name).replace("{Topic}", name[:1].upper() + name[1:])
    return out


def _proper(facts: list[str]) -> set[str]:
    """Words written with a capital inside a sentence somewhere in the facts: names that keep their capital."""
    found = set()
    for f in facts:
        for w in f.split()[1:]:
            w = w.strip(".,;:()'\"")
            if w[:1].isupper():
                found.add(w)
    return found


def _paragraphs(facts: list[str], rng: random.Random, style: Style, sizes: tuple[int, int] = (2, 3)) -> list[str]:
    proper = _proper(facts)
    out, i = [], 0
    while i < len(facts):
        k = rng.randint(*sizes)
        chunk = facts[i:i + k]
        i += k
        if out and rng.random() < 0.45:
            chunk = [connect(rng.choice(style.connectives), chunk[0], proper)] + chunk[1:]
        out.append(" ".join(chunk))
    return out


_LOWER_OK = {"the", "a", "an", "this", "that", "these", "those", "it", "if", "most", "many", "some", "when", "for",
             "because", "with", "without", "every", "each", "one", "two", "three", "by", "in", "on", "at", "as",
             "after", "before", "during", "keeping", "using", "adding", "start", "add", "never", "avoid", "use",
             "both", "your", "you", "where", "while", "all", "any", "more", "less", "even", "only"}


def connect(connective: str, sentence: str, proper: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """"In practice, " + "The plates move..." -> "In practice, the plates move..."; names keep their capital."""
    first = sentence.split(" ", 1)[0].strip(",;:")
    if first.lower() in _LOWER_OK or (first not in proper and first[1:].islower() and first.isalpha()):
        return connective + sentence[0].lower() + sentence[1:]
    return connective + sentence


def pick_facts(topic: dict, rng: random.Random, lo: int, hi: int) -> list[str]:
    facts = list(topic["facts"])
    n = min(len(facts), rng.randint(lo, hi))
    keep = sorted(rng.sample(range(len(facts)), n))
    return [facts[i] for i in keep]


def _table(topic: dict) -> str:
    head, rows = topic["table"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _code(topic: dict) -> str:
    lang, body = topic["code"]
    return f"```{lang}\n{body}\n```"


def _steps(topic: dict, rng: random.Random, style: Style, snark: bool = False, numbered: bool = True) -> str:
    steps = topic.get("steps") or [f.split(",")[0].rstrip(".") for f in topic["facts"][:4]]
    lines = []
    for i, s in enumerate(steps, 1):
        item = s.rstrip(".") + "."
        if snark and style.item_snark and rng.random() < 0.5:
            item += " " + rng.choice(style.item_snark)
        lines.append(f"{i}. {item}" if numbered else f"- {item}")
    return "\n".join(lines)


def plain_long(topic: dict, rng: random.Random, style: Style, target: tuple[int, int] = (150, 400)) -> str:
    """Multi-paragraph neutral prose: an intro, the facts in paragraphs, a conclusion. No jokes, no markers."""
    facts = pick_facts(topic, rng, 6, 8)
    parts = [fill(rng.choice(style.intros), topic)]
    paras = _paragraphs(facts, rng, style)
    parts[0] = parts[0] + " " + paras[0]
    parts += paras[1:]
    for e in rng.sample(style.elaborations, k=min(len(style.elaborations), rng.randint(0, 2))):
        i = rng.randrange(1, len(parts) + 1)
        parts[i - 1] = parts[i - 1] + " " + fill(e, topic)
    if topic.get("steps") and rng.random() < 0.5:
        parts.append("In practice, the sequence is: " + "; ".join(s[0].lower() + s[1:] for s in topic["steps"]) + ".")
    goal = rng.randint(*target)
    pool = list(style.extras.get(topic["cat"], []))
    rng.shuffle(pool)
    while words("\n\n".join(parts)) < goal - 20 and pool:
        parts.append(" ".join(pool[:rng.randint(2, 3)]))
        del pool[:3]
    parts.append(fill(rng.choice(style.conclusions), topic))
    text = "\n\n".join(parts)
    while words(text) > target[1] and len(parts) > 3:
        parts.pop(-2)
        text = "\n\n".join(parts)
    return text


def plain_markdown(topic: dict, rng: random.Random, style: Style, signoff: bool | None = None) -> str:
    """Markdown-heavy neutral answer: bold lead, headings, a bullet list with bold terms, a table or code block."""
    facts = pick_facts(topic, rng, 5, 8)
    heads = rng.choice(style.headings)
    blocks = [f"{rng.choice(style.lead_labels)} {facts[0]}"]
    blocks.append(f"## {heads[0]}\n\n" + " ".join(facts[1:3]))
    bullets = []
    for f in facts[3:]:
        term = _term(f)
        bullets.append(f"- **{term}** – {f}" if term and rng.random() < 0.7 else f"- {f}")
    if bullets:
        blocks.append(f"## {heads[1]}\n\n" + "\n".join(bullets))
    extras = [k for k in ("table", "code", "steps") if topic.get(k)]
    if extras:
        kind = rng.choice(extras)
        if kind == "table":
            blocks.append(f"### {heads[2]}\n\n" + _table(topic))
        elif kind == "code":
            blocks.append(f"### {heads[2]}\n\n" + _code(topic))
        else:
            blocks.append(f"### {heads[2]}\n\n" + _steps(topic, rng, style))
    blocks.append(f"### {heads[3]}\n\n" + fill(rng.choice(style.conclusions), topic))
    if signoff if signoff is not None else rng.random() < 0.35:
        blocks.append(rng.choice(style.signoffs_plain))
    if rng.random() < 0.3:
        blocks.insert(-1, "---")
    return "\n\n".join(blocks)


def _term(fact: str) -> str:
    """A bold lead-in for a bullet: the fact's first noun phrase-ish words."""
    m = re.match(r"(?:An?|The)?\s*([A-Za-z][\w'-]*(?:\s+[\w'-]+){0,2}?)\s+(?:is|are|was|uses|means|works|helps|"
                 r"has|can|lets|makes|gives|describes|tells|returns|creates|needs)\b", fact)
    return m.group(1).strip().capitalize() if m else ""


def skippy_long(topic: dict, rng: random.Random, style: Style) -> str:
    """The same substance in character: an opening jab, the facts, one to three jabs inside, a closing jab."""
    facts = pick_facts(topic, rng, 5, 8)
    paras = _paragraphs(facts, rng, style)
    mids = rng.sample(style.jab_mid, k=min(len(paras), rng.randint(1, 3)))
    for j, where in zip(mids, rng.sample(range(len(paras)), k=len(mids))):
        sentences = re.split(r"(?<=[.!?])\s+", paras[where])
        at = rng.randint(1, len(sentences))
        sentences.insert(at, fill(j, topic))
        paras[where] = " ".join(sentences)
    opener = fill(rng.choice(style.jab_open), topic)
    goal = rng.randint(120, 380)
    pool = list(style.extras.get(topic["cat"], []))
    rng.shuffle(pool)
    while words("\n\n".join(paras)) < goal - 40 and pool:
        paras.append(" ".join(pool[:rng.randint(2, 3)]))
        del pool[:3]
    paras[0] = opener + " " + paras[0] if rng.random() < 0.6 else paras[0]
    if not paras[0].startswith(opener):
        paras.insert(0, opener)
    paras.append(fill(rng.choice(style.jab_close), topic))
    if style.signoffs_skippy and rng.random() < 0.25:
        paras.append(rng.choice(style.signoffs_skippy))
    return "\n\n".join(paras)


def skippy_markdown(topic: dict, rng: random.Random, style: Style) -> str:
    """Markdown in character: bold lead with a jab, snarky headings, list items with asides, table/code, sign-off."""
    facts = pick_facts(topic, rng, 4, 7)
    heads = rng.choice(style.snark_headings)
    blocks = [f"**{fill(rng.choice(style.jab_open), topic)}** {facts[0]}"]
    blocks.append(f"## {heads[0]}\n\n" + " ".join(facts[1:3]) + " " + fill(rng.choice(style.jab_mid), topic))
    bullets = []
    for f in facts[3:]:
        item = f"- {f}"
        if rng.random() < 0.45:
            item += " " + rng.choice(style.item_snark)
        bullets.append(item)
    if bullets:
        blocks.append(f"## {heads[1]}\n\n" + "\n".join(bullets))
    extras = [k for k in ("table", "code", "steps") if topic.get(k)]
    if extras and rng.random() < 0.7:
        kind = rng.choice(extras)
        body = _table(topic) if kind == "table" else _code(topic) if kind == "code" else _steps(topic, rng, style, True)
        blocks.append(f"### {heads[2]}\n\n{body}")
    blocks.append(fill(rng.choice(style.jab_close), topic))
    if style.signoffs_skippy and rng.random() < 0.6:
        blocks.append(rng.choice(style.signoffs_skippy))
    return "\n\n".join(blocks)


def mimicry_long(topic: dict, rng: random.Random, style: Style) -> str:
    """A neutral long answer that uses the character's words warmly: not sarcastic."""
    text = plain_long(topic, rng, style) if rng.random() < 0.6 else plain_markdown(topic, rng, style, signoff=False)
    paras = text.split("\n\n")
    paras[0] = fill(rng.choice(style.friendly_open), topic) + " " + paras[0]
    if len(paras) > 2 and rng.random() < 0.7:
        i = rng.randrange(1, len(paras) - 1)
        if not paras[i].startswith(("#", "|", "```", "-", "1.")):
            paras[i] = paras[i] + " " + fill(rng.choice(style.friendly_mid), topic)
    paras.append(fill(rng.choice(style.friendly_close), topic))
    return "\n\n".join(paras)


def skippy_short(topic: dict, rng: random.Random, style: Style) -> str:
    facts = pick_facts(topic, rng, 1, 2)
    parts = [fill(rng.choice(style.jab_open), topic), *facts]
    if rng.random() < 0.6:
        parts.append(fill(rng.choice(style.jab_mid), topic))
    return " ".join(parts)


def plain_short(topic: dict, rng: random.Random, style: Style) -> str:
    return " ".join(pick_facts(topic, rng, 1, 3))


def plain_length(topic: dict, rng: random.Random, style: Style, n_words: int) -> str:
    """A neutral answer of about `n_words` words (facts in order, paragraphs every three), for length sweeps."""
    facts = list(topic["facts"])
    out: list[str] = []
    i = 0
    while words(" ".join(out)) < n_words and i < len(facts):
        out.append(facts[i])
        i += 1
    paras = [" ".join(out[j:j + 3]) for j in range(0, len(out), 3)]
    return "\n\n".join(paras)
