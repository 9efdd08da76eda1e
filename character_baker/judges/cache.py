"""The verdict cache: successful verdicts by (judge id, rubric version, prompt, response), in SQLite."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path

from ..harness.data import default_cache_dir
from ..harness.errors import UserError
from .verdict import MATH_VERSION, Judge, Verdict


class JudgeCache:
    """SQLite store of successful verdicts, so re-scoring and interrupted runs cost no repeated judge calls."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_cache_dir() / "judgments.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, judge TEXT, rubric TEXT, verdict TEXT)"
            )
        except sqlite3.DatabaseError as e:
            raise UserError(f"{self.path}: not a judge cache database ({e})") from None

    @staticmethod
    def key(judge: Judge, prompt: str, response: str) -> str:
        h = hashlib.sha256()
        for part in (judge.id, judge.rubric_version, prompt, response):
            h.update(part.encode() + b"\0")
        return h.hexdigest()

    def get(self, judge: Judge, prompt: str, response: str) -> Verdict | None:
        with self._lock:
            row = self._db.execute("SELECT verdict FROM verdicts WHERE key = ?",
                                   (self.key(judge, prompt, response),)).fetchone()
        return Verdict(**json.loads(row[0])) if row else None

    def put(self, judge: Judge, prompt: str, response: str, verdict: Verdict) -> None:
        if not verdict.ok:
            return
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?)",
                             (self.key(judge, prompt, response), judge.id, judge.rubric_version,
                              json.dumps(asdict(verdict))))


# Verdicts being computed right now, by cache key: `personality` and `assistant_leaks` judge the same replies
# concurrently, and the second asker awaits the first call instead of making its own.
_in_flight: dict[str, asyncio.Future[Verdict | None]] = {}


class CachedJudge:
    """A judge behind the verdict cache and the in-flight map; counts the calls it actually made."""

    def __init__(self, inner: Judge, cache: JudgeCache) -> None:
        self.inner = inner
        self.cache = cache
        self.name, self.id, self.rubric_version = inner.name, inner.id, inner.rubric_version
        self.gives_leak = inner.gives_leak
        self.gives_coherence = getattr(inner, "gives_coherence", False)
        self.calls = 0

    async def judge(self, prompt: str, response: str) -> Verdict:
        return await self._cached(prompt, response, lambda: self.inner.judge(prompt, response))

    async def judge_math(self, question: str, reference: str, response: str) -> Verdict:
        # its own cache slot: the math template's version, the question and the reference make the "prompt"
        key = f"{MATH_VERSION}\0{question}\0{reference}"
        return await self._cached(key, response, lambda: self.inner.judge_math(question, reference, response))

    async def _cached(self, prompt: str, response: str, call: Callable[[], Awaitable[Verdict]]) -> Verdict:
        hit = self.cache.get(self.inner, prompt, response)
        if hit is not None:
            return hit
        key = self.cache.key(self.inner, prompt, response)
        loop = asyncio.get_running_loop()
        pending = _in_flight.get(key)
        if pending is not None and pending.get_loop() is loop:
            shared = await asyncio.shield(pending)
            if shared is not None and shared.ok:
                return shared  # a failed verdict is not shared: this asker makes its own attempt
        future: asyncio.Future[Verdict | None] = loop.create_future()
        _in_flight[key] = future
        verdict: Verdict | None = None
        try:
            self.calls += 1
            verdict = await call()
            self.cache.put(self.inner, prompt, response, verdict)
            return verdict
        finally:
            future.set_result(verdict)  # None when cancelled or raised: waiters then judge for themselves
            if _in_flight.get(key) is future:
                del _in_flight[key]
