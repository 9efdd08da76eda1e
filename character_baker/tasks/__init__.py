"""The eval tasks: Inspect tasks for the persona suite (and, later, lm-eval tasks for capability)."""
