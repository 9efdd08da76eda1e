"""Reading JSONL written by people (strict, with file:line errors, accepting the shapes users already have),
writing files atomically, and where caches live."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All objects of a JSONL file; blank lines are skipped, anything else malformed is an error."""
    return [obj for _, obj in iter_jsonl(path)]


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line, so callers can report file:line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 (byte 0x{raw[e.start]:02x})") from None
    if not text.strip():
        raise UserError(f"{path}: empty file")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise UserError(f"{path}:{lineno}: invalid JSON (nested too deeply)") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def default_cache_dir() -> Path:
    return Path(os.environ.get("CHARACTER_BAKER_CACHE", Path.home() / ".cache" / "character-baker"))


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write beside the target, fsync, then rename over it: readers see the old file or the new one, never half."""
    atomic_write_all({Path(path): data})


def atomic_write_all(files: dict[Path, bytes | str]) -> None:
    """Several files as one: each written beside its target and fsynced first; only when all are written is each
    renamed over its target. A full disk (ENOSPC, EFBIG) while writing leaves every old file in place (a set of
    pages never half old, half new) and no temporary file; the error names the target that did not fit."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            payload = data.encode("utf-8") if isinstance(data, str) else data
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            except OSError as e:  # named after the file being written, not its temporary name
                raise OSError(e.errno, e.strerror, str(path)) from e
            staged.append((tmp, path))
            try:
                os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are as readable as any other file
                with os.fdopen(fd, "wb") as f:
                    f.write(payload)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:  # a full disk: the old files stay, the error names this one
                raise OSError(e.errno, e.strerror, str(path)) from e
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise


def unwritable(folder: str | Path) -> str | None:
    """Why files cannot be created in `folder` (made when missing), or None when they can. Tried for real, with a
    nameless temporary file in the nearest folder that exists, so nothing is left behind and a read-only mount
    or a root-owned folder is found before any work rather than when its results are written."""
    folder = Path(folder)
    try:
        existing = next(p for p in (folder, *folder.parents) if p.exists())
    except (StopIteration, OSError) as e:
        return f"cannot look at {folder} ({getattr(e, 'strerror', None) or 'no such folder'})"
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        return f"cannot create files in {existing} ({e.strerror or e})"
    return None


def share_files(folder: str | Path) -> None:
    """Give each file under `folder` the mode a plain `open()` gives (0666 less the umask). safetensors writes
    through a private temporary file and leaves 0600: weights nobody else (a server run as another user, a
    colleague on the box) could read."""
    mode = 0o666 & ~_umask()
    for f in Path(folder).rglob("*"):
        if f.is_file() and not f.is_symlink():
            f.chmod(mode)


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """A TOML file as a table, or one line saying why not (`what` names the file's kind: "recipe", "board")."""
    import tomllib

    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: invalid TOML ({e})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read the {what} ({e.strerror or e})") from None


def check_keys(raw: dict[str, Any], known: Any, where: str) -> None:
    """Unknown keys are errors that name the nearest valid key: a typo must never silently change a setting."""
    import difflib

    for key in raw:
        if key not in known:
            near = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.5)
            hint = f" (did you mean '{near[0]}'?)" if near else f" (known: {', '.join(known)})"
            raise UserError(f"{where}: unknown key '{key}'{hint}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def require_text(obj: dict[str, Any], field: str, where: str) -> str:
    """A non-empty string field, or a one-line error naming it."""
    if field not in obj:
        raise UserError(f"{where}: missing field '{field}'")
    value = obj[field]
    if not isinstance(value, str):
        raise UserError(f"{where}: field '{field}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise UserError(f"{where}: field '{field}' is empty")
    return value


@dataclass(frozen=True)
class Pair:
    """One training example: a user prompt and the response we want (or do not want)."""

    prompt: str
    response: str
    category: str | None = None
    id: str | None = None
    system: str | None = None

    def prompt_messages(self) -> list[dict[str, str]]:
        """The prompt as chat messages: the system prompt, if any, then the user's turn."""
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + [{"role": "user", "content": self.prompt}]


def _pair_from_messages(obj: dict[str, Any], where: str) -> Pair:
    messages = obj["messages"]
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{where}: field 'messages' must be a non-empty list")
    system = None
    prompt = None
    response = None
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise UserError(f"{where}: messages[{i}] must have 'role' and 'content'")
        role, content = m["role"], m["content"]
        if not isinstance(content, str) or not content.strip():
            raise UserError(f"{where}: messages[{i}].content is empty or not a string")
        if role == "system":
            system = content
        elif role == "user":
            prompt = content
        elif role == "assistant":
            response = content
        else:
            raise UserError(f"{where}: messages[{i}].role '{role}' is not system/user/assistant")
    if prompt is None:
        raise UserError(f"{where}: messages has no 'user' turn")
    if response is None:
        raise UserError(f"{where}: messages has no 'assistant' turn")
    return Pair(prompt=prompt, response=response, system=system)


def load_pairs(path: str | Path) -> list[Pair]:
    """Training pairs from `{prompt, response, category?}`, `{messages: [...]}` or `{instruction, output}` rows."""
    pairs: list[Pair] = []
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if "messages" in obj:
            pair = _pair_from_messages(obj, where)
        elif "instruction" in obj or "output" in obj:
            instruction = require_text(obj, "instruction", where)
            extra = obj.get("input")
            prompt = f"{instruction}\n\n{extra}" if isinstance(extra, str) and extra.strip() else instruction
            pair = Pair(prompt=prompt, response=require_text(obj, "output", where))
        elif "prompt" in obj or "response" in obj:
            pair = Pair(prompt=require_text(obj, "prompt", where), response=require_text(obj, "response", where))
        else:
            raise UserError(
                f"{where}: unrecognised row: expected {{prompt, response}}, {{messages}} or {{instruction, output}}"
            )
        category = obj.get("category")
        if category is not None and not isinstance(category, str):
            raise UserError(f"{where}: field 'category' must be a string")
        row_id = obj.get("id")
        pairs.append(
            Pair(
                prompt=pair.prompt,
                response=pair.response,
                category=category,
                id=str(row_id) if row_id is not None else None,
                system=pair.system,
            )
        )
    return pairs
