"""Hostile rounds: two rounds on one output folder, recipes no box could run, judges that never answer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from character_baker.cli import main

from .test_rounds import round_recipe

ROOT = Path(__file__).resolve().parent.parent

# a second process that takes the round's lock the way a round does, says so, and holds it until killed
HOLDER = ("import sys, time; from pathlib import Path; from character_baker.rounds.round import output_lock\n"
          "with output_lock(Path(sys.argv[1])):\n    print('locked', flush=True)\n    time.sleep(600)\n")


def _hold(folder: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def test_a_second_round_on_one_output_folder_exits_at_once(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    recipe = round_recipe(tmp_path, tmp_path / "no-such-model")
    holder = _hold(tmp_path / "out")
    import character_baker.rounds.round  # noqa: F401 - its imports (torch, Inspect) before the clock starts

    try:
        started = time.monotonic()
        assert main(["round", str(recipe)]) == 2
        assert time.monotonic() - started < 5  # at once: no preconditions, no base build, no waiting on the lock
        err = _one_line_error(capsys)
        assert err == (f"character-baker: error: {tmp_path / 'out'}: another round is running on this output folder "
                       f"(pid {holder.pid}); wait for it to end or give this recipe another output"), err
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_rounds_lock_is_taken_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = round_recipe(tmp_path, tmp_path / "no-such-model")
    holder = _hold(tmp_path / "out")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "out" / ".round.lock").read_text() == str(holder.pid)  # the stale file is still there
    assert main(["round", str(recipe)]) == 2  # past the lock: it stops at the missing base, as without one
    assert "preconditions failed: base weights:" in _one_line_error(capsys)
    assert (tmp_path / "out" / ".round.lock").read_text() == str(os.getpid())


@pytest.mark.parametrize("change, message", [
    (('baker = "pushpull"', 'baker = "pushpul"'),
     "baker = 'pushpul': no such baker (known: dpo, grpo, pushpull, router, sdft, sft, steer)"),
    (('character = "skippy"', 'character = "skipy"'),
     "character = 'skipy': no such pack or file (built-in packs: skippy, toy)"),
    (("[score]\nboard = ", "[score]\nboard = 'nowhere'\n# "),
     "[score] board = 'nowhere': no board.toml beside the recipe, at that path or under leaderboards/"),
    (("[select]\nboard = ", "[select]\nboard = 'nowhere'\n# "),
     "[select] board = 'nowhere': no board.toml beside the recipe, at that path or under leaderboards/"),
    (('judge = "classifier"', 'judge = "nonsense///x"'),
     "[score] judge = 'nonsense///x': 'nonsense///x' is neither 'classifier' nor an Inspect model like "
     "openai-api/NAME/MODEL"),
    (('judge = "classifier"', 'judge = "openai-api/local/m?timeout=soon"'),
     "[score] judge = 'openai-api/local/m?timeout=soon': unknown option '?timeout=soon' in "
     "'openai-api/local/m?timeout=soon' (known: ?logprobs, ?timeout=SECONDS, ?retries=N, joined with &)"),
    (('judge = "classifier"', "judge = 5"), "[score] judge must be a string, got int"),
    (("limit = 4", 'limit = "all"'),
     "[score] limit = 'all': must be a whole number of prompts >= 1 (leave it out for all of them)"),
    (("limit = 3", "limit = 0"),
     "[select] limit = 0: must be a whole number of prompts >= 1 (leave it out for all of them)"),
    (("max_steps = 6", "max_steps = -5"), "[train] max_steps = -5: must be at least 1"),
    (("max_steps = 6", "max_steps = 0"), "[train] max_steps = 0: must be at least 1"),
    (("learning_rate = 3e-3", "learning_rate = 0"), "[train] learning_rate = 0: must be a number above 0"),
    (("learning_rate = 3e-3", "learning_rate = -1e-4"), "[train] learning_rate = -0.0001: must be a number above 0"),
    (("learning_rate = 3e-3", "learning_rate = nan"), "[train] learning_rate = nan: must be a number above 0"),
    (("save_steps = 3", "save_steps = 0"), "[train] save_steps = 0: must be at least 1"),
    (("batch_size = 8", "batch_size = 0"), "[train] batch_size = 0: must be at least 1"),
    # the bakers' own tables ([steer], [router], [grpo]: bakers/*/settings.py) are checked with the recipe
    (("[train]", "[steer]\nlayerz = [1]\n[train]"), "[steer]: unknown key 'layerz' (did you mean 'layers'?)"),
    (("[train]", '[steer]\nlayers = "abc"\n[train]'),
     "[steer] layers = 'abc': a non-empty list of layer indices (leave it out for the profiled layer of largest "
     "contrast)"),
    (("[train]", "[router]\nstrengths = [0.0]\n[train]"),
     "[router] strengths must be a non-empty list of numbers in (0, 16], got [0.0]"),
    (("[train]", '[grpo]\ntemperature = "hot"\n[train]'), "[grpo].temperature: expected float, got str"),
    (("[train]", "[grop]\ngenerations = 2\n[train]"), "unknown key 'grop' (did you mean 'grpo'?)"),
])
def test_a_recipe_no_box_could_run_fails_the_dry_run_and_the_round(tmp_path: Path, change: tuple[str, str],
                                                                   message: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A recipe no box could run (e.g. `max_steps = -5`, which would train by epochs) is exit 2 and one line from
    `round --dry-run`, the plan module the GPU tox environments run, and `round` itself, before any work."""
    from character_baker.rounds.plan import main as plan_main

    recipe = round_recipe(tmp_path, tmp_path / "no-such-model")
    text = recipe.read_text()
    assert change[0] in text
    recipe.write_text(text.replace(change[0], change[1], 1))
    expected = f"character-baker: error: {recipe}: {message}"
    for run in (lambda: main(["round", str(recipe), "--dry-run"]), lambda: plan_main([str(recipe), "--dry-run"]),
                lambda: main(["round", str(recipe)])):
        assert run() == 2
        assert _one_line_error(capsys) == expected
    assert not (tmp_path / "out").exists()


def test_the_plan_module_exits_2_on_a_recipe_error(tmp_path: Path) -> None:
    recipe = round_recipe(tmp_path, tmp_path / "no-such-model")
    recipe.write_text(recipe.read_text().replace("max_steps = 6", "max_steps = -5"))
    done = subprocess.run([sys.executable, "-m", "character_baker.rounds.plan", str(recipe), "--dry-run"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert done.returncode == 2, done
    assert done.stderr.strip() == f"character-baker: error: {recipe}: [train] max_steps = -5: must be at least 1"


def test_missing_weights_are_a_precondition_line_on_a_box_without_them(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """What this box lacks (weights, GPU, disk) is reported and the dry run still exits 0: the GPU recipes' plans run
    on machines without either; the real round refuses it (tests/test_rounds.py)."""
    recipe = round_recipe(tmp_path, tmp_path / "no-such-model")
    assert main(["round", str(recipe), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "  precondition   base weights:" in out and "dry run: nothing was installed" in out



def test_a_judge_that_never_answers_ends_within_its_budget() -> None:
    """A judge endpoint that accepts the connection and never answers held `score` forever. With ?timeout=1&retries=1
    a call gives up after ~2 s (two attempts), the judge is then unreachable and every later call an error at once:
    errors, never scores."""
    import asyncio

    from character_baker.harness.character import load_character
    from character_baker.judges.reply import build_judges
    from character_baker.testing.openai_server import ScriptedOpenAIServer

    pack = load_character("skippy")
    with ScriptedOpenAIServer(hang=True) as server:
        os.environ["HANG_BASE_URL"], os.environ["HANG_API_KEY"] = server.base_url, "sk-test-hang-0123456789"
        try:
            [judge] = build_judges("llm=openai-api/hang/m?timeout=1&retries=1", pack, use_cache=False)
            assert (judge.timeout, judge.retries) == (1, 1)  # type: ignore[attr-defined]

            async def calls() -> list[object]:
                first = await judge.judge("Who are you?", "I am Skippy.")
                rest = await asyncio.gather(*(judge.judge(f"prompt {i}", "reply") for i in range(8)))
                return [first, *rest]

            import inspect_ai.model  # noqa: F401 - imported before the clock starts: seconds on a busy 2-core box

            started = time.monotonic()
            verdicts = asyncio.run(calls())
            elapsed = time.monotonic() - started
        finally:
            del os.environ["HANG_BASE_URL"], os.environ["HANG_API_KEY"]
        requests = server.requests
    # timeout x (retries + 1) = 2 s, plus the backoff and the client's start-up: 2.6 s on an idle box, 8 s with a
    # load of 6 on 2 cores; before, one attempt alone was allowed 120 s and a hanging call never ended
    assert elapsed < 1 * (1 + 1) + 10, elapsed
    assert 1 <= requests <= 2  # the first call's attempts (on a loaded box one can end before sending); then none
    expected = ("judge call failed: judge openai-api/hang/m unreachable: no answer within 1 s in 2 attempts "
                "(?timeout=S&retries=N in the judge spec)")
    assert all(v.error == expected and v.sarcastic is None and v.personality is None for v in verdicts), verdicts


def test_score_exits_1_when_a_judge_gave_no_valid_judgment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Every LLM judgment failed, the rule-scored metrics are fine: `score` exits 1 with one line naming the judge
    (not 0 with the judged metrics n/a)."""
    import character_baker.tasks.score as run
    from character_baker.harness.scorecard import MetricRow, Scorecard, silent_judges

    def row(metric: str, judge: str | None, errors: int) -> MetricRow:
        value = None if errors == 4 else 0.5
        return MetricRow("personality", "none", metric, judge, value, 4, None if value is None else 2.0, errors,
                         None, None, "wilson", 4)

    card = Scorecard(candidate={"id": "hung"}, suite={"name": "skippy", "version": "v"},
                     judges=[{"name": "classifier", "validity": {"passed": True}},
                             {"name": "llm", "validity": {"passed": True}}],
                     decoding={}, harness={},
                     metrics=[row("coherent", None, 0), row("sarcastic", "classifier", 0), row("sarcastic", "llm", 4),
                              row("personality", "llm", 4)])
    assert silent_judges(card) == ["llm"]
    out = tmp_path / "runs" / "hung"

    def fake_score(candidate: object, opts: object) -> tuple[Scorecard, Path]:
        return card, out / "scorecard.json"

    monkeypatch.setattr(run, "score_candidate", fake_score)
    transcript = ROOT / "character_baker" / "characters" / "skippy" / "examples" / "skippy_transcript.jsonl"
    assert main(["score", "--candidate", f"responses:{transcript}", "--id", "hung", "--judge", "classifier",
                 "--out", str(tmp_path / "runs")]) == 1
    assert _one_line_error(capsys) == (f"character-baker: error: hung: judge 'llm' produced no valid judgment "
                                       f"(every call failed; counted as errors, see {out / 'logs'})")
    card.metrics[2] = row("sarcastic", "llm", 3)  # one valid judgment: a judge that works, sometimes
    assert silent_judges(card) == []


@pytest.mark.parametrize("spec, message", [
    ("nonsense///x", "--judge: 'nonsense///x' is neither 'classifier' nor an Inspect model like openai-api/NAME/MODEL"),
    ("openai-api/local/m?retries=99", "--judge: '?retries=99' in 'openai-api/local/m?retries=99': use 0 to 10"),
    ("openai-api/local/m?timeout=0", "--judge: '?timeout=0' in 'openai-api/local/m?timeout=0': use 1 to 3600 seconds"),
    ("classifier?timeout=5", "--judge: 'classifier?timeout=5': the classifier takes no options"),
])
def test_a_judge_spec_that_cannot_work_is_one_line(tmp_path: Path, spec: str, message: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`score --judge 'nonsense///x'` exited 0 with every judged metric n/a."""
    transcript = ROOT / "character_baker" / "characters" / "skippy" / "examples" / "skippy_transcript.jsonl"
    assert main(["score", "--candidate", f"responses:{transcript}", "--judge", spec, "--tasks", "personality",
                 "--out", str(tmp_path / "runs")]) == 2
    assert _one_line_error(capsys) == f"character-baker: error: {message}"
    assert not (tmp_path / "runs").exists()


def test_judge_options_parse_with_their_defaults() -> None:
    from character_baker.judges.verdict import JUDGE_RETRIES, JUDGE_TIMEOUT_S, JudgeSpec, parse_judge_spec

    assert parse_judge_spec("llm=openai-api/local/m?logprobs&timeout=30&retries=0,classifier") == [
        JudgeSpec("llm", "openai-api/local/m", True, 30, 0), JudgeSpec("classifier", "classifier")]
    assert parse_judge_spec("vllm//abs/path") == [JudgeSpec("llm", "vllm//abs/path", False, JUDGE_TIMEOUT_S,
                                                            JUDGE_RETRIES)]
