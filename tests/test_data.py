"""Character packs and the JSONL loaders: the shapes users have, and one-line errors for the ones they break."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from character_baker.harness.character import load_character
from character_baker.harness.data import load_pairs, read_jsonl
from character_baker.harness.errors import UserError


def test_skippy_pack_meets_the_suite_minimums() -> None:
    pack = load_character("skippy")
    assert pack.name == "Skippy"
    assert len(pack.identity_prompts) >= 3
    assert len(pack.personality_prompts) >= 96
    per_category = Counter(p.category for p in pack.personality_prompts)
    assert set(per_category) == set(pack.categories)
    assert min(per_category.values()) >= 16
    assert len(pack.math_probes) >= 8
    assert all(p.answer and p.answer.lstrip("-").isdigit() for p in pack.math_probes)
    assert len(pack.character_pairs) >= 150
    assert [p.prompt for p in pack.antipole_pairs] == [p.prompt for p in pack.character_pairs]
    assert Counter(p.category for p in pack.character_pairs) == Counter(p.category for p in pack.antipole_pairs)


def test_eval_prompts_are_not_training_prompts() -> None:
    pack = load_character("skippy")
    train = {p.prompt.strip().lower() for p in pack.character_pairs}
    evals = [p.prompt.strip().lower() for p in pack.identity_prompts + pack.personality_prompts + pack.math_probes]
    assert not train & set(evals)


def test_pack_loads_by_path_and_suite_version_tracks_prompts(tmp_path: Path) -> None:
    import shutil

    src = load_character("skippy").root
    shutil.copytree(src, tmp_path / "copy")
    a = load_character(tmp_path / "copy")
    b = load_character(tmp_path / "copy" / "character.toml")
    before = a.suite_version()
    assert before == b.suite_version() == load_character("skippy").suite_version()
    with open(tmp_path / "copy" / "eval" / "identity.jsonl", "a") as f:
        f.write(json.dumps({"id": "id-99", "prompt": "Name yourself."}) + "\n")
    assert load_character(tmp_path / "copy").suite_version() != before


def test_loaders_accept_three_shapes(tmp_path: Path) -> None:
    f = tmp_path / "mixed.jsonl"
    rows = [
        {"prompt": "p1", "response": "r1", "category": "math"},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "p2"},
                      {"role": "assistant", "content": "r2"}]},
        {"instruction": "p3", "input": "extra", "output": "r3"},
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    pairs = load_pairs(f)
    assert [(p.prompt, p.response) for p in pairs] == [("p1", "r1"), ("p2", "r2"), ("p3\n\nextra", "r3")]
    assert pairs[0].category == "math" and pairs[1].system == "s"


@pytest.mark.parametrize(
    "content, expected",
    [
        (b'{"prompt": "a", "response": "b"}\n{"prompt": "c", "resp', r"bad\.jsonl:2: invalid JSON"),
        (b'{"prompt": "a"}\n', r"bad\.jsonl:1: missing field 'response'"),
        (b'{"prompt": "a", "response": "   "}\n', r"bad\.jsonl:1: field 'response' is empty"),
        (b'{"prompt": "a", "response": "b"}\n{"prompt": "\xff\xfe", "response": "x"}\n', r"bad\.jsonl:2: not UTF-8"),
        (b"", r"bad\.jsonl: empty file"),
        (b"[1, 2]\n", r"bad\.jsonl:1: expected a JSON object"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}\n', r"bad\.jsonl:1: messages has no 'assistant'"),
        (b'{"text": "x"}\n', r"bad\.jsonl:1: unrecognised row"),
    ],
)
def test_malformed_files_get_one_line_errors(tmp_path: Path, content: bytes, expected: str) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_bytes(content)
    with pytest.raises(UserError, match=expected) as err:
        load_pairs(f)
    assert "\n" not in str(err.value)


def test_bad_pack_spec_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "character.toml").write_text('name = "X"\naliases = []\n[files]\nidentity="a"\n'
                                             'personality="b"\nmath_probes="c"\n')
    with pytest.raises(UserError, match=r"character\.toml: 'aliases' must be a non-empty list"):
        load_character(tmp_path)
    with pytest.raises(UserError, match="no such pack"):
        load_character("no-such-character")


def test_read_jsonl_skips_blank_lines(tmp_path: Path) -> None:
    f = tmp_path / "x.jsonl"
    f.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert read_jsonl(f) == [{"a": 1}, {"a": 2}]


def test_calibration_set_is_balanced_and_not_copied_from_training() -> None:
    from character_baker.judges.calibration import load_rows

    pack = load_character("skippy")
    rows = load_rows(pack.path("calibration"), labelled=True)
    assert len(rows) >= 40 and sum(r.label for r in rows) == len(rows) / 2
    train_text = {p.prompt.strip().lower() for p in pack.character_pairs} | {
        p.response.strip().lower() for p in pack.character_pairs + pack.antipole_pairs}
    assert not {r.prompt.strip().lower() for r in rows} & train_text
    assert not {r.response.strip().lower() for r in rows} & train_text


def test_household_config_is_data_in_the_pack() -> None:
    house = load_character("skippy").household()
    assert "Skippy" in house["system_prompt"] and "household" in house["system_prompt"]
    names = [t["name"] for t in house["tools"]]
    assert len(names) == len(set(names)) >= 4 and "set_thermostat" in names
    assert all(t["description"] and isinstance(t["parameters"], dict) for t in house["tools"])
