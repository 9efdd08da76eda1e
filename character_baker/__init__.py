"""character-baker: an evaluation-first harness for baking a character into open-weight LLMs."""

__version__ = "0.1.0"
