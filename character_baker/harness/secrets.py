"""Keeping API keys out of everything written to disk: error messages, Python logging, Inspect's logs.

A provider that echoes the key in an error body would otherwise put it into `.eval` logs (sample errors,
model events) and Inspect's trace files. Keys are known only as environment values, so redaction replaces
every environment value whose name says it is a secret.
"""

from __future__ import annotations

import io
import logging
import os
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

from .data import atomic_write

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
MASK = "***"


def secret_values() -> list[str]:
    """Environment values that are secrets by name; long ones first so a key inside another is masked whole."""
    values = {v for k, v in os.environ.items() if v and len(v) >= 8 and SECRET_NAME.search(k)}
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    for value in secret_values():
        text = text.replace(value, MASK)
    return text


_installed = False


def redact_logging() -> None:
    """Mask secrets in every Python log record from now on (Inspect's trace file and log events included):
    the record factory runs before any handler formats or stores the record."""
    global _installed
    if _installed:
        return
    _installed = True
    make = logging.getLogRecordFactory()
    formatter = logging.Formatter()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)
        secrets = secret_values()
        if not secrets:
            return record
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not ours
            return record
        if any(s in message for s in secrets):
            record.msg, record.args = redact(message), ()
        if record.exc_info:
            record.exc_text = redact(formatter.formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)


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
