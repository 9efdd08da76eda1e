"""One error type for everything a user can fix; the CLI prints it as one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (a file, a field, a flag). The message names where and what."""
