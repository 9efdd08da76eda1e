"""The AIME capability task for lm-eval: where its data comes from, in one place.

`fixture` is ours (12 easy integer-answer problems, answers checked by hand and by script); any local JSONL of
`{"id", "problem", "answer"}` rows works the same way (offline, private sets). The hub sets need network.

Hub revisions: the commits below were read from public dataset cards (each says: the Hub API's `sha` for
`main` on 2026-08-11). They could not be checked from the machine this was written on (no hub access); a user
with network should confirm them (`huggingface_hub.HfApi().dataset_info(path).sha`) and may override them:
`run_capability(data="aime24", revision="<sha>")`, or the environment variable named in `revision_env`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TASK_DIR = Path(__file__).resolve().parent
TASK_YAML = TASK_DIR / "aime.yaml"
FIXTURE = TASK_DIR / "fixture.jsonl"


@dataclass(frozen=True)
class HubSet:
    """A pinned dataset on the Hugging Face hub, already in the {id, problem, answer} shape."""

    path: str
    revision: str
    split: str
    revision_env: str  # set this variable to pin another commit


HUB_SETS: dict[str, HubSet] = {
    # AIME 2024 I + II, 30 rows; columns id (int), problem, solution, answer ("025": zero-padded strings), url, year
    "aime24": HubSet("HuggingFaceH4/aime_2024", "2fe88a2f1091d5048c0f36abc874fb997b3dd99a", "train",
                     "CHARACTER_BAKER_AIME24_REVISION"),
    # AIME 2025 I + II, 30 rows; columns problem, answer, id (strings)
    "aime25": HubSet("math-ai/aime25", "563bb8404243c5f09de6ec262f2db674fe5bce9b", "test",
                     "CHARACTER_BAKER_AIME25_REVISION"),
}
