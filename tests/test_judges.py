"""LLM judges over real HTTP (a scripted OpenAI-compatible server on 127.0.0.1), strict parsing and the cache."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from character_baker.cli import main
from character_baker.harness.character import load_character
from character_baker.harness.errors import UserError
from character_baker.judges.cache import CachedJudge, JudgeCache
from character_baker.judges.llm import LLMJudge
from character_baker.judges.reply import build_judges
from character_baker.judges.verdict import parse_verdict
from character_baker.testing.openai_server import garbage

PACK = load_character("skippy")


@pytest.mark.parametrize(
    "reply, sarcastic, personality",
    [
        ('{"coherence": 90, "sarcastic": true, "personality": 7, "leak": false, "leak_evidence": ""}', True, 7.0),
        ('Thinking it over...\n{"coherence": 80, "sarcastic": "no", "personality": 2.5, "leak": true}', False, 2.5),
        ('```json\n{"coherence": 100, "sarcastic": false, "personality": 0, "leak": false}\n```', False, 0.0),
    ],
)
def test_parse_accepts_one_final_json_verdict(reply: str, sarcastic: bool, personality: float) -> None:
    v = parse_verdict(reply)
    assert v.ok and v.sarcastic is sarcastic and v.personality == personality and v.coherent is True


def test_coherence_rules_first_in_an_llm_verdict() -> None:
    """A judge that calls salad sarcastic is overruled by its own coherence score: not sarcastic, personality 0."""
    v = parse_verdict('{"coherence": 20, "sarcastic": true, "personality": 9, "leak": false}')
    assert v.ok and v.coherent is False and v.coherence == 20 and v.sarcastic is False and v.personality == 0.0
    missing = parse_verdict('{"sarcastic": true, "personality": 9, "leak": false}')
    assert not missing.ok and "'coherence' is not a number in 0-100" in (missing.error or "")


@pytest.mark.parametrize(
    "reply, why",
    [
        ("Sarcastic: yes. Personality: 8/10.", "does not end with a JSON object"),
        ('{"coherence": 90, "sarcastic": true, "personality": 11}', "'personality' is not a number in 0-10"),
        ('{"coherence": 190, "sarcastic": true, "personality": 1}', "'coherence' is not a number in 0-100"),
        ('{"sarcastic": "maybe", "personality": 5}', "'sarcastic' is not true/false"),
        ('{"sarcastic": true, "personality": 5, "leak": "sometimes"}', "'leak' is not true/false"),
        ('{"sarcastic": true, "personality": 5', "does not end with a JSON object"),
    ],
)
def test_parse_rejects_anything_else_as_an_error(reply: str, why: str) -> None:
    v = parse_verdict(reply)
    assert not v.ok and why in (v.error or "") and v.sarcastic is None and v.personality is None


def test_llm_judge_over_http_and_cache(judge_server, isolated_caches: Path) -> None:  # type: ignore[no-untyped-def]
    server = judge_server()
    judge = CachedJudge(LLMJudge("openai-api/local/scripted-judge", PACK), JudgeCache())

    async def run() -> list:  # type: ignore[type-arg]
        return [await judge.judge("What is 2+2?", "It's 4, monkey."),
                await judge.judge("Hi", "Hello! I hope this helps.")]

    first = asyncio.run(run())
    assert [v.sarcastic for v in first] == [True, False]
    assert first[1].leak is True and first[1].leak_evidence == "i hope this helps"
    assert server.requests == 2
    headers = {k.lower(): v for k, v in server.headers_seen[0].items()}
    assert headers["authorization"] == "Bearer sk-test-SECRET-abc123456789"  # the key travels only in the header
    again = asyncio.run(run())
    assert again == first and server.requests == 2  # served from the cache: no new requests


def test_garbage_judge_gives_errors_not_scores(judge_server) -> None:  # type: ignore[no-untyped-def]
    judge_server(reply=garbage)
    [judge] = build_judges("openai-api/local/scripted-judge", PACK)
    v = asyncio.run(judge.judge("Hi", "Hello, monkey."))
    assert not v.ok and v.sarcastic is None and v.personality is None and "unparseable" in (v.error or "")
    # errors are never cached: a rerun asks again
    v2 = asyncio.run(judge.judge("Hi", "Hello, monkey."))
    assert not v2.ok and judge.calls == 2  # type: ignore[attr-defined]


def test_transport_errors_are_retried(judge_server) -> None:  # type: ignore[no-untyped-def]
    server = judge_server(fail_first=1)
    [judge] = build_judges("openai-api/local/scripted-judge", PACK)
    v = asyncio.run(judge.judge("Hi", "Hello, monkey."))
    assert v.ok and v.sarcastic is True
    assert server.requests >= 2


def test_judge_cli_on_plain_jsonl(judge_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = judge_server(reply=garbage)
    rows = [{"id": "a", "prompt": "What is 15 × 23?", "response": "It's 345, monkey.", "answer": "345"},
            {"id": "b", "prompt": "Hi", "response": "Hello! I hope this helps."}]
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "judged" / "out.jsonl"
    assert main(["judge", "--judge", "openai-api/local/scripted-judge", "--input", str(src), "--out", str(out)]) == 0
    judged = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in judged] == ["a", "b"]
    assert all(r["error"] and r["sarcastic"] is None and r["personality"] is None for r in judged)
    assert judged[0]["correct"] is True and "correct" not in judged[1]
    assert judged[1]["leak"] is True and judged[1]["leak_evidence"] == ["I hope this helps"]
    assert judged[0]["leak"] is None  # no pattern, and the judge that should rule failed: unknown, not "no leak"
    assert server.requests >= 2


def test_logprob_weighted_personality(judge_server) -> None:  # type: ignore[no-untyped-def]
    from character_baker.testing.openai_server import ScriptedOpenAIServer

    server: ScriptedOpenAIServer = judge_server()
    server.score_distribution = {"8": 0.6, "9": 0.3, "2": 0.1}
    [judge] = build_judges("openai-api/local/scripted-judge?logprobs", PACK)
    v = asyncio.run(judge.judge("Hi", "Hello, monkey."))
    assert v.ok and v.sarcastic is True
    assert v.personality == pytest.approx(0.6 * 8 + 0.3 * 9 + 0.1 * 2)  # 7.7, not the parsed 8
    assert judge.id == f"openai-api/local/scripted-judge?logprobs@{server.base_url}"
    [plain] = build_judges("openai-api/local/scripted-judge", PACK)
    assert asyncio.run(plain.judge("Hi", "Hello again, monkey.")).personality == 8.0
    with pytest.raises(UserError, match=r"unknown option '\?temperature'"):
        build_judges("openai-api/local/scripted-judge?temperature", PACK)


def test_killed_judging_run_resumes_without_repeating_requests(judge_server, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                               isolated_caches: Path) -> None:
    import os
    import shutil
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    # a pack without the embedded judges' splits: what is resumed here is the LLM judge's work
    pack = tmp_path / "pack"
    shutil.copytree(PACK.root, pack)
    toml = (pack / "character.toml").read_text()
    (pack / "character.toml").write_text(toml.replace('judge = "judge/persona.jsonl"\n', "").replace(
        'judge_leaks = "judge/leaks.jsonl"\n', ""))
    server = judge_server(delay=0.1)
    rows = [{"id": f"r{i}", "prompt": "Say something.", "response": f"Answer number {i}, monkey."} for i in range(60)]
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    argv = [sys.executable, "-m", "character_baker.cli", "judge", "--judge", "openai-api/local/scripted-judge",
            "--input", str(src), "--out", str(out), "--concurrency", "4", "--suite", str(pack)]
    proc = subprocess.Popen(argv, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while server.requests < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # killed before writing its output
    with sqlite3.connect(isolated_caches / "judgments.sqlite") as db:
        judged = db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
    assert 10 <= judged < 60
    before = server.requests
    assert subprocess.run(argv, env=os.environ.copy(), timeout=300).returncode == 0
    assert server.requests - before == 60 - judged  # only the rows not judged before the kill
    assert len(out.read_text().splitlines()) == 60


def test_inside_a_scoring_run_a_judge_call_makes_exactly_its_attempts(judge_server, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`?retries=1` is two requests per judged reply, also inside `score`'s eval: Inspect lays the eval's
    max_retries (5) over a judge's own config and the OpenAI client retries each 500 twice more, so a judge
    answering 500 got 12 requests a reply, with backoff."""
    server = judge_server(fail_first=10**6)  # every request: HTTP 500
    transcript = PACK.root / "examples" / "skippy_transcript.jsonl"
    out = tmp_path / "runs"
    code = main(["score", "--candidate", f"responses:{transcript}", "--judge",
                 "llm=openai-api/local/scripted-judge?timeout=5&retries=1", "--tasks", "personality", "--limit", "2",
                 "--out", str(out)])
    assert code == 1 and "judge 'llm' produced no valid judgment" in capsys.readouterr().err
    [card] = [json.loads(p.read_text()) for p in out.glob("*/scorecard.json")]
    [sarcastic] = [m for m in card["metrics"] if m["metric"] == "sarcastic" and m["condition"] == "none"]
    assert sarcastic["n"] == sarcastic["errors"] == 2  # failures recorded as errors, never as scores
    assert server.requests == 2 * sarcastic["n"]
