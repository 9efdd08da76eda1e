"""Test and demo helpers shipped with the package: tiny models built offline and a scripted OpenAI-compatible server."""
