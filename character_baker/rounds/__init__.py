"""Rounds: a recipe run end to end (bake, score, record, gate, publish), its plan, preconditions and the demo base.

Standard library only at import time: `tox -e r6` runs `python -m character_baker.rounds.plan` before the GPU install.
"""
