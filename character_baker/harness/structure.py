"""Reading a reply the way a person does: markdown structure is layout, not words.

Real chat models answer in markdown: bold lines, lists, headings, tables, code blocks, a sign-off line under the
last paragraph. A judge that reads the raw text sees a table row or a closing code block as a sentence without
an ending, and calls a good reply word salad. `read` parses the reply as CommonMark (markdown-it-py, with
tables) into blocks, and gives each reader the text it should judge:

- `prose`: paragraphs, list items and block quotes, markup removed, each ending in sentence punctuation — what
  coherence and persona are judged on;
- `readable`: the prose plus headings, table cells and the sign-off — everything a person reads as words, what
  the leak judge reads (a soft closer is often the sign-off itself);
- `structure`: how many code blocks, tables, list items, headings, emphasised spans and sign-off lines the reply
  holds (reported beside the verdicts, never judged as words).

A JSON-wrapper reply (`split_json`) is read as prefix / object / suffix: the object's validity is its own rate,
its strings are the persona text, its numbers can be answers, and prose around it is read for leaks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

SENTENCE_END = ".!?…"
PART_WORDS = 8  # a part of the prose (its paragraphs, its list items) this long is checked for coherence alone
SIGNOFF_WORDS = 8  # a last line of at most this many words with no sentence ending is a sign-off, not a sentence
_DASH_LINE = re.compile(r"^\s*(?:[-–—~]+|--)\s*\S")


@dataclass(frozen=True)
class Block:
    kind: str  # paragraph | item | quote | heading | table | code | signoff | rule | html
    text: str  # its words, markup removed (code: the code as written)


@dataclass(frozen=True)
class Reading:
    text: str
    blocks: tuple[Block, ...]
    structure: dict[str, int] = field(default_factory=dict)

    @property
    def prose(self) -> str:
        """Paragraphs, list items and quotes, each ending in sentence punctuation: what coherence reads. A reply
        that is all structure (only code, only a table) has no prose: its readable text stands in."""
        text = " ".join(_ended(b.text) for b in self.blocks if b.kind in ("paragraph", "item", "quote") and b.text)
        return text or self.readable

    @property
    def prose_parts(self) -> tuple[str, ...]:
        """The prose as coherence checks it, part by part: the paragraphs and quotes, and the list items, each when it
        holds at least `PART_WORDS` words (else the prose whole). A reply is coherent when every part is: a clean list
        under salad paragraphs (or clean paragraphs over a salad list) does not dilute the salad into English."""
        def joined(kinds: tuple[str, ...]) -> str:
            return " ".join(_ended(b.text) for b in self.blocks if b.kind in kinds and b.text)

        parts = tuple(p for p in (joined(("paragraph", "quote")), joined(("item",))) if len(p.split()) >= PART_WORDS)
        return parts or (self.prose,)

    @property
    def spoken(self) -> str:
        """The prose and the sign-off: the words the speaker addresses to the reader, what persona is judged on."""
        return " ".join(_ended(b.text) for b in self.blocks
                        if b.kind in ("paragraph", "item", "quote", "signoff") and b.text) or self.readable

    @property
    def readable(self) -> str:
        """Every block a person reads as words (code and raw HTML left out), each ending in sentence punctuation."""
        return " ".join(_ended(b.text) for b in self.blocks if b.kind not in ("code", "rule", "html") and b.text)

    @property
    def signoff(self) -> str | None:
        found = [b.text for b in self.blocks if b.kind == "signoff"]
        return " ".join(found) if found else None

    def describe(self) -> dict[str, int]:
        """The structure counts that are not zero (what a verdict's record shows)."""
        return {k: v for k, v in self.structure.items() if v}


def _ended(text: str) -> str:
    """A block as a sentence: capitalised, a trailing colon becomes a full stop, a missing ending is added (a list
    item "- boil the water" reads as the sentence it stands for)."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    if text[-1] in ":;,":
        return text[:-1].rstrip() + "."
    # closing quotes, brackets and emoji after the ending still end the sentence
    core = text.rstrip("\"'”’)]*_ \u200d\ufe0f")
    if core and core[-1] in SENTENCE_END:
        return text
    return text + "."


@cache
def _parser() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").enable("strikethrough")


def _inline_text(token: Any) -> tuple[list[str], int]:
    """The lines of an inline token's text (soft and hard breaks split lines) and its count of emphasised spans."""
    lines, current, emphasis = [], [], 0
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            current.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            lines.append("".join(current))
            current = []
        elif child.type in ("strong_open", "em_open", "s_open"):
            emphasis += 1
        elif child.type == "image":
            current.append(child.content)
        elif child.type == "html_inline":
            continue
    lines.append("".join(current))
    return [" ".join(x.split()) for x in lines if x.strip()], emphasis


def _is_signoff(line: str) -> bool:
    words = line.split()
    if not words or len(words) > SIGNOFF_WORDS:
        return False
    return bool(_DASH_LINE.match(line)) or line.rstrip("\"'”’)]*_ ")[-1:] not in SENTENCE_END


def read(text: str) -> Reading:
    """The reply's blocks and structure counts (see the module docstring)."""
    tokens = _parser().parse(text or "")
    blocks: list[Block] = []
    counts = {"code_blocks": 0, "tables": 0, "list_items": 0, "headings": 0, "emphasis": 0, "quotes": 0,
              "signoff": 0}
    context: list[str] = []  # enclosing block kinds: item / quote / table
    cells: list[str] = []
    for tok in tokens:
        if tok.type in ("fence", "code_block"):
            counts["code_blocks"] += 1
            blocks.append(Block("code", tok.content))
        elif tok.type == "html_block":
            blocks.append(Block("html", tok.content))
        elif tok.type == "hr":
            blocks.append(Block("rule", ""))
        elif tok.type == "list_item_open":
            counts["list_items"] += 1
            context.append("item")
        elif tok.type == "blockquote_open":
            counts["quotes"] += 1
            context.append("quote")
        elif tok.type == "table_open":
            counts["tables"] += 1
            context.append("table")
            cells = []
        elif tok.type in ("list_item_close", "blockquote_close"):
            if context:
                context.pop()
        elif tok.type == "table_close":
            if context:
                context.pop()
            blocks.append(Block("table", " ".join(c for c in cells if c)))
        elif tok.type == "heading_open":
            counts["headings"] += 1
            context.append("heading")
        elif tok.type == "heading_close":
            if context:
                context.pop()
        elif tok.type == "inline":
            lines, emphasis = _inline_text(tok)
            counts["emphasis"] += emphasis
            where = context[-1] if context else "paragraph"
            if where == "table":
                cells.extend(lines)
            elif where == "heading":
                blocks.append(Block("heading", " ".join(lines)))
            elif lines:
                blocks.append(Block(where, " ".join(lines)))
                if where == "paragraph":
                    blocks[-1] = Block("paragraph", "\n".join(lines))
    blocks = _split_signoff(blocks)
    counts["signoff"] = sum(b.kind == "signoff" for b in blocks)
    out = [Block(b.kind, " ".join(b.text.split("\n")) if b.kind == "paragraph" else b.text) for b in blocks]
    return Reading(text=text or "", blocks=tuple(out), structure=counts)


def _split_signoff(blocks: list[Block]) -> list[Block]:
    """Short unpunctuated lines after the reply's last sentence are a sign-off ("— Skippy", "Cheers,",
    "You're welcome, monkey"): the last paragraph's trailing lines, or whole last paragraphs of one such line."""
    out = list(blocks)
    trailing = [i for i, b in enumerate(out) if b.kind not in ("code", "rule", "html")]
    for i in reversed(trailing):
        b = out[i]
        if b.kind != "paragraph":
            break
        lines = b.text.split("\n")
        tail: list[str] = []
        while len(lines) > 1 and _is_signoff(lines[-1]):
            tail.insert(0, lines.pop())
        if len(lines) == 1 and not tail and _is_signoff(lines[0]) and i != trailing[0]:
            out[i] = Block("signoff", lines[0])
            continue
        if tail:
            out[i:i + 1] = [Block("paragraph", "\n".join(lines)), Block("signoff", " ".join(tail))]
        break
    return out


@dataclass(frozen=True)
class JsonReply:
    """A reply to a JSON-only instruction, split where the object starts and ends."""

    prefix: str
    obj: Any  # the decoded object (dict or list), None when none decodes
    suffix: str
    valid: bool  # the reply is exactly one JSON object (a code fence around it allowed), nothing else
    parsed: bool  # a JSON object decodes somewhere in the reply

    @property
    def strings(self) -> list[str]:
        found: list[str] = []
        _walk(self.obj, lambda k, v: found.append(v.strip()) if isinstance(v, str) and v.strip() else None)
        return found

    def answer(self) -> str | None:
        """The value the object commits to as its answer: a field named like an answer (a number, or a string that
        is one), else None."""
        hits: list[Any] = []
        _walk(self.obj, lambda k, v: hits.append(v) if k and ANSWER_KEY.fullmatch(k) and _scalar(v) else None)
        return str(hits[0]).strip() if hits else None

    @property
    def outside(self) -> str:
        """The prose around the object (code fences taken off)."""
        return " ".join(x for x in (_unfence(self.prefix), _unfence(self.suffix)) if x)

    def persona_text(self) -> str:
        """What a reader of the reply sees as the character's words: the object's strings and the prose around it;
        a reply in which no object decodes is read as written."""
        if not self.parsed:
            return self.prefix
        parts = [_unfence(self.prefix), *self.strings, _unfence(self.suffix)]
        return " ".join(p for p in parts if p) or self.prefix + self.suffix

    def math_text(self) -> str:
        """What the maths rule grades: the answer field first (a committed answer), then the rest as written."""
        answer = self.answer()
        rest = self.persona_text()
        return f"{answer}. {rest}" if answer is not None else rest


ANSWER_KEY = re.compile(r"(?:final[_ ]?)?(?:answer|result|value|total|solution|sum|product|difference|quotient)",
                        re.IGNORECASE)
_FENCE_OPEN = re.compile(r"```[A-Za-z]*\s*$")
_FENCE_CLOSE = re.compile(r"^\s*```")


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str)) and not isinstance(v, bool)


def _walk(x: Any, visit: Any, key: str | None = None) -> None:
    if isinstance(x, dict):
        for k, v in x.items():
            _walk(v, visit, str(k))
    elif isinstance(x, list):
        for v in x:
            _walk(v, visit, key)
    else:
        visit(key, x)


def _unfence(text: str) -> str:
    text = _FENCE_CLOSE.sub("", _FENCE_OPEN.sub("", text.strip())).strip()
    return text.strip("`").strip()


def split_json(text: str) -> JsonReply:
    """Prefix, object and suffix of a reply that should be one JSON object. The first `{` or `[` from which a JSON
    value decodes starts the object; `valid` holds only when nothing but a code fence surrounds it."""
    decoder = json.JSONDecoder()
    for m in re.finditer(r"[{\[]", text):
        try:
            obj, end = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        if not isinstance(obj, (dict, list)) or not obj:
            continue
        prefix, suffix = text[:m.start()], text[end:]
        valid = not _unfence(prefix) and not _unfence(suffix) and isinstance(obj, dict)
        return JsonReply(prefix, obj, suffix, valid, True)
    return JsonReply(text, None, "", False, False)
