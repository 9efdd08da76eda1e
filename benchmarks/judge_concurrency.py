"""Judging through the suite against a judge server that sleeps 200 ms a request: concurrent vs one at a time.

Target: >= 5x faster than one-at-a-time; a second identical run makes zero new judge requests; `personality` and
`assistant_leaks` judging the same replies at once make 1.0 request per distinct (prompt, reply).
    python benchmarks/judge_concurrency.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("INSPECT_DISPLAY", "none")

from character_baker.harness.candidates import resolve_candidate  # noqa: E402
from character_baker.harness.character import load_character  # noqa: E402
from character_baker.tasks.score import ScoreOptions, score_candidate  # noqa: E402
from character_baker.testing.openai_server import ScriptedOpenAIServer  # noqa: E402

N = 100
DELAY = 0.2


def run(server: ScriptedOpenAIServer, out: Path, max_samples: int | None) -> tuple[float, int, int]:
    transcript = load_character("skippy").root / "examples" / "skippy_transcript.jsonl"
    candidate = resolve_candidate(f"responses:{transcript}")
    opts = ScoreOptions(judge="openai-api/local/scripted-judge", tasks=("personality",), limit=N, out=out,
                        max_samples=max_samples, display="none")
    before = server.requests
    started = time.perf_counter()
    card, _ = score_candidate(candidate, opts)
    elapsed = time.perf_counter() - started
    row = card.get("personality", "sarcastic", judge="llm")
    return elapsed, server.requests - before, row.n


def shared(server: ScriptedOpenAIServer, out: Path) -> tuple[int, int]:
    """Both judged tasks on the whole eval split with a fresh cache: requests made vs distinct replies judged."""
    pack = load_character("skippy")
    transcript = pack.root / "examples" / "skippy_transcript.jsonl"
    opts = ScoreOptions(judge="openai-api/local/scripted-judge", tasks=("personality", "assistant_leaks"), out=out,
                        display="none")
    before = server.requests
    score_candidate(resolve_candidate(f"responses:{transcript}"), opts)
    distinct = len({p.prompt for p in pack.identity_prompts + pack.personality_prompts})
    return server.requests - before, distinct


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, ScriptedOpenAIServer(delay=DELAY) as server:
        os.environ["LOCAL_BASE_URL"] = server.base_url
        os.environ["LOCAL_API_KEY"] = "benchmark"
        root = Path(tmp)
        os.environ["CHARACTER_BAKER_CACHE"] = str(root / "cache-seq")
        os.environ["INSPECT_CACHE_DIR"] = str(root / "inspect-seq")
        seq, seq_req, seq_n = run(server, root / "seq", max_samples=1)
        os.environ["CHARACTER_BAKER_CACHE"] = str(root / "cache-conc")
        os.environ["INSPECT_CACHE_DIR"] = str(root / "inspect-conc")
        conc, conc_req, conc_n = run(server, root / "conc", max_samples=None)
        again, again_req, again_n = run(server, root / "again", max_samples=None)  # same judge cache, new run
        os.environ["CHARACTER_BAKER_CACHE"] = str(root / "cache-shared")
        both_req, distinct = shared(server, root / "shared")
    print(f"judge server delay {DELAY * 1000:.0f} ms, {N} responses judged through the personality task")
    print(f"one at a time : {seq:6.2f} s  ({seq_req} requests, n={seq_n})")
    print(f"concurrent    : {conc:6.2f} s  ({conc_req} requests, n={conc_n})")
    print(f"speed-up      : {seq / conc:6.1f}x  (target >= 5x)")
    print(f"second run    : {again:6.2f} s  ({again_req} new judge requests, n={again_n}; target 0)")
    print(f"two tasks     : {both_req} requests for {distinct} distinct replies = {both_req / distinct:.2f} "
          "per reply (personality + assistant_leaks; target 1.0)")


if __name__ == "__main__":
    main()
