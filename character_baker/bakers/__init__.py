"""Bakers: trainers as plug-ins that turn a recipe into candidate models the harness can score.

A baker is any class with a `name` and a `bake(recipe, ...)` method, registered under the entry-point group
`character_baker.bakers` (see pyproject.toml), so a separate package can add one.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Protocol

from ..harness.errors import UserError

GROUP = "character_baker.bakers"


class Baker(Protocol):
    name: str
    description: str

    def bake(self, recipe: Any, progress: bool = True, steps: Any = None) -> list[Any]:
        """Candidates (each with `.path` and `.lineage`); `steps` is the round's `harness.console.Steps`, for the
        baker's own step headers ("profile", "train", "select", "merge")."""


def available() -> dict[str, Any]:
    """Entry point name -> its (unloaded) entry point."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def get_baker(name: str) -> Baker:
    eps = available()
    if name not in eps:
        raise UserError(f"unknown baker '{name}' (installed: {', '.join(sorted(eps)) or 'none'})")
    return eps[name].load()()
