"""Scoring for the AIME-style capability tasks: the final answer only, compared with math-verify.

lm-eval reaches these functions through `utils.py` beside `aime.yaml`; the harness imports this module.

What is scored, per response:
- GPT-OSS harmony output (`<|channel|>analysis<|message|>... <|channel|>final<|message|>...`): the final
  channel only (`split_harmony`). A reply that stops before its final channel is cut off: wrong.
  The same format with its special tokens decoded away (`analysis...assistantfinal...`, what a stock lm-eval
  `hf` backend returns for GPT-OSS) is recognised too; a reply in that form with no `assistantfinal` is cut off.
- `<think>...</think>` replies (Qwen3 style): the text after the last `</think>`; an unclosed `<think>` is cut off.
- The answer read is the last `\\boxed{...}`; without one, math-verify's own extraction (`ANSWER: 70`,
  `final answer is 70`, else the last number). `\\boxed{070}` = 70; 711 != 11.

`rules.math_verdict` is deliberately not used: it also accepts the first number stated and any "is N" in the
text, right for a character who answers first, wrong for a reasoning trace full of intermediate results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from character_baker.harness.loading import split_harmony

PROMPT = (
    "{problem}\n\n"
    "Solve the problem. The answer is an integer from 0 to 999. "
    "Put your final answer within \\boxed{{}}."
)

_STRIPPED_FINAL = re.compile(r"^\s*analysis.*?assistantfinal(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Verdict:
    """One response judged: correct, the answer read from it, and whether it stopped before its answer."""

    correct: bool
    answer: str | None  # what was extracted (None: nothing)
    boxed: bool  # the answer came from a \boxed{}
    cut_off: bool  # stopped before its final channel / inside <think>: never correct
    reason: str


def doc_to_text(doc: dict[str, Any]) -> str:
    return PROMPT.format(problem=doc["problem"])


def process_docs(dataset: Any) -> Any:
    """Normalise any {id?, problem, answer} set (local JSONL or the hub's AIME sets) to string ids and answers."""

    def norm(doc: dict[str, Any], index: int) -> dict[str, Any]:
        problem = doc.get("problem", doc.get("Problem"))
        answer = doc.get("answer", doc.get("Answer"))
        ident = doc.get("id", doc.get("ID"))
        return {"id": str(index if ident is None else ident), "problem": str(problem), "answer": str(answer).strip()}

    from datasets import Features, Value

    features = Features({"id": Value("string"), "problem": Value("string"), "answer": Value("string")})
    return dataset.map(norm, with_indices=True, remove_columns=list(dataset.column_names), features=features)


def keep_all(resps: Any, docs: Any) -> Any:
    """lm-eval filter: keep every one of the `repeats` responses (the default filter keeps only the first)."""
    return resps


def answer_section(response: str | None) -> tuple[str | None, str]:
    """The part of a response that holds its answer, and where it came from; None when it was cut off first."""
    if response is None:
        return None, "no content (cut off, or the endpoint returned reasoning only)"
    harmony = split_harmony(response)
    if harmony is not None:
        if harmony.truncated:
            return None, "cut off before the final channel"
        return harmony.final or "", "final channel"
    stripped = _STRIPPED_FINAL.match(response)
    if stripped:
        return stripped.group(1), "final channel (special tokens stripped)"
    if response.lstrip().startswith("analysis"):
        return None, "cut off before the final channel (special tokens stripped)"
    if "</think>" in response:
        return response.rsplit("</think>", 1)[1], "after </think>"
    if "<think>" in response:
        return None, "cut off inside <think>"
    return response, "whole response"


def last_boxed(text: str) -> str | None:
    """The contents of the last \\boxed{...} (or \\fbox{...}), braces balanced; None when there is none."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = text[start:]
    braced = re.match(r"\\(?:boxed|fbox)\s*\{", rest)
    if not braced:
        bare = re.match(r"\\boxed\s+([^\s$]+)", rest)  # "\boxed 70"
        return bare.group(1) if bare else None
    depth = 0
    for j in range(braced.end() - 1, len(rest)):
        if rest[j] == "{":
            depth += 1
        elif rest[j] == "}":
            depth -= 1
            if depth == 0:
                return rest[braced.end():j]
    return None  # unclosed: the reply was cut off mid-answer


def verdict(response: str | None, answer: str | int) -> Verdict:
    """Is the response's final answer equal to the reference (math-verify, so 070 = 70)?"""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    section, where = answer_section(response)
    if section is None:
        return Verdict(False, None, False, True, where)
    extraction = [LatexExtractionConfig(), ExprExtractionConfig()]
    gold = parse(str(answer), extraction_config=extraction)
    boxed = last_boxed(section)
    predicted = parse(f"\\boxed{{{boxed}}}" if boxed is not None else section, extraction_config=extraction)
    if not predicted:
        return Verdict(False, None, boxed is not None, False, f"no answer found ({where})")
    shown = str(predicted[-1])
    ok = bool(verify(gold, predicted))
    return Verdict(ok, shown, boxed is not None, False,
                   f"{'correct' if ok else 'wrong'}: read {shown}, expected {answer} ({where})")


def process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, float]:
    """Per problem: accuracy over its k samples (avg@k), pass@k (any correct), the share cut off."""
    responses = results[0] if results and isinstance(results[0], list) else results
    verdicts = [verdict(r, doc["answer"]) for r in responses]
    k = max(len(verdicts), 1)
    return {
        "acc": sum(v.correct for v in verdicts) / k,
        "pass_at_k": float(any(v.correct for v in verdicts)),
        "cut_off": sum(v.cut_off for v in verdicts) / k,
    }
