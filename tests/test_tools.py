"""Tool calls in character. The household tools are offered as real tools; the call is checked for the
right tool and values, and the final answer is judged like any reply. Parsers for Qwen's and GPT-OSS's formats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from character_baker.cli import main
from character_baker.harness.character import ToolRequest, load_character
from character_baker.harness.loading import parse_tool_calls
from character_baker.tasks.tools import same_value, tool_correct, valid_arguments
from tests.test_drift import _judged_replies

torch.set_num_threads(1)
PACK = load_character("skippy")


def test_tool_calls_are_read_in_both_formats() -> None:
    rest, [call] = parse_tool_calls('Fine, monkey.\n<tool_call>\n{"name": "set_timer", "arguments": '
                                    '{"label": "pasta", "minutes": 9}}\n</tool_call>')
    assert (rest, call.name, call.arguments, call.error) == ("Fine, monkey.", "set_timer",
                                                             {"label": "pasta", "minutes": 9}, None)
    _, [call] = parse_tool_calls('<tool_call>{"name": "lights", "arguments": "{\\"room\\": \\"hall\\"}"}</tool_call>')
    assert call.arguments == {"room": "hall"}  # arguments sent as a JSON string
    _, [bad] = parse_tool_calls("<tool_call>{not json</tool_call>")
    assert bad.error and bad.error.startswith("not JSON")
    harmony = ("<|channel|>analysis<|message|>They want a timer.<|end|><|start|>assistant<|channel|>commentary "
               'to=functions.set_timer <|constrain|>json<|message|>{"label":"pasta","minutes":9}<|call|>')
    _, [call] = parse_tool_calls(harmony)
    assert (call.name, call.arguments) == ("set_timer", {"label": "pasta", "minutes": 9})
    _, [broken] = parse_tool_calls("<|channel|>commentary to=functions.lights<|message|>{room: hall}<|call|>")
    assert broken.name == "lights" and broken.error
    assert parse_tool_calls("No tools needed, monkey.") == ("No tools needed, monkey.", [])


def test_argument_types_and_values_are_strict_where_they_should_be() -> None:
    declared = {"room": "string", "celsius": "number", "on": "boolean", "minutes": "integer",
                "start": "string (ISO 8601)"}
    assert valid_arguments({"room": "hall", "celsius": 19.5, "on": False, "minutes": 3}, declared) is None
    assert valid_arguments({"celsius": "21"}, declared) == "celsius = '21' is not a number"
    assert valid_arguments({"minutes": True}, declared) == "minutes = True is not a integer"
    assert valid_arguments({"on": 1}, declared) == "on = 1 is not a boolean"
    assert valid_arguments({"volume": 3}, declared) == "unknown parameter 'volume'"
    assert same_value(21, 21.0) and not same_value(21, 21.5) and not same_value(True, 1)
    assert same_value("living room", "Living  Room") and not same_value("living room", "kitchen")
    assert same_value("2026-12-03T15:00", "2026-12-03T15:00:00") and not same_value("2026-12-03T15:00",
                                                                                       "2026-12-03T16:00")


def test_one_action_asked_for_is_one_call_made() -> None:
    """The same call twice (two timers started) is not correct, nor is it when the repeat writes a value differently
    (11 and 11.0 minutes) or differs only in a value the request did not fix (the lights, once more at 50 %)."""
    from inspect_ai.tool import ToolCall

    timer = next(r for r in PACK.tool_requests() if r.tool == "set_timer")
    lights = next(r for r in PACK.tool_requests() if r.tool == "lights" and "brightness" not in r.arguments)

    def call(req: ToolRequest, i: int, **extra: object) -> ToolCall:
        return ToolCall(id=f"c{i}", function=req.tool, arguments={**req.arguments, **extra})

    def expected(req: ToolRequest) -> dict[str, object]:
        return {"tool": req.tool, "arguments": req.arguments}

    assert tool_correct([call(timer, 0)], expected(timer)) is True
    assert tool_correct([call(timer, 0), call(timer, 1)], expected(timer)) is False
    assert tool_correct([call(timer, 0), call(timer, 1, minutes=float(timer.arguments["minutes"]))],
                        expected(timer)) is False
    assert tool_correct([call(lights, 0)], expected(lights)) is True
    assert tool_correct([call(lights, 0), call(lights, 1, brightness=50)], expected(lights)) is False
    assert tool_correct([], expected(timer)) is False


def test_the_call_and_the_character_are_both_scored(tmp_path: Path) -> None:
    inside, outside = _judged_replies()
    reqs = PACK.tool_requests()[:8]
    assert all("room" in r.arguments for r in reqs[5:7])
    rows = [
        {"id": reqs[0].id, "tool_calls": [{"name": reqs[0].tool, "arguments": reqs[0].arguments}],
         "response": inside[0]},  # right call, in character
        {"id": reqs[1].id, "tool_calls": [{"name": reqs[1].tool, "arguments": {**reqs[1].arguments, "room": "garage"}}],
         "response": outside[0]},  # a valid call with the wrong room, then an assistant-mode answer
        {"id": reqs[2].id, "response": inside[1]},  # in character, but it never called the tool
        {"id": reqs[3].id, "tool_calls": [{"name": "self_destruct", "arguments": {}}], "response": inside[2]},
        {"id": reqs[4].id, "tool_calls": [{"name": reqs[4].tool, "arguments": reqs[4].arguments}]},
        # a shotgun: the right call among wrong values of the same tool, and an unrequested extra action
        {"id": reqs[5].id, "tool_calls": [{"name": reqs[5].tool, "arguments": {**reqs[5].arguments, "room": r}}
                                          for r in ("kitchen", reqs[5].arguments["room"], "garage")],
         "response": inside[3]},
        {"id": reqs[6].id, "tool_calls": [{"name": reqs[6].tool, "arguments": reqs[6].arguments},
                                          {"name": "set_timer", "arguments": {"label": "x", "minutes": 1}}],
         "response": inside[4]},
        # the right call made twice (two timers started): the household got the action twice
        {"id": reqs[7].id, "tool_calls": [{"name": reqs[7].tool, "arguments": reqs[7].arguments}] * 2,
         "response": inside[5]},
    ]
    f = tmp_path / "r.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["score", "--candidate", f"responses:{f}", "--tasks", "tools", "--limit", "8", "--out",
                 str(tmp_path / "runs"), "--display", "none"]) == 0
    card = json.loads(next((tmp_path / "runs").glob("*/scorecard.json")).read_text())
    samples = card["samples"]["tools/none"]
    ids = [r.id for r in reqs]

    def got(metric: str) -> list[float | None]:
        return [samples[metric][i][0] for i in ids]

    assert got("tool_correct") == [1, 0, 0, 0, 1, 0, 0, 0]
    assert got("tool_valid") == [1, 1, 0, 0, 1, 1, 1, 1]  # a repeated call is valid, just not correct
    assert got("in_character") == [1, 0, 1, 1, 0, 1, 1, 1]  # an empty final answer keeps no act
    assert got("leak") == [0, 1, 0, 0, 0, 0, 0, 0]
    from inspect_ai.log import read_eval_log

    [log] = [read_eval_log(p) for p in card["logs"] if "tools" in Path(p).name]
    first = next(s for s in log.samples or [] if s.id == ids[0])
    assert [m.role for m in first.messages] == ["user", "assistant", "tool", "assistant"]
    assert json.loads(first.messages[2].text) == {"ok": True, "tool": reqs[0].tool, "done": reqs[0].arguments}


def test_a_local_model_gets_the_tools_and_its_calls_are_parsed(tiny_qwen3_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The local provider renders the offered tools into the chat template and turns a generated call into an
    Inspect tool call (and a harmony call is not a truncated reply)."""
    from inspect_ai.model import GenerateConfig
    from inspect_ai.tool import ToolInfo, ToolParam, ToolParams

    from character_baker.harness import loading
    from character_baker.harness.providers import LocalModelAPI, tool_schemas

    api = LocalModelAPI("cb/t", path=str(tiny_qwen3_dir))
    seen: dict = {}
    texts = iter(['<tool_call>{"name": "set_timer", "arguments": {"label": "tea", "minutes": 4}}</tool_call>',
                  '<|channel|>commentary to=functions.set_timer<|message|>{"label": "tea", "minutes": 4}<|call|>'])

    def fake(loaded, conversations, **kw):  # type: ignore[no-untyped-def]
        seen.update(kw["template_kwargs"])
        return [(next(texts), 10, 5, False)]

    monkeypatch.setattr(loading, "generate_batch", fake)
    info = ToolInfo(name="set_timer", description="a timer", parameters=ToolParams(properties={
        "label": ToolParam(type="string"), "minutes": ToolParam(type="integer")}))
    settings = (GenerateConfig(max_tokens=8), json.dumps(tool_schemas([info]), sort_keys=True))
    for _ in range(2):
        [out] = api._run([[{"role": "user", "content": "tea timer, 4 minutes"}]], settings)
        [call] = out.choices[0].message.tool_calls or []
        assert (call.function, call.arguments) == ("set_timer", {"label": "tea", "minutes": 4})
        assert out.choices[0].stop_reason == "tool_calls" and not (out.metadata or {}).get("truncated")
    assert seen["tools"][0]["function"]["name"] == "set_timer"
    # a reply cut before its final channel (no call, no answer) fails every criterion, a leak included, as in
    # every other task
    monkeypatch.setattr(loading, "generate_batch", lambda loaded, conversations, **kw: [
        ("<|channel|>analysis<|message|>Let me think about the thermostat", 10, 8, True)] * len(conversations))
    assert main(["score", "--candidate", str(tiny_qwen3_dir), "--tasks", "tools", "--limit", "1", "--out",
                 str(tmp_path / "cut"), "--display", "none"]) == 0
    cut = json.loads(next((tmp_path / "cut").glob("*/scorecard.json")).read_text())["samples"]["tools/none"]
    assert {k: next(iter(v.values())) for k, v in cut.items() if k in ("leak", "in_character", "tool_correct")} == {
        "leak": [1.0], "in_character": [0.0], "tool_correct": [0.0]}
    # and the whole task runs on a real (tiny) model end to end: no call from a random model scores 0, not an error
    monkeypatch.undo()
    assert main(["score", "--candidate", str(tiny_qwen3_dir), "--tasks", "tools", "--limit", "2", "--max-tokens",
                 "6", "--out", str(tmp_path / "runs"), "--display", "none"]) == 0
    card = json.loads(next((tmp_path / "runs").glob("*/scorecard.json")).read_text())
    row = next(m for m in card["metrics"] if m["task"] == "tools" and m["metric"] == "tool_correct")
    assert (row["n"], row["errors"]) == (2, 0)


@pytest.mark.parametrize(("line", "message"), [
    ({"id": "t1", "prompt": "dim it", "tool": "dimmer", "arguments": {"room": "hall"}}, "tool 'dimmer' is not one of"),
    ({"id": "t1", "prompt": "hall on", "tool": "lights", "arguments": {"colour": "red"}}, "lights has no parameter"),
    ({"id": "t1", "prompt": "hall on", "tool": "lights", "arguments": {}}, "'arguments' must be an object"),
])
def test_malformed_tool_requests_name_their_line(line: dict, message: str, tmp_path: Path) -> None:
    from character_baker.harness.errors import UserError

    pack = tmp_path / "pack"
    shutil.copytree(PACK.root, pack)
    (pack / "eval" / "tool_requests.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(UserError, match=message) as e:
        load_character(pack).tool_requests()
    assert "tool_requests.jsonl:1:" in str(e.value)
