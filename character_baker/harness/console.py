"""What a long run shows a person: numbered step headers, one line of outcome per step, library noise filtered."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import Any


def console() -> Any:
    """Rich console; wide enough for the tables when writing to a file or a pipe."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=140)


def quiet_libraries() -> None:
    """Keep library chatter out of a run's console: deprecation notices, weight-loading bars, retry notes.

    Errors still surface; warnings are filtered by category, not silenced wholesale.
    """
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=".*(?:generation flags|do_sample|attention mask|pad token).*")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    for name in ("inspect_ai", "httpx", "peft", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)


class Steps:
    """`[3/8] train` headers for a run of known steps; silent when `show` is False (tests, pipes that opt out)."""

    def __init__(self, names: list[str], show: bool = True) -> None:
        self.names = names
        self.show = show
        self.out = console()
        self.started = time.monotonic()

    def start(self, name: str, detail: str = "") -> None:
        if self.show:
            number = self.names.index(name) + 1 if name in self.names else "·"
            minutes, seconds = divmod(int(time.monotonic() - self.started), 60)
            self.out.rule(f"[bold][{number}/{len(self.names)}] {name}[/bold]" + (f"  {detail}" if detail else "")
                          + f"  [dim]at {minutes}:{seconds:02d}[/dim]", align="left")

    def note(self, text: str) -> None:
        if self.show:
            self.out.print(f"  {text}", highlight=False)
