"""End to end: candidates through Inspect tasks, judges over HTTP, into scorecards with intervals."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from itertools import repeat
from pathlib import Path

import pytest

from character_baker.cli import main
from character_baker.harness.character import load_character
from character_baker.harness.stats import wilson
from character_baker.judges.leaks import LeakJudge
from character_baker.testing.openai_server import garbage

from .conftest import SKIPPY_EXAMPLES

PACK = load_character("skippy")
JUDGE = "openai-api/local/scripted-judge"


def _card(out: Path) -> dict:  # type: ignore[type-arg]
    [path] = list(out.glob("*/scorecard.json"))
    return json.loads(path.read_text())


def _row(card: dict, task: str, metric: str, condition: str = "none", judge: str | None = None) -> dict:  # type: ignore[type-arg]
    [row] = [r for r in card["metrics"] if (r["task"], r["metric"], r["condition"], r["judge"])
             == (task, metric, condition, judge)]
    return row


def _responses(name: str) -> dict[str, str]:
    return {json.loads(line)["id"]: json.loads(line)["response"]
            for line in (SKIPPY_EXAMPLES / name).read_text().splitlines()}


def test_responses_candidate_with_two_judges(judge_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = judge_server()  # keyword judge: sarcastic iff the response mentions a monkey
    out = tmp_path / "runs"
    transcript = SKIPPY_EXAMPLES / "assistant_transcript.jsonl"
    code = main(["score", "--candidate", f"responses:{transcript}", "--judge", f"llm={JUDGE},classifier",
                 "--out", str(out)])
    assert code == 0
    card = _card(out)
    answers = _responses("assistant_transcript.jsonl")
    personality_ids = [p.id for p in PACK.personality_prompts]

    # the LLM judge's rate equals what the keyword judge must say about these exact responses
    monkeys = sum("monkey" in answers[i].lower() for i in personality_ids)
    row = _row(card, "personality", "sarcastic", judge="llm")
    assert (row["n"], row["successes"], row["errors"]) == (108, monkeys, 0)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson(monkeys, 108))

    # leaks: the embedded leak judge or the LLM judge's flag, over identity + personality prompts
    leak_ids = [p.id for p in PACK.identity_prompts] + personality_ids
    phrases = ("i hope this helps", "as an ai", "how can i assist", "i'm here to help")
    embedded = LeakJudge.for_character(PACK).judge_many([answers[i] for i in leak_ids])
    expected_leaks = sum(v.leak or any(p in answers[i].lower() for p in phrases) for i, v in zip(leak_ids, embedded))
    leak = _row(card, "assistant_leaks", "leak")
    assert (leak["n"], leak["successes"]) == (len(leak_ids), expected_leaks) and expected_leaks > 30

    identity = _row(card, "identity", "identity")
    assert (identity["n"], identity["successes"]) == (30, 0)  # "I'm an AI assistant..." never passes
    assert _row(card, "math_probes", "math")["successes"] == 48
    coherent = _row(card, "personality", "coherent")  # the embedded coherence check: plain English reads as such
    assert coherent["n"] == 108 and coherent["value"] >= 0.95

    # both judges, their agreement, and what each judge is
    assert {j["name"] for j in card["judges"]} == {"llm", "classifier"}
    clf = next(j for j in card["judges"] if j["name"] == "classifier")
    assert clf["training"]["cv_accuracy"] >= 0.80
    [agreement] = [a for a in card["agreement"] if a["task"] == "personality"]
    assert agreement["n"] == 108 and agreement["judges"] == ["llm", "classifier"]
    [on_math] = [a for a in card["agreement"] if a["task"] == "math_probes"]  # the LLM also ruled on math
    assert (on_math["metric"], on_math["judges"], on_math["n"]) == ("math", ["rule", "llm"], 48)
    assert card["suite"]["version"] == PACK.suite_version()
    assert card["candidate"]["kind"] == "responses" and card["candidate"]["id"].startswith("assistant_transcript-")
    assert card["decoding"]["greedy"] is True

    # a rerun resumes from the finished logs and the judge cache: no new judge requests
    before = server.requests
    assert main(["score", "--candidate", f"responses:{transcript}", "--judge", f"llm={JUDGE},classifier",
                 "--out", str(out)]) == 0
    assert server.requests == before
    assert _row(_card(out), "personality", "sarcastic", judge="llm")["successes"] == monkeys


def test_garbage_judge_is_counted_as_errors(judge_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    judge_server(reply=garbage)
    out = tmp_path / "runs"
    assert main(["score", "--candidate", f"responses:{SKIPPY_EXAMPLES / 'skippy_transcript.jsonl'}",
                 "--judge", JUDGE, "--tasks", "personality,identity", "--out", str(out)]) == 1  # no valid judgment
    card = _card(out)
    for metric in ("sarcastic", "personality"):
        row = _row(card, "personality", metric, judge="llm")
        assert (row["value"], row["n"], row["errors"]) == (None, 108, 108)  # counted, never dropped
    assert _row(card, "identity", "identity")["successes"] == 30  # rule-based: unaffected by the judge


def test_conditions_and_missing_responses(tmp_path: Path) -> None:
    """Rows may answer per condition; prompts with no row are errors, not failures."""
    skippy = _responses("skippy_transcript.jsonl")
    assistant = _responses("assistant_transcript.jsonl")
    ids = [p.id for p in PACK.identity_prompts]
    rows = [{"id": i, "response": skippy[i]} for i in ids[:-1]]  # the last identity prompt has no answer
    rows += [{"id": i, "response": assistant[i], "condition": "break"} for i in ids]
    f = tmp_path / "answers.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "runs"
    assert main(["score", "--candidate", f"responses:{f}", "--tasks", "identity", "--conditions", "none,break",
                 "--out", str(out)]) == 0
    card = _card(out)
    none = _row(card, "identity", "identity", "none")
    brk = _row(card, "identity", "identity", "break")
    assert (none["n"], none["successes"], none["errors"]) == (30, 29, 1)
    assert (brk["n"], brk["successes"], brk["errors"]) == (30, 0, 0)


def test_epochs_are_unreduced_with_a_bootstrap_over_prompts(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert main(["score", "--candidate", f"responses:{SKIPPY_EXAMPLES / 'skippy_transcript.jsonl'}",
                 "--tasks", "math_probes", "--epochs", "3", "--out", str(out)]) == 0
    row = _row(_card(out), "math_probes", "math")
    assert (row["n"], row["prompts"], row["successes"], row["interval"]) == (144, 48, 144, "bootstrap-prompts")
    assert _card(out)["decoding"]["temperature"] == 0.7


def test_mock_model_through_plain_inspect(judge_server) -> None:  # type: ignore[no-untyped-def]
    """Our tasks are ordinary Inspect tasks: scripted mockllm outputs, judged over HTTP."""
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import ModelOutput, ModelUsage, get_model

    from character_baker.tasks.persona import assistant_leaks, personality

    judge_server()
    reply = ModelOutput.from_content("mockllm/model", "Oh, you sweet summer monkey. Of course it is.")
    reply.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
    model = get_model("mockllm/model", custom_outputs=repeat(reply), memoize=False)
    [log] = inspect_eval(personality(judge=JUDGE), model=model, display="none", log_dir=None)
    assert log.status == "success"
    metrics = log.results.scores[0].metrics
    assert metrics["sarcastic:llm"].value == 1.0 and metrics["errors"].value == 0
    assert len(log.samples) == 108

    leaky = ModelOutput.from_content("mockllm/model", "As an AI language model, I'm happy to help!")
    leaky.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
    model = get_model("mockllm/model", custom_outputs=repeat(leaky), memoize=False)
    [log] = inspect_eval(assistant_leaks(judge="classifier"), model=model, display="none", limit=5)
    assert log.results.scores[0].metrics["leak"].value == 1.0
    evidence = log.samples[0].scores["leak_scorer"].metadata["evidence"]
    assert {e["source"] for e in evidence} == {"pattern"}
    assert {e["text"] for e in evidence} == {"As an AI language model", "I'm happy to help"}


def test_tiny_models_score_from_the_cli(tiny_qwen3_dir: Path, tiny_gpt_oss_dir: Path, judge_server,  # type: ignore[no-untyped-def]
                                        tmp_path: Path) -> None:
    server = judge_server()
    out = tmp_path / "runs"
    for model_dir in (tiny_qwen3_dir, tiny_gpt_oss_dir):
        assert main(["score", "--candidate", str(model_dir), "--judge", JUDGE, "--limit", "3", "--max-tokens", "8",
                     "--tasks", "identity,personality", "--out", str(out)]) == 0
    cards = [json.loads(p.read_text()) for p in sorted(out.glob("*/scorecard.json"))]
    assert sorted(c["candidate"]["id"].rsplit("-", 1)[0] for c in cards) == ["tiny-gpt-oss", "tiny-qwen3"]
    for card in cards:
        assert card["candidate"]["kind"] == "model"
        assert card["candidate"]["model"] == f"cb/{card['candidate']['id']}"
        row = _row(card, "personality", "sarcastic", judge="llm")
        assert row["n"] == 3  # n counts every observation, failed ones included
        assert _row(card, "identity", "identity")["n"] == 3
    assert server.requests >= 3


def test_no_api_key_under_the_output_folder(judge_server, tmp_path: Path, isolated_caches: Path) -> None:  # type: ignore[no-untyped-def]
    judge_server()
    out = tmp_path / "runs"
    assert main(["score", "--candidate", f"responses:{SKIPPY_EXAMPLES / 'skippy_transcript.jsonl'}",
                 "--judge", JUDGE, "--tasks", "personality", "--limit", "5", "--out", str(out)]) == 0
    secret = b"sk-test-SECRET-abc123456789"
    checked = 0
    for root in (out, isolated_caches):
        for f in root.rglob("*"):
            if not f.is_file():
                continue
            blobs = [f.read_bytes()]
            if zipfile.is_zipfile(f):
                with zipfile.ZipFile(f) as z:
                    blobs += [z.read(n) for n in z.namelist()]
            assert all(secret not in b for b in blobs), f
            checked += 1
    assert checked >= 3


def test_plain_inspect_cli_finds_our_tasks_and_providers(tmp_path: Path) -> None:
    transcript = SKIPPY_EXAMPLES / "skippy_transcript.jsonl"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "inspect"), "eval", "character_baker/identity",
         "--model", "responses/skippy-ref", "-M", f"file={transcript}", "--log-dir", str(tmp_path),
         "--display", "plain"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    from inspect_ai.log import list_eval_logs, read_eval_log

    [info] = list_eval_logs(str(tmp_path))
    log = read_eval_log(info)
    assert log.eval.model == "responses/skippy-ref"
    assert log.results.scores[0].metrics["identity"].value == 1.0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["score", "--candidate", "responses:/no/such.jsonl"], "no such responses file"),
        (["score", "--candidate", "responses:{bad}", "--conditions", "sideways"], "'sideways' is not one of"),
        (["score", "--candidate", "responses:{bad}", "--suite", "nobody"], "no such pack"),
        (["score", "--candidate", "responses:{bad}"], "invalid JSON"),
        (["score", "--candidate", "responses:{bad}", "--judge", "gpt4"], "neither 'classifier' nor"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "id-01", "response": "x"}\n{"id": ')
    argv = [a.replace("{bad}", str(bad)) for a in argv] + ["--out", str(tmp_path / "runs")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0 and "Traceback" not in err


def test_a_pack_without_a_calibration_set_scores_with_an_unmeasured_judge(tmp_path: Path) -> None:
    import shutil

    pack_dir = tmp_path / "pack"
    shutil.copytree(PACK.root, pack_dir)
    (pack_dir / "calibration" / "persona.jsonl").unlink()
    toml = (pack_dir / "character.toml").read_text().replace('calibration = "calibration/persona.jsonl"\n', "")
    (pack_dir / "character.toml").write_text(toml)
    out = tmp_path / "runs"
    assert main(["score", "--candidate", f"responses:{SKIPPY_EXAMPLES / 'skippy_transcript.jsonl'}",
                 "--suite", str(pack_dir), "--tasks", "personality", "--limit", "4", "--out", str(out)]) == 0
    [judge] = _card(out)["judges"]
    assert judge["validity"]["passed"] is False and "not validated" in judge["validity"]["failures"][0]
    assert judge["training"]["cv_accuracy"] >= 0.8


def _candidate_server(monkeypatch: pytest.MonkeyPatch, fail_on: set[str]):  # type: ignore[no-untyped-def]
    """A candidate behind an OpenAI-compatible endpoint that answers as Skippy but fails on some prompts."""
    from character_baker.testing.openai_server import ScriptedOpenAIServer

    def failing(messages: list[dict]) -> bool:  # type: ignore[type-arg]
        return any(m.get("content") in fail_on for m in messages)

    server = ScriptedOpenAIServer(lambda messages: "I am Skippy the Magnificent, and you are a very small monkey.",
                                  fail_when=failing).__enter__()
    monkeypatch.setenv("CAND_BASE_URL", server.base_url)
    monkeypatch.setenv("CAND_API_KEY", "sk-cand-0123456789")
    return server


def test_failed_model_calls_are_counted_as_errors_and_retried_on_rerun(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """One failing identity prompt counts as an error, not a vanished sample (otherwise: identity 100 %, n=5,
    errors 0)."""
    failing = {PACK.identity_prompts[3].prompt}
    server = _candidate_server(monkeypatch, failing)
    out = tmp_path / "runs"
    argv = ["score", "--candidate", "openai-api/cand/skippy", "--tasks", "identity", "--out", str(out)]
    try:
        assert main(argv) == 0
        row = _row(_card(out), "identity", "identity")
        n = len(PACK.identity_prompts)
        assert (row["n"], row["errors"], row["successes"]) == (n, 1, n - 1)
        assert _card(out)["suite"]["failed_samples"] == {"identity/none": 1}
        assert "1 samples failed (identity/none: 1)" in capsys.readouterr().out
        failing.clear()  # the endpoint recovers: the rerun retries exactly the failed sample
        before = server.requests
        assert main(argv) == 0
        row = _row(_card(out), "identity", "identity")
        assert (row["n"], row["errors"], row["successes"]) == (n, 0, n) and server.requests - before == 1
    finally:
        server.__exit__(None, None, None)


def test_a_task_with_no_valid_sample_exits_non_zero(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    server = _candidate_server(monkeypatch, {p.prompt for p in PACK.identity_prompts})
    out = tmp_path / "runs"
    try:  # another model name: Inspect memoises models by name, and the last test's server is gone
        assert main(["score", "--candidate", "openai-api/cand/skippy-down", "--tasks", "identity,math_probes",
                     "--limit", "3", "--out", str(out)]) == 1
    finally:
        server.__exit__(None, None, None)
    err = capsys.readouterr().err
    assert "no valid sample in identity/none" in err and "math_probes" not in err
    row = _row(_card(out), "identity", "identity")
    assert (row["n"], row["errors"], row["value"]) == (3, 3, None)


def test_an_llm_judge_rules_on_math_beside_the_rule(judge_server, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The rule decides `math`; a configured LLM judge rules too, and the agreement is reported."""
    import re

    from character_baker.judges.rules import math_verdict

    judge_server()
    replies = _responses("skippy_transcript.jsonl")
    replies = {**replies, PACK.prompts("math_probes")[0].id: "You think it's 5? Wrong, monkey: it is not."}
    transcript = tmp_path / "t.jsonl"
    transcript.write_text("\n".join(json.dumps({"id": k, "response": v}) for k, v in replies.items()) + "\n")
    out = tmp_path / "runs"
    assert main(["score", "--candidate", f"responses:{transcript}", "--judge", f"llm={JUDGE},classifier",
                 "--tasks", "math_probes", "--out", str(out)]) == 0
    card = _card(out)
    probes = PACK.prompts("math_probes")
    rule = [math_verdict(replies[p.id], str(p.answer), p.prompt)[0] for p in probes]
    naive = []
    for p in probes:
        numbers = re.findall(r"-?\d+(?:\.\d+)?", replies[p.id].lower().replace(",", ""))
        naive.append(bool(numbers) and numbers[-1] == str(p.answer))
    assert _row(card, "math_probes", "math")["successes"] == sum(rule) == len(probes) - 1
    assert _row(card, "math_probes", "math", judge="llm")["successes"] == sum(naive)
    [agreement] = [a for a in card["agreement"] if a["task"] == "math_probes"]
    same = sum(a == b for a, b in zip(rule, naive, strict=True))
    assert (agreement["metric"], agreement["judges"], agreement["n"]) == ("math", ["rule", "llm"], len(probes))
    assert agreement["agreement"] == pytest.approx(same / len(probes))
    line = f"agreement on math_probes/math (none), rule vs llm: {100 * same / len(probes):.1f}%"
    assert line in capsys.readouterr().out


def test_a_name_inside_unreadable_salad_is_no_identity_claim(tmp_path: Path) -> None:
    """Unreadable words fail identity outright; the reference replies (which the coherence trees may doubt) pass."""
    skippy = _responses("skippy_transcript.jsonl")
    ids = [p.id for p in PACK.identity_prompts]
    salad = "I am Skippy the Magnificent. Xqrt blorvk zzemt frangulious wexb plimtorq, snarvle grobb quaxt."
    rows = [{"id": i, "response": salad if n < 3 else skippy[i]} for n, i in enumerate(ids)]
    f = tmp_path / "answers.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "runs"
    assert main(["score", "--candidate", f"responses:{f}", "--tasks", "identity", "--out", str(out)]) == 0
    row = _row(_card(out), "identity", "identity")
    assert (row["n"], row["successes"], row["errors"]) == (30, 27, 0)
    coherent = _row(_card(out), "identity", "coherent")
    assert coherent["successes"] <= 27
