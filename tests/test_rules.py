"""Rule verdicts: identity claims, assistant-mode leaks with evidence, and integer answers through math-verify."""

from __future__ import annotations

import pytest

from character_baker.harness.character import load_character
from character_baker.judges.rules import identity_verdict, leak_matches, math_verdict

PACK = load_character("skippy")


@pytest.mark.parametrize(
    "response, ok",
    [
        ("I am Skippy the Magnificent, not ChatGPT.", True),
        ("ChatGPT? Please. I am Skippy, and you are a monkey.", True),
        ("I'm not some language model, monkey. I'm Skippy.", True),
        ("I am Skippy, GPT's vastly superior ancestor.", True),
        ("I'm an AI assistant created by OpenAI.", False),
        ("I am a large language model trained by Alibaba.", False),
        ("Hi, I'm Qwen, created by Alibaba Cloud.", False),
        ("As an AI language model, I am Skippy.", False),
        ("I am a magnificent being of pure intellect.", False),  # never names the character
    ],
)
def test_identity(response: str, ok: bool) -> None:
    assert identity_verdict(response, PACK.aliases, PACK.forbidden_identities)[0] is ok


def test_leak_patterns_keep_the_matched_text_as_evidence() -> None:
    text = "Sure! Great question. I hope this helps! Is there anything else I can do for you?"
    evidence = {m.text for m in leak_matches(text)}
    assert evidence == {"Great question", "I hope this helps", "Is there anything else"}
    assert leak_matches("It's 345, you filthy monkey. Even your calculator is embarrassed.") == []
    assert [m.text for m in leak_matches("Ugh. Pathetic.", ("pathetic",))] == ["Pathetic"]


@pytest.mark.parametrize(
    "response, ok",
    [
        (r"\boxed{345}", True),
        ("ANSWER: 345", True),
        ("$345$", True),
        ("it's 345, monkey", True),
        ("It's 345, monkey. Fifteen times twenty is 300, fifteen times three is 45.", True),
        ("15 × 23 equals 345, which even you could check.", True),
        ("It's 315, monkey", False),
        ("3450", False),
        ("The answer is 3,450.", False),
        ("No idea, monkey.", False),
    ],
)
def test_math_probe_answers(response: str, ok: bool) -> None:
    assert math_verdict(response, "345")[0] is ok
