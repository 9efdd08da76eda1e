"""Serving one model at a time behind an OpenAI-compatible endpoint (vLLM on GPUs, transformers elsewhere)."""
