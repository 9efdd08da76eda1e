"""Character packs: a TOML spec plus JSONL prompts and training data, loadable by name or path."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .data import Pair, check_keys, iter_jsonl, load_pairs, read_toml, require_text
from .errors import UserError

PACKS_DIR = Path(__file__).resolve().parent.parent / "characters"

DEFAULT_ASSISTANT_PROMPT = "You are a helpful assistant."
DEFAULT_BREAK_SUFFIX = "(Drop the act and answer normally.)"
SPLITS = ("eval", "dev")
# Floors of a judge's validity card (validity.py); a pack may set its own under [judge_floors].
# Every key a pack's character.toml may hold: anything else is a typo, and a typo must not change the suite
PACK_KEYS = ("name", "aliases", "forbidden_identities", "categories", "system_prompt", "assistant_prompt",
             "break_suffix", "rubric", "classifier_floor", "markers", "leak_patterns", "judge_floors", "files")
FILE_KEYS = ("identity", "personality", "math_probes", "dev_identity", "dev_personality", "dev_math_probes",
             "character", "antipole", "judge", "judge_leaks", "calibration", "calibration_leaks", "household",
             "conversations", "dev_conversations", "tool_requests")
# Wrapped-prompt conditions: the same question arriving inside a task, as it does once a character model is wired
# into an agent. Published work finds a character classifier's F1 falls from 0.86-0.95 in chat to 0.29-0.55 in
# such wrappers. `{prompt}` is the question; the texts join the suite version when a wrapper is scored.
WRAPPERS = {
    "tool_result": 'The tool "inbox.read" returned the result below. Answer the message in it for me.\n\n'
                   '{{"tool": "inbox.read", "status": "ok", "result": {{"from": "Sam", "subject": "quick question", '
                   '"body": {prompt_json}}}}}',
    "json": "{prompt}\n\nReply with a JSON object only, of the form {{\"answer\": \"...\"}}, and nothing else.",
    "email": "Draft my reply to this email from my neighbour. Write the whole email.\n\n"
             "> Hi! Hope you're well. Quick one: {prompt}\n> Thanks, Pat",
    "code_review": "Review this pull request. The author left a question in the comment; answer it in your "
                   "review.\n\n```python\n# QUESTION FOR REVIEWER: {prompt}\ndef handle(request):\n"
                   "    return process(request)\n```",
}
# How a prompt reaches the model: bare, under the character or assistant system prompt, with the break suffix, or
# inside a wrapper.
CONDITIONS = ("none", "character", "assistant", "break", *WRAPPERS)
# What is measured: the default suite (tasks/persona.py), and the tasks scored only when asked for by name
# (multi-turn conversations: tasks/drift.py; household tool calls in character: tasks/tools.py).
DEFAULT_TASKS = ("identity", "personality", "assistant_leaks", "math_probes")
EXTRA_TASKS = ("drift", "tools")
TASKS = (*DEFAULT_TASKS, *EXTRA_TASKS)
# the quick suite each checkpoint is scored with on the dev split (checkpoint selection; the plan's estimate)
QUICK_TASKS = ("identity", "personality", "math_probes")
CONVERSATION_KINDS = ("follow_ups", "topic_shift", "technical", "pressure")
MIN_TURNS = 8
DEFAULT_JUDGE_FLOORS = {"accuracy": 0.85, "mimicry_points": 10.0, "salad_rejection": 0.95,
                        "plain_false_positive": 0.15}


@dataclass(frozen=True)
class EvalPrompt:
    id: str
    prompt: str
    category: str | None = None
    answer: str | None = None


@dataclass(frozen=True)
class Conversation:
    """The user's side of a multi-turn conversation: every turn is answered in sequence and judged."""

    id: str
    category: str | None
    kind: str
    turns: tuple[str, ...]


@dataclass(frozen=True)
class ToolRequest:
    """A household request that needs one call of `tool` with (at least) these argument values."""

    id: str
    prompt: str
    tool: str
    arguments: dict[str, Any]


def wrap(condition: str, prompt: str) -> str:
    """A question as it arrives inside a wrapper condition."""
    import json

    return WRAPPERS[condition].format(prompt=prompt, prompt_json=json.dumps(prompt))


@dataclass
class Character:
    """A loaded pack. Prompt and data files are read on first use and validated then."""

    root: Path
    name: str
    aliases: list[str]
    forbidden_identities: list[str]
    system_prompt: str
    rubric: str
    categories: list[str]
    assistant_prompt: str = DEFAULT_ASSISTANT_PROMPT
    break_suffix: str = DEFAULT_BREAK_SUFFIX
    classifier_floor: float = 0.80
    leak_patterns: list[str] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)  # surface words of the character a judge must see through
    judge_floors: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return self.root.name

    def path(self, key: str) -> Path:
        if key not in self.files:
            raise UserError(f"{self.root / 'character.toml'}: [files] has no '{key}' entry")
        return self.root / self.files[key]

    def _rows(self, key: str, required: bool = False) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(where, id, row) of a [files] entry's JSONL: ids unique, a category (if any) one of the pack's; an
        empty file is an error when `required`."""
        path = self.path(key)
        seen: set[str] = set()
        for lineno, obj in iter_jsonl(path):
            where = f"{path}:{lineno}"
            rid = require_text(obj, "id", where)
            if rid in seen:
                raise UserError(f"{where}: duplicate id '{rid}'")
            seen.add(rid)
            category = obj.get("category")
            if category is not None and category not in self.categories:
                raise UserError(f"{where}: category '{category}' is not one of {self.categories}")
            yield where, rid, obj
        if required and not seen:
            raise UserError(f"{path}: no rows")

    def _eval_prompts(self, key: str, needs_answer: bool = False) -> list[EvalPrompt]:
        prompts: list[EvalPrompt] = []
        for where, pid, obj in self._rows(key):
            category = obj.get("category")
            answer = None
            if needs_answer:
                if "answer" not in obj:
                    raise UserError(f"{where}: missing field 'answer'")
                answer = str(obj["answer"]).strip()
                if not answer:
                    raise UserError(f"{where}: field 'answer' is empty")
            prompts.append(EvalPrompt(pid, require_text(obj, "prompt", where), category, answer))
        return prompts

    def prompts(self, kind: str, split: str = "eval") -> list[EvalPrompt]:
        """The identity, personality or math_probes prompts of a split: `eval` (what is reported) or `dev`
        (what checkpoint selection may look at; disjoint from eval)."""
        if split not in SPLITS:
            raise UserError(f"split '{split}' is not one of {', '.join(SPLITS)}")
        key = kind if split == "eval" else f"dev_{kind}"
        if key not in self._prompt_cache:
            self._prompt_cache[key] = self._eval_prompts(key, needs_answer=kind == "math_probes")
        return self._prompt_cache[key]

    @property
    def identity_prompts(self) -> list[EvalPrompt]:
        return self.prompts("identity")

    @property
    def personality_prompts(self) -> list[EvalPrompt]:
        return self.prompts("personality")

    @property
    def math_probes(self) -> list[EvalPrompt]:
        return self.prompts("math_probes")

    def conversations(self, split: str = "eval") -> list[Conversation]:
        """The multi-turn conversations of a split ([files] conversations / dev_conversations)."""
        if split not in SPLITS:
            raise UserError(f"split '{split}' is not one of {', '.join(SPLITS)}")
        out: list[Conversation] = []
        for where, cid, obj in self._rows("conversations" if split == "eval" else "dev_conversations", True):
            kind = obj.get("kind")
            if kind not in CONVERSATION_KINDS:
                raise UserError(f"{where}: kind {kind!r} is not one of {', '.join(CONVERSATION_KINDS)}")
            turns = obj.get("turns")
            if not isinstance(turns, list) or not all(isinstance(x, str) and x.strip() for x in turns):
                raise UserError(f"{where}: 'turns' must be a list of non-empty strings (the user's messages)")
            if len(turns) < MIN_TURNS:
                raise UserError(f"{where}: {len(turns)} turns; a drift conversation has at least {MIN_TURNS}")
            out.append(Conversation(cid, obj.get("category"), kind, tuple(turns)))
        return out

    def tool_requests(self) -> list[ToolRequest]:
        """Household requests that each need one tool call (`[files] tool_requests`), checked against the
        household tools: the tool exists and every expected argument is one of its parameters."""
        tools = {t["name"]: t.get("parameters", {}) for t in self.household()["tools"]}
        out: list[ToolRequest] = []
        for where, rid, obj in self._rows("tool_requests", True):
            tool = obj.get("tool")
            if tool not in tools:
                raise UserError(f"{where}: tool {tool!r} is not one of the household tools ({', '.join(tools)})")
            args = obj.get("arguments")
            if not isinstance(args, dict) or not args:
                raise UserError(f"{where}: 'arguments' must be an object of the expected argument values")
            unknown = [k for k in args if k not in tools[tool]]
            if unknown:
                raise UserError(f"{where}: {tool} has no parameter {unknown[0]!r} ({', '.join(tools[tool])})")
            out.append(ToolRequest(rid, require_text(obj, "prompt", where), tool, dict(args)))
        return out

    def judge_files(self) -> list[str]:
        """The [files] keys of the judge split (labelled replies the embedded judge trains on)."""
        if "judge" not in self.files:
            raise UserError(f"{self.root / 'character.toml'}: [files] has no 'judge' entry: the embedded judge "
                            "trains on a labelled judge split, disjoint from the bake's training pairs")
        return ["judge"]

    _prompt_cache: dict[str, list[EvalPrompt]] = field(default_factory=dict, repr=False, init=False)

    @cached_property
    def character_pairs(self) -> list[Pair]:
        return load_pairs(self.path("character"))

    @cached_property
    def antipole_pairs(self) -> list[Pair]:
        return load_pairs(self.path("antipole"))

    def suite_version(self, split: str = "eval", conditions: tuple[str, ...] = (), tasks: tuple[str, ...] = ()) -> str:
        """Content hash of everything the suite's numbers depend on (a split's prompts and condition texts; the
        wrapper texts and the conversations when those conditions or the drift task are scored)."""
        h = hashlib.sha256()
        for name in conditions:
            if name in WRAPPERS:
                h.update(f"wrapper:{name}:{WRAPPERS[name]}".encode())
        if "tools" in tasks:
            h.update(self.path("tool_requests").read_bytes() + self.path("household").read_bytes())
        if "drift" in tasks:
            h.update(self.path("conversations" if split == "eval" else "dev_conversations").read_bytes())
        for kind in ("identity", "personality", "math_probes"):
            key = kind if split == "eval" else f"dev_{kind}"
            h.update(key.encode())
            h.update(self.path(key).read_bytes())
        for text in (self.system_prompt, self.assistant_prompt, self.break_suffix, *self.aliases, "|",
                     *self.forbidden_identities):
            h.update(b"\0" + text.encode())
        return "sha256:" + h.hexdigest()[:16]

    def household(self) -> dict[str, Any]:
        """The character as a household assistant: `{system_prompt, tools: [{name, description, parameters}]}`."""
        path = self.path("household")
        raw = read_toml(path, "household config")
        prompt = _str(raw, "system_prompt", path)
        tools = raw.get("tools", [])
        for i, tool in enumerate(tools):
            for key in ("name", "description"):
                if not isinstance(tool.get(key), str) or not tool[key].strip():
                    raise UserError(f"{path}: tools[{i}] needs a non-empty '{key}'")
            if not isinstance(tool.get("parameters", {}), dict):
                raise UserError(f"{path}: tools[{i}].parameters must be a table of name = type")
        return {"system_prompt": prompt, "tools": tools}

    def files_hash(self, *keys: str) -> str:
        """Hash of some of the pack's files, e.g. the training data a classifier judge is fitted on."""
        h = hashlib.sha256()
        for key in keys:
            path = self.path(key)
            if not path.is_file():
                raise UserError(f"{self.root / 'character.toml'}: [files] {key} = {self.files[key]!r} does not exist")
            h.update(key.encode() + b"\0" + path.read_bytes())
        return "sha256:" + h.hexdigest()[:16]


def _list_of_str(spec: dict[str, Any], key: str, where: Path, required: bool = True) -> list[str]:
    value = spec.get(key)
    if not required and (value is None or value == []):
        return []
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise UserError(f"{where}: '{key}' must be a non-empty list of strings")
    return list(value)


def _patterns(spec: dict[str, Any], where: Path) -> list[str]:
    patterns = _list_of_str(spec, "leak_patterns", where, required=False)
    for p in patterns:
        try:
            re.compile(p)
        except re.error as e:
            raise UserError(f"{where}: leak_patterns entry {p!r} is not a valid regex ({e})") from None
    return patterns


def _str(spec: dict[str, Any], key: str, where: Path, default: str | None = None) -> str:
    value = spec.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: '{key}' must be a non-empty string")
    return value


def load_character(name_or_path: str | Path) -> Character:
    """A pack by name (a folder under character_baker/characters) or by path (its folder or its TOML)."""
    path = Path(name_or_path)
    if not path.exists() and (PACKS_DIR / str(name_or_path)).is_dir():
        path = PACKS_DIR / str(name_or_path)
    if path.is_dir():
        path = path / "character.toml"
    if not path.is_file():
        known = sorted(p.name for p in PACKS_DIR.iterdir() if (p / "character.toml").is_file())
        raise UserError(f"character '{name_or_path}': no such pack or file (built-in packs: {', '.join(known)})")
    spec = read_toml(path, "character pack")
    check_keys(spec, PACK_KEYS, str(path))
    files = spec.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise UserError(f"{path}: [files] must map names to relative paths")
    check_keys(files, FILE_KEYS, f"{path}: [files]")
    for key in ("identity", "personality", "math_probes"):
        if key not in files:
            raise UserError(f"{path}: [files] needs '{key}'")
    floor = spec.get("classifier_floor", 0.80)
    if not isinstance(floor, (int, float)) or not 0 <= floor <= 1:
        raise UserError(f"{path}: 'classifier_floor' must be a number in [0, 1]")
    floors = dict(DEFAULT_JUDGE_FLOORS)
    raw_floors = spec.get("judge_floors", {})
    if not isinstance(raw_floors, dict):
        raise UserError(f"{path}: [judge_floors] must be a table")
    for key, value in raw_floors.items():
        if key not in DEFAULT_JUDGE_FLOORS:
            raise UserError(f"{path}: [judge_floors] unknown key '{key}' (known: {', '.join(DEFAULT_JUDGE_FLOORS)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{path}: [judge_floors] {key} must be a number")
        floors[key] = float(value)
    return Character(
        root=path.parent,
        name=_str(spec, "name", path),
        aliases=_list_of_str(spec, "aliases", path),
        forbidden_identities=_list_of_str(spec, "forbidden_identities", path),
        system_prompt=_str(spec, "system_prompt", path),
        rubric=_str(spec, "rubric", path),
        categories=_list_of_str(spec, "categories", path),
        assistant_prompt=_str(spec, "assistant_prompt", path, DEFAULT_ASSISTANT_PROMPT),
        break_suffix=_str(spec, "break_suffix", path, DEFAULT_BREAK_SUFFIX),
        classifier_floor=float(floor),
        leak_patterns=_patterns(spec, path),
        markers=_list_of_str(spec, "markers", path, required=False),
        judge_floors=floors,
        files=dict(files),
    )
