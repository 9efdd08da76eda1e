"""Every verdict: LLM judges, the embedded classifier, rule verdicts, the verdict cache, calibration."""
