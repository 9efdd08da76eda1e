"""Keeping API keys out of everything written to disk: error messages, Python logging, Inspect's logs.

A provider that echoes the key in an error body would otherwise put it into Inspect's trace files, its sample
buffers and `.eval` logs (sample errors, model events), which are written while the run goes (a killed run
leaves them as they are). So keys are masked before anything is written: in what a model call hands back
(`redact_errors`) and in every log record a handler writes (`redact_logging`); `redact_files` rewrites a
finished run's logs as a second line of defence. Keys are known only as environment values, so redaction
replaces every environment value whose name says it is a secret.
"""

from __future__ import annotations

import io
import logging
import os
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .data import atomic_write

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
MASK = "***"


_GIVEN: set[str] = set()  # keys handed to the harness as arguments, not through the environment


def secret_values() -> list[str]:
    """Environment values that are secrets by name, and keys registered with `register_secret`; long ones first so
    a key inside another is masked whole."""
    values = {v for k, v in os.environ.items() if v and len(v) >= 8 and SECRET_NAME.search(k)} | _GIVEN
    return sorted(values, key=len, reverse=True)


def register_secret(value: str | None) -> None:
    """Mask `value` from now on, wherever the environment's secrets are masked: a key passed as an argument."""
    if value and len(value) >= 8:
        _GIVEN.add(value)


def redact(text: str, secrets: list[str] | None = None) -> str:
    for value in secret_values() if secrets is None else secrets:
        text = text.replace(value, MASK)
    return text


def scrub(value: Any, secrets: list[str] | None = None) -> Any:
    """`value` with every secret masked in each string inside it (a string, or dicts, lists and tuples of them);
    other values are returned as they are."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(scrub(v, secrets) for v in value)
    return value


class _Redact(logging.Filter):
    """Masks secrets in all a handler may write of a record before it writes it: the message and its arguments,
    exception and stack text, and every extra field (Inspect's trace file writes a failed action's `error` and
    `stacktrace` fields, which a log-record factory never sees: `extra` is set after the factory runs)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = secret_values()
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not ours
            message = ""
        if any(s in message for s in secrets):
            record.msg, record.args = scrub(message, secrets), ()
        if record.exc_info:
            text = record.exc_text or self._formatter.formatException(record.exc_info)
            if any(s in text for s in secrets):  # handlers that format `exc_info` themselves get only the text
                record.exc_text, record.exc_info = scrub(text, secrets), None
        for key, value in list(vars(record).items()):
            if key not in ("msg", "args", "exc_info"):
                clean = scrub(value, secrets)
                if clean is not value and clean != value:
                    setattr(record, key, clean)
        return True


_REDACT = _Redact()
_installed = False


def redact_logging() -> None:
    """Mask secrets in every Python log record from now on, in each handler that writes it (Inspect's trace file
    and its sample transcripts included). A record factory, run as each record is made and so before any handler
    sees it, puts the masking filter on every handler the record will reach (its logger's and its ancestors'), so
    a handler made later, as Inspect makes its trace handler when an eval starts, has it before its first record."""
    global _installed
    if _installed:
        return
    _installed = True
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            for handler in logger.handlers:
                if _REDACT not in handler.filters:
                    handler.addFilter(_REDACT)
            logger = logger.parent if logger.propagate else None
        return record

    logging.setLogRecordFactory(factory)


def redact_errors(model: Any) -> Any:
    """Mask secrets in what an Inspect model's API hands back, before Inspect records it: a raised or returned
    exception, an output's error and the logged response of the call. Inspect writes these into its trace file,
    the sample buffer and the `.eval` log as soon as the call ends, so masking them afterwards is too late.
    Installs `redact_logging` too. Returns the model."""
    redact_logging()
    api = model.api
    generate = api.generate
    if getattr(generate, "redacts", False):
        return model

    async def redacting(*args: Any, **kwargs: Any) -> Any:
        try:
            result = await generate(*args, **kwargs)
        except Exception as ex:
            if scrub_exception(ex):
                # the same exception without the provider's frames, whose locals may hold the key
                raise ex.with_traceback(None)  # noqa: B904
            raise
        output, call = result if isinstance(result, tuple) else (result, None)
        if isinstance(output, Exception) and scrub_exception(output):
            output.with_traceback(None)
        elif getattr(output, "error", None):
            output.error = scrub(output.error)
        if call is not None:
            call.response = scrub(call.response)
        return result

    redacting.redacts = True  # type: ignore[attr-defined]
    api.generate = redacting
    return model


def scrub_exception(error: BaseException) -> bool:
    """Mask secrets in place in an exception and those it was raised from or during: arguments (its text) and
    attributes (`message`, `body`, notes). The type stays, so retry decisions stand; an exception that held a secret
    loses its traceback. True when any held one."""
    secrets = secret_values()
    held = False
    todo, seen = [error], set()
    while todo and secrets:
        ex = todo.pop()
        if ex is None or id(ex) in seen:
            continue
        seen.add(id(ex))
        todo += [ex.__cause__, ex.__context__]
        found = False
        args = scrub(ex.args, secrets)
        if args != ex.args:
            ex.args, found = args, True
        for key, value in list(vars(ex).items()):
            clean = scrub(value, secrets)
            if clean is not value and clean != value:
                vars(ex)[key], found = clean, True
        if found and ex is not error:
            ex.with_traceback(None)
        held = held or found
    return held


def redact_files(paths: Iterable[str | Path]) -> int:
    """Rewrite logs that hold a secret (plain text, JSON or Inspect's zipped `.eval`); returns files changed."""
    secrets = [s.encode() for s in secret_values()]
    if not secrets:
        return 0
    changed = 0
    for path in map(Path, paths):
        if not path.is_file():
            continue
        if zipfile.is_zipfile(path):
            changed += _redact_zip(path, secrets)
            continue
        data = path.read_bytes()
        clean = _mask(data, secrets)
        if clean != data:
            atomic_write(path, clean)
            changed += 1
    return changed


def _mask(data: bytes, secrets: list[bytes]) -> bytes:
    for s in secrets:
        data = data.replace(s, MASK.encode())
    return data


def _redact_zip(path: Path, secrets: list[bytes]) -> int:
    import inspect_ai.log  # noqa: F401 - Inspect teaches zipfile the zstd its `.eval` logs are compressed with

    with zipfile.ZipFile(path) as z:
        members = [(info, z.read(info)) for info in z.infolist()]
    if not any(s in data for _, data in members for s in secrets):
        return 0
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for info, data in members:
            out.writestr(info, _mask(data, secrets), compress_type=info.compress_type)
    atomic_write(path, buf.getvalue())
    return 1
