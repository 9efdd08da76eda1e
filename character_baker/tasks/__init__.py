"""What is measured: the persona suite as Inspect tasks, the lm-eval AIME task, and running them on a candidate
into a scorecard (`score.py` for the persona suite, `capability.py` for lm-eval)."""
