"""A judge that echoes its API key in error bodies leaves the key in no file: not Inspect's trace files (plain or
gzipped), its sample buffers, the `.eval` logs, the verdict cache or the scorecard, even when the run is killed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from character_baker.harness.secrets import SECRET_NAME
from character_baker.testing.openai_server import ScriptedOpenAIServer, keyword_judge

ROOT = Path(__file__).resolve().parent.parent
TRANSCRIPT = ROOT / "character_baker" / "characters" / "skippy" / "examples" / "skippy_transcript.jsonl"
CANARY = "sk-canary-ECHOED-7f3a9c1e5b"
MODEL_CACHES = ("classifier", "leaks", "validity", "families")  # trained from the pack's data, never from a reply


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded judges' trained models, shared by the runs below (training them costs minutes); the developer's
    own cache when there is one. Only these folders are shared: the verdict cache is each run's own."""
    own = Path.home() / ".cache" / "character-baker"
    return own if (own / "classifier").is_dir() else tmp_path_factory.mktemp("trained")


def _env(tmp_path: Path, trained: Path, server: ScriptedOpenAIServer, service: str = "LOCAL") -> dict[str, str]:
    """HOME, Inspect's data folder (trace files, sample buffers) and every cache inside `tmp_path`; the canary is
    the key of `openai-api/<service>/...`, served by `server`."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in MODEL_CACHES:
        (trained / name).mkdir(parents=True, exist_ok=True)
        (cache / name).symlink_to(trained / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECT_")}
    env.update(HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "xdg"),
               XDG_CACHE_HOME=str(tmp_path / "xdg-cache"), CHARACTER_BAKER_CACHE=str(cache),
               INSPECT_CACHE_DIR=str(tmp_path / "inspect-cache"),
               INSPECT_DISPLAY="none")
    env.update({f"{service}_BASE_URL": server.base_url, f"{service}_API_KEY": CANARY})
    return env


def _score(tmp_path: Path, candidate: str = f"responses:{TRANSCRIPT}",
           judge: str = "openai-api/local/scripted-judge?timeout=20&retries=2") -> list[str]:
    return [sys.executable, "-m", "character_baker.cli", "score", "--candidate", candidate, "--judge", judge,
            "--tasks", "personality", "--limit", "4", "--out", str(tmp_path / "runs")]


def _contents(path: Path, data: bytes) -> Iterator[tuple[str, bytes]]:
    """A file's bytes and what they hold: gzip streams decompressed (a cut-off one as far as it goes), zip members
    (`.eval` logs, zstd), and the members of a zip cut off mid-write, read from its local headers."""
    yield str(path), data
    if data[:2] == b"\x1f\x8b":
        yield f"{path}!gunzip", zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    if data[:4] == b"PK\x03\x04":
        import inspect_ai.log  # noqa: F401 - teaches zipfile the zstd Inspect compresses `.eval` members with

        try:
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    yield f"{path}!{name}", z.read(name)
        except zipfile.BadZipFile:
            yield from _local_members(path, data)


def _local_members(path: Path, data: bytes) -> Iterator[tuple[str, bytes]]:
    """Each member of a zip whose central directory was never written, decompressed as far as its bytes go."""
    import zstandard

    for match in re.finditer(rb"PK\x03\x04", data):
        start = match.start()
        method = int.from_bytes(data[start + 8:start + 10], "little")
        name_len = int.from_bytes(data[start + 26:start + 28], "little")
        extra_len = int.from_bytes(data[start + 28:start + 30], "little")
        body = data[start + 30 + name_len + extra_len:]
        name = data[start + 30:start + 30 + name_len].decode(errors="replace")
        try:
            if method == 8:
                body = zlib.decompressobj(-zlib.MAX_WBITS).decompress(body)
            elif method == 93:
                body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        except Exception:  # noqa: BLE001 - a member cut off mid-frame: its raw bytes were yielded with the file
            continue
        yield f"{path}!{name}", body


def files_with(root: Path, needle: str) -> list[str]:
    """Every file under `root` (symlinked shared caches not followed) whose bytes or contents hold `needle`."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                found += [where for where, data in _contents(path, path.read_bytes()) if needle.encode() in data]
    return sorted(found)


def _trace_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "xdg" / "inspect_ai" / "traces").glob("trace-*"))


@pytest.mark.parametrize("echoes", ["judge", "candidate"])
def test_a_run_killed_mid_call_leaves_no_key(tmp_path: Path, trained: Path, echoes: str) -> None:
    """Every call to the LLM judge (or to the candidate's endpoint, judged by the classifier) fails with the key in
    its body; the run is SIGKILLed once the server has seen ten requests: no redaction pass after the run, so only
    what was masked before it was written keeps the key off the disk."""
    server = ScriptedOpenAIServer(keyword_judge, fail_first=10**9, echo_key=True, delay=0.2)
    with server:
        if echoes == "judge":  # nine attempts a call (~13 s of backoff): the run is mid-call when it is killed
            argv = _score(tmp_path, judge="openai-api/local/scripted-judge?timeout=20&retries=8")
            env = _env(tmp_path, trained, server)
        else:
            argv = _score(tmp_path, candidate="openai-api/cand/echo", judge="classifier")
            env = _env(tmp_path, trained, server, service="CAND")
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.monotonic() + 900
        while server.requests < 10 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the latest failures reach the trace file and the sample buffer
        alive = proc.poll() is None
        os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate(timeout=60)[0]
    assert alive and server.requests >= 10, output.decode()[-3000:]
    assert CANARY.encode() not in output
    assert files_with(tmp_path, CANARY) == []
    traces = _trace_files(tmp_path)
    assert [p.suffix for p in traces] == [".log"]  # killed: no exit handler compressed it
    masked = files_with(tmp_path, "Bearer ***")  # the echoed failures were written, key masked
    assert str(traces[0]) in masked and any("samplebuffer" in f for f in masked), masked


def test_a_finished_run_with_judge_errors_leaves_no_key(tmp_path: Path, trained: Path) -> None:
    """The first judge requests fail with the key in their bodies (HTTP 500: raised, traced as errors; the four
    replies' first attempts and two second ones, so each other call answers by its third attempt) and so does every
    attempt on one reply (HTTP 400: handed back as the call's error and logged response). The run ends normally, so
    the trace file is gzipped at exit: read decompressed, it holds the masked failures."""
    from character_baker.harness.character import load_character

    refused = load_character("skippy").personality_prompts[0].prompt
    judge = ScriptedOpenAIServer(keyword_judge, fail_first=6, echo_key=True,
                                 fail_when=lambda messages: refused in str(messages[-1].get("content")))
    with judge:
        result = subprocess.run(_score(tmp_path), env=_env(tmp_path, trained, judge), cwd=ROOT,
                                capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert judge.requests > 6
    assert CANARY not in result.stdout + result.stderr
    assert files_with(tmp_path, CANARY) == []
    traces = _trace_files(tmp_path)
    assert [p.suffixes for p in traces] == [[".log", ".gz"]]
    masked = files_with(tmp_path, "Bearer ***")
    assert f"{traces[0]}!gunzip" in masked and any(".eval!samples/" in f for f in masked), masked
    assert list((tmp_path / "cache").glob("judgments.sqlite*"))  # the verdict cache was written


def test_a_handler_made_after_redaction_writes_no_key_in_extra_fields(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Inspect makes its trace handler when an eval starts and writes a failed action's `error` and `stacktrace` as
    extra fields: a handler made after `redact_logging` masks them, the message and the exception text."""
    import logging

    from inspect_ai._util.trace import TraceFormatter, trace_action

    from character_baker.harness.secrets import redact_logging

    monkeypatch.setenv("ECHO_API_KEY", CANARY)
    redact_logging()
    handler = logging.FileHandler(tmp_path / "trace.log")
    handler.setFormatter(TraceFormatter())
    logger = logging.getLogger("cb-test-trace")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with pytest.raises(RuntimeError), trace_action(logger, "Model", "generate"):
            raise RuntimeError(f"500 - echoed (key Bearer {CANARY})")
        try:
            raise ValueError(f"key {CANARY}")
        except ValueError:
            logger.exception("failed with %s", CANARY)
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = (tmp_path / "trace.log").read_text()
    assert CANARY not in text
    assert text.count("Bearer ***") == 2 and "failed with ***" in text  # `error` and `stacktrace`; the message


LM_EVAL_RUN = """
import logging, sys
from pathlib import Path

from character_baker.tasks.capability import run_capability
from character_baker.testing.openai_server import ScriptedOpenAIServer, answer_key
from tests.test_capability import fixture_rows

tmp, key = Path(sys.argv[1]), sys.argv[2]
logging.basicConfig(filename=str(tmp / "run.log"), level=logging.INFO)  # what a user's log file would hold
rows = fixture_rows()
with ScriptedOpenAIServer(answer_key({r["problem"]: r["answer"] for r in rows}), fail_first=2, echo_key=True) as s:
    out = run_capability("echoing", out_dir=tmp / "out", base_url=s.base_url, api_key=key, limit=3, num_concurrent=1)
print("math", out["rows"][0]["value"])
"""


def test_an_lm_eval_run_against_an_echoing_endpoint_writes_no_key(tmp_path: Path) -> None:
    """The capability suite (lm-eval's local-chat-completions, the key in its Authorization header, given as an
    argument, not through the environment): lm-eval logs each failed request's error body before retrying it, and
    a provider that echoes the key put it into the log."""
    env = {k: v for k, v in os.environ.items() if not SECRET_NAME.search(k)}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
               XDG_DATA_HOME=str(tmp_path / "xdg"), CHARACTER_BAKER_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", LM_EVAL_RUN, str(tmp_path), CANARY], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0 and "math 1.0" in done.stdout, done.stderr[-3000:]
    assert CANARY not in done.stdout + done.stderr
    assert files_with(tmp_path, CANARY) == []
    assert (tmp_path / "run.log").read_text().count("Bearer ***") == 2  # both failed requests logged, masked
