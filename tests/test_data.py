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


def _norm(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def _split_texts(pack, key: str) -> tuple[set[str], set[str]]:  # type: ignore[no-untyped-def]
    """(prompts, responses) of one [files] entry, normalised (case and punctuation do not make text new)."""
    rows = read_jsonl(pack.path(key))
    turns = {_norm(x) for r in rows for x in r.get("turns", [])}  # a conversation's user turns are prompts too
    return ({_norm(r["prompt"]) for r in rows if "prompt" in r} | turns,
            {_norm(r["response"]) for r in rows if "response" in r})


SPLITS = {
    "eval": ("identity", "personality", "math_probes", "conversations", "tool_requests"),
    "dev": ("dev_identity", "dev_personality", "dev_math_probes"),
    "train": ("character", "antipole"),
    "judge": ("judge", "judge_leaks"),
    "calibration": ("calibration", "calibration_leaks"),
}


def test_every_split_is_disjoint_from_every_other() -> None:
    """eval (reported) / dev (selection) / train (bakers) / judge (embedded judges) / calibration (validity
    cards): no prompt and no reply is shared between two of them, so no number is chosen or trained on what it
    reports."""
    pack = load_character("skippy")
    prompts, replies = {}, {}
    for split, keys in SPLITS.items():
        prompts[split] = set().union(*(_split_texts(pack, k)[0] for k in keys))
        replies[split] = set().union(*(_split_texts(pack, k)[1] for k in keys))
    names = list(SPLITS)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = prompts[a] & prompts[b]
            assert not shared, f"{a} and {b} share prompts: {sorted(shared)[:3]}"
            assert not replies[a] & replies[b], f"{a} and {b} share replies"


def test_eval_sets_are_sized_for_their_gates() -> None:
    """A 100 % gate needs enough prompts that 100 % means something: 48/48 has a Wilson lower bound of 92.6 %."""
    from character_baker.harness.stats import wilson

    pack = load_character("skippy")
    assert len(pack.identity_prompts) >= 24 and wilson(len(pack.identity_prompts), len(pack.identity_prompts))[0] > 0.86
    assert len(pack.math_probes) >= 40 and wilson(len(pack.math_probes), len(pack.math_probes))[0] >= 0.91
    assert {p.id for p in pack.prompts("identity", "dev")}.isdisjoint(p.id for p in pack.identity_prompts)


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


def test_calibration_set_is_balanced_and_holds_the_hard_cases() -> None:
    from character_baker.judges.calibration import load_rows

    pack = load_character("skippy")
    rows = load_rows(pack.path("calibration"), labelled=True)
    assert len(rows) >= 200 and sum(r.label for r in rows) == len(rows) / 2
    kinds = Counter(r.kind for r in rows)
    assert kinds["mimicry"] >= 20 and kinds["keywordless"] >= 20  # markers without attitude, attitude without markers


def test_household_config_is_data_in_the_pack() -> None:
    house = load_character("skippy").household()
    assert "Skippy" in house["system_prompt"] and "household" in house["system_prompt"]
    names = [t["name"] for t in house["tools"]]
    assert len(names) == len(set(names)) >= 4 and "set_thermostat" in names
    assert all(t["description"] and isinstance(t["parameters"], dict) for t in house["tools"])
