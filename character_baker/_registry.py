"""Inspect entry point: makes our tasks (`character_baker/identity`, ...) and providers (`cb`, `responses`) known."""

from .harness.providers import cb, responses  # noqa: F401
from .tasks.drift import drift  # noqa: F401
from .tasks.persona import assistant_leaks, identity, math_probes, personality  # noqa: F401
from .tasks.tools import tools  # noqa: F401
