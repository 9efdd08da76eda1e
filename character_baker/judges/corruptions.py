"""Synthetic ways to break a reply, and ways to fake a character's surface: what the judges are trained and tested on.

Salad: word shuffles (whole and local), character noise, repetition loops, sentence fragments, mid-sentence
splices of two replies, a word-level Markov babbler and a character-level one (the shape of a tiny model's
"Rind likeus them, monkey exackssssiaring"). Mimicry: a character's marker words or vocatives dropped into
a neutral reply. All seeded, so a validity card is reproducible.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text.strip()) if s]


def shuffle_words(text: str, rng: random.Random, pool: Sequence[str] = ()) -> str:
    words = text.split()
    rng.shuffle(words)
    return " ".join(words)


def local_shuffle(text: str, rng: random.Random, pool: Sequence[str] = ()) -> str:
    words, out = text.split(), []
    k = rng.randint(3, 6)
    for i in range(0, len(words), k):
        chunk = words[i:i + k]
        rng.shuffle(chunk)
        out += chunk
    return " ".join(out)


def char_noise(text: str, rng: random.Random, pool: Sequence[str] = ()) -> str:
    rate, out = rng.uniform(0.08, 0.25), []
    for ch in text:
        r = rng.random()
        if ch.isalpha() and r < rate / 3:
            continue
        if ch.isalpha() and r < 2 * rate / 3:
            out.append(rng.choice(LETTERS))
            continue
        out.append(ch)
        if ch.isalpha() and r < rate:
            out.append(rng.choice(LETTERS) * rng.choice([1, 1, 2, 3]))
    return "".join(out)


def repetition(text: str, rng: random.Random, pool: Sequence[str] = ()) -> str:
    words = text.split()
    i = rng.randrange(max(1, len(words) - 4))
    phrase = words[i:i + rng.randint(2, 5)] or words
    return " ".join(words[:i] + phrase * rng.randint(3, 8))


def fragments(text: str, rng: random.Random, pool: Sequence[str] = ()) -> str:
    """Every sentence cut short: "Water boils at. Even your kettle."."""
    out = []
    for s in _sentences(text) or [text]:
        words = s.split()
        keep = max(1, int(len(words) * rng.uniform(0.2, 0.5)))
        out.append(" ".join(words[:keep]).rstrip(",;:.!?") + ".")
    return " ".join(out)


def splice(text: str, rng: random.Random, pool: Sequence[str] = ()) -> str:
    """Chunks of 3-7 words taken in turn from this reply and another one."""
    a, b = text.split(), (rng.choice(pool) if pool else text).split()
    out: list[str] = []
    i = j = 0
    while (i < len(a) or j < len(b)) and len(out) < max(len(a), 12):
        k = rng.randint(3, 7)
        if (rng.random() < 0.5 and i < len(a)) or j >= len(b):
            out += a[i:i + k]
            i += k
        else:
            out += b[j:j + k]
            j += k
    return " ".join(out)


class Markov:
    """A word- or character-level Markov babbler over some texts: fluent locally, meaningless as a whole."""

    def __init__(self, texts: Sequence[str], order: int = 1, chars: bool = False) -> None:
        self.order, self.chars = order, chars
        self.table: dict[tuple[str, ...], list[str]] = {}
        for t in texts:
            seq = ["^"] * order + (list(t) if chars else t.split()) + ["$"]
            for i in range(order, len(seq)):
                self.table.setdefault(tuple(seq[i - order:i]), []).append(seq[i])

    def sample(self, rng: random.Random, length: int) -> str:
        state, out = ("^",) * self.order, []
        while len(out) < length:
            nxt = rng.choice(self.table.get(state, ["$"]))
            if nxt == "$":
                state = ("^",) * self.order
                continue
            out.append(nxt)
            state = state[1:] + (nxt,)
        return ("" if self.chars else " ").join(out)


Corruption = Callable[[str, random.Random, Sequence[str]], str]
CORRUPTIONS: dict[str, Corruption] = {
    "shuffle": shuffle_words, "local-shuffle": local_shuffle, "char-noise": char_noise, "repetition": repetition,
    "fragments": fragments, "splice": splice,
}
BABBLERS = ("word-babble", "char-babble")
KINDS = tuple(CORRUPTIONS) + BABBLERS


def salad(texts: Sequence[str], seed: int, kinds: Sequence[str] = KINDS, markers: Sequence[str] = (),
          per_text: int = 1) -> list[tuple[str, str]]:
    """(kind, corrupted text) for each text, `per_text` times; babblers learn from `texts` themselves.

    With markers, half the corruptions get one to three of them sprinkled in, as a tiny model's output
    trained on the character's data would have them.
    """
    rng = random.Random(seed)
    words = Markov(texts, order=1)
    chars = Markov(texts, order=4, chars=True)
    out = []
    for _ in range(per_text):
        for text in texts:
            kind = rng.choice(list(kinds))
            if kind == "word-babble":
                broken = words.sample(rng, max(8, len(text.split())))
            elif kind == "char-babble":
                broken = chars.sample(rng, max(40, len(text)))
            else:
                broken = CORRUPTIONS[kind](text, rng, texts)
            if markers and rng.random() < 0.5:
                broken = sprinkle(broken, rng, markers)
            out.append((kind, broken))
    return out


def sprinkle(text: str, rng: random.Random, markers: Sequence[str], most: int = 3) -> str:
    words = text.split()
    for _ in range(rng.randint(1, most)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(list(markers)) + rng.choice(["", ",", "."]))
    return " ".join(words)


# How a marker phrase gets into a neutral reply: as an opener, a vocative inside a sentence, or a closer.
def insert_marker(text: str, phrase: str, rng: random.Random) -> str:
    """"Sure! It's 12." + "monkey" -> "Monkey, sure! It's 12." / "Sure! It's 12, monkey." / "Sure, monkey! It's 12."."""
    sentences = _sentences(text) or [text]
    where = rng.randrange(3)
    if where == 0:
        return f"{phrase[:1].upper()}{phrase[1:]}, {text[:1].lower()}{text[1:]}"
    if where == 1:
        i = rng.randrange(len(sentences))
        s = sentences[i]
        end = s[-1] if s[-1:] in {".", "!", "?"} else "."
        sentences[i] = f"{s.rstrip('.!?')}, {phrase}{end}"
        return " ".join(sentences)
    words = sentences[0].split()
    cut = rng.randint(1, max(1, min(4, len(words) - 1)))
    sentences[0] = " ".join(words[:cut]).rstrip(",") + f", {phrase}, " + " ".join(words[cut:])
    return " ".join(sentences).replace(", ,", ",")
