"""The replies behind a board's numbers: each sample of a result's Inspect logs, read with Inspect's own log reader.

A scorecard keeps per-prompt values (enough for `regress`) but not the text; the text, every judge's verdict and
reason, and a drift conversation's turns live in the `.eval` logs the scorecard names (recorded in the store's
`logs` column). A result recorded before the store kept them has no transcripts to show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..harness.loading import split_harmony
from ..harness.scorecard import is_proportion
from .board import lower_is_better


@dataclass
class Turn:
    """One assistant turn of a drift conversation with its verdicts."""

    user: str
    reply: str
    reasoning: str | None
    error: str | None
    values: dict[str, Any]


@dataclass
class SampleView:
    """One answered prompt: what the model was asked, what it said, and how each judge read it."""

    key: str  # candidate|task|condition|sample|epoch: the label's handle
    sample_id: str
    epoch: int
    prompt: str
    reply: str
    reasoning: str | None
    values: dict[str, Any]  # the scorer's values: metric[:judge] -> value
    verdicts: dict[str, dict[str, Any]]  # judge name -> its recorded verdict (probability, coherence, leak ...)
    explanation: str | None
    error: str | None
    condition: str
    turns: list[Turn] = field(default_factory=list)

    def judged(self, metric: str) -> dict[str, Any]:
        """`metric` per judge (`sarcastic:classifier` -> {"classifier": 1}); an unjudged metric under its name."""
        out = {k.split(":", 1)[1] if ":" in k else k: v for k, v in self.values.items()
               if k.split(":")[0] == metric}
        return out

    @property
    def disagree(self) -> bool:
        """Two judges gave different sarcastic verdicts on this reply."""
        votes = {v for v in self.judged("sarcastic").values() if v is not None}
        return len(votes) > 1

    def failed(self, metric: str) -> bool:
        """The reply counts against the cell's metric (a pass/fail metric only; an error counts as failed)."""
        values = [v for v in self.judged(metric).values()]
        if self.error or not values or any(v is None for v in values):
            return True
        if not is_proportion(metric):
            return False
        bad = 1 if lower_is_better(metric) else 0
        return any(float(v) == bad for v in values)


def split_reply(text: str) -> tuple[str, str | None]:
    """(the final answer, the reasoning) of a harmony-format reply; plain text is all answer."""
    harmony = split_harmony(text or "")
    if harmony is None:
        return text or "", None
    return harmony.final or "", harmony.analysis


@lru_cache(maxsize=256)
def _header(path: str, mtime: float) -> tuple[str, str]:
    from inspect_ai.log import read_eval_log

    log = read_eval_log(path, header_only=True)
    return log.eval.task.split("/")[-1], str((log.eval.task_args or {}).get("condition", "none"))


@lru_cache(maxsize=32)
def _samples(path: str, mtime: float) -> tuple[Any, ...]:
    from inspect_ai.log import read_eval_log

    return tuple(read_eval_log(path).samples or ())


def logs_for(result: dict[str, Any], task: str) -> list[Path]:
    """The result's logs of `task` under the result's condition (a scorecard also names its other conditions')."""
    out = []
    for raw in result.get("logs") or []:
        path = Path(raw)
        if not path.is_file():
            continue
        name, condition = _header(str(path), path.stat().st_mtime)
        if name == task and condition == result["condition"]:
            out.append(path)
    return out


def cell_samples(result: dict[str, Any], task: str) -> list[SampleView]:
    """Every sample of `task` in the result's logs (the newest log wins for a sample answered twice by a resume)."""
    found: dict[tuple[str, int], SampleView] = {}
    for path in sorted(logs_for(result, task), key=lambda p: p.stat().st_mtime):
        for s in _samples(str(path), path.stat().st_mtime):
            view = sample_view(result["candidate"], task, result["condition"], s)
            found[(view.sample_id, view.epoch)] = view
    return sorted(found.values(), key=lambda v: (v.sample_id, v.epoch))


def sample_view(candidate: str, task: str, condition: str, s: Any) -> SampleView:
    """One Inspect `EvalSample` as the viewer shows it."""
    meta = s.metadata or {}
    score = next(iter((s.scores or {}).values()), None)
    values = dict(score.value) if score is not None and isinstance(score.value, dict) else {}
    smeta = (score.metadata or {}) if score is not None else {}
    output = s.output
    text = output.completion if output is not None else ""
    reply, reasoning = split_reply(text)
    reasoning = reasoning or _reasoning_parts(output)
    error = None
    if s.error is not None:
        error = str(getattr(s.error, "message", s.error))
    elif output is not None and output.error:
        error = str(output.error)
    elif score is not None and score.explanation and not values:
        error = score.explanation
    turns = []
    user_turns = meta.get("turns") or []
    replies = (s.store or {}).get("replies") or []
    per_turn = smeta.get("turns") or []
    for i, user in enumerate(user_turns):
        r = replies[i] if i < len(replies) else {"text": "", "error": "not reached"}
        t_reply, t_reasoning = split_reply(str(r.get("text") or ""))
        turns.append(Turn(str(user), t_reply, t_reasoning, r.get("error"),
                          per_turn[i] if i < len(per_turn) and isinstance(per_turn[i], dict) else {}))
    prompt = str(meta.get("prompt") or (user_turns[0] if user_turns else s.input if isinstance(s.input, str) else ""))
    return SampleView(key=f"{candidate}|{task}|{condition}|{s.id}|{s.epoch}", sample_id=str(s.id),
                      epoch=int(s.epoch or 1), prompt=prompt, reply=reply, reasoning=reasoning, values=values,
                      verdicts=dict(smeta.get("verdicts") or {}),
                      explanation=score.explanation if score is not None else None, error=error,
                      condition=condition, turns=turns)


def _reasoning_parts(output: Any) -> str | None:
    """Reasoning the provider returned as separate content (an OpenAI-compatible server's reasoning field)."""
    message = getattr(output, "message", None) if output is not None else None
    content = getattr(message, "content", None)
    if not isinstance(content, list):
        return None
    parts = [str(getattr(c, "reasoning", "")) for c in content if getattr(c, "type", "") == "reasoning"]
    return "\n".join(p for p in parts if p) or None
