"""The leaderboard store: every scorecard, one row per candidate x suite x judge x condition, in SQLite.

Embedded, WAL mode, one transaction per scorecard, safe with several processes writing at once.
Re-recording the same candidate/suite/judge/condition replaces its row. A file that is not one of our
stores is an error, never silently recreated.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..harness.errors import UserError

APPLICATION_ID = 0x43424B52  # "CBKR": marks the file as ours
SCHEMA_VERSION = 1
LINEAGE_FIELDS = ("round", "baker", "base", "scale", "step", "parent", "data_hash")

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    candidate TEXT NOT NULL, suite TEXT NOT NULL, suite_version TEXT NOT NULL,
    judge TEXT NOT NULL, rubric TEXT NOT NULL, condition TEXT NOT NULL,
    kind TEXT, source TEXT,
    round TEXT, baker TEXT, base TEXT, scale REAL, step INTEGER, parent TEXT, data_hash TEXT,
    lineage TEXT, reported INTEGER NOT NULL DEFAULT 0, note TEXT,
    harness_version TEXT, harness_commit TEXT, created TEXT,
    timings TEXT, decoding TEXT, judges TEXT, samples TEXT, examples TEXT,
    logs TEXT,  -- the scorecard's Inspect logs (paths), where the per-sample transcripts live
    UNIQUE (candidate, suite, judge, condition)
);
CREATE TABLE IF NOT EXISTS metrics (
    result_id INTEGER NOT NULL REFERENCES results(id) ON DELETE CASCADE,
    task TEXT NOT NULL, metric TEXT NOT NULL, judge TEXT,
    value REAL, n INTEGER, successes REAL, errors INTEGER, ci_low REAL, ci_high REAL, interval TEXT, prompts INTEGER
);
CREATE INDEX IF NOT EXISTS metrics_result ON metrics(result_id);
CREATE INDEX IF NOT EXISTS results_candidate ON results(candidate);
"""


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA foreign_keys=ON")
            _retry_locked(self._create_or_check)
            _retry_locked(lambda: self.db.execute("PRAGMA journal_mode=WAL"))
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise UserError(f"{self.path}: store schema version {version}, this harness reads {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise UserError(f"{self.path}: not a readable SQLite store ({e}); it was left untouched") from None

    def _create_or_check(self) -> None:
        """One write transaction: concurrent creators queue on it, so exactly one creates the schema and the
        others find it made (checking and creating in separate steps lost rows under 8 racing processes)."""
        with self.transaction():
            app_id = self.db.execute("PRAGMA application_id").fetchone()[0]
            empty = self.db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
            if app_id == 0 and empty:
                self.db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                for statement in _statements():
                    self.db.execute(statement)
            elif app_id != APPLICATION_ID:
                raise UserError(f"{self.path}: not a character-baker store (another application's SQLite file); "
                                "point --store elsewhere")
            elif not empty:  # a store made before `logs` was kept: add the column (rows recorded then have none)
                columns = {row[1] for row in self.db.execute("PRAGMA table_info(results)")}
                if columns and "logs" not in columns:
                    self.db.execute("ALTER TABLE results ADD COLUMN logs TEXT")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    def record(self, card: dict[str, Any], reported: bool = False, note: str | None = None) -> list[int]:
        """Record a scorecard (one row per condition) in one transaction; returns the row ids."""
        return self.record_many([card], reported, note)

    def record_many(self, cards: list[dict[str, Any]], reported: bool = False, note: str | None = None,
                    where: list[str] | None = None) -> list[int]:
        """Several scorecards, all or none: each is checked first, then all are written in one transaction."""
        for i, card in enumerate(cards):
            validate_card(card, where[i] if where else f"scorecard {i + 1}")
        ids: list[int] = []
        with self.transaction():
            for card in cards:
                ids += self._insert(card, reported, note)
        return ids

    def _insert(self, card: dict[str, Any], reported: bool, note: str | None) -> list[int]:
        cand = card["candidate"]
        lineage = cand.get("lineage") or {}
        judges = card.get("judges") or []
        judge_key = "+".join(sorted(j["id"] for j in judges)) or "none"
        rubric = "+".join(sorted({j["rubric_version"] for j in judges})) or "none"
        conditions = card["suite"].get("conditions") or sorted({m["condition"] for m in card["metrics"]})
        ids = []
        db = self.db  # inside record_many's transaction
        for condition in conditions:
            db.execute("DELETE FROM results WHERE candidate=? AND suite=? AND judge=? AND condition=?",
                       (cand["id"], card["suite"]["name"], judge_key, condition))
            samples = {k: v for k, v in (card.get("samples") or {}).items() if k.endswith(f"/{condition}")}
            examples = {k: v for k, v in (card.get("examples") or {}).items() if k.endswith(f"/{condition}")}
            cur = db.execute(
                "INSERT INTO results (candidate, suite, suite_version, judge, rubric, condition, kind, source, "
                "round, baker, base, scale, step, parent, data_hash, lineage, reported, note, harness_version, "
                "harness_commit, created, timings, decoding, judges, samples, examples, logs) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (cand["id"], card["suite"]["name"], card["suite"]["version"], judge_key, rubric, condition,
                 cand.get("kind"), cand.get("source"),
                 *(lineage.get(f) for f in LINEAGE_FIELDS), json.dumps(lineage), int(reported),
                 note, card.get("harness", {}).get("version"), card.get("harness", {}).get("commit"),
                 card.get("created"), json.dumps(card.get("timings") or {}),
                 json.dumps(card.get("decoding") or {}), json.dumps(judges), json.dumps(samples),
                 json.dumps(examples), json.dumps(card.get("logs") or [])))
            rid = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT INTO metrics VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(rid, m["task"], m["metric"], m.get("judge"), m.get("value"), m.get("n"), m.get("successes"),
                  m.get("errors"), m.get("ci_low"), m.get("ci_high"), m.get("interval"), m.get("prompts"))
                 for m in card["metrics"] if m["condition"] == condition])
            ids.append(rid)
        return ids

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def frame(self, suite: str | None = None) -> Any:
        """Every metric of every row, joined with its result's identity and lineage, as a pandas DataFrame."""
        import pandas as pd

        query = ("SELECT r.id AS result_id, r.candidate, r.suite, r.suite_version, r.judge AS judges, r.rubric, "
                 "r.condition, r.kind, r.source, r.round, r.baker, r.base, r.scale, r.step, r.parent, r.data_hash, "
                 "r.reported, r.note, r.created, r.harness_version, r.lineage, m.task, m.metric, m.judge, m.value, "
                 "m.n, m.successes, m.errors, m.ci_low, m.ci_high, m.interval "
                 "FROM results r LEFT JOIN metrics m ON m.result_id = r.id")
        params: tuple[Any, ...] = ()
        if suite:
            query += " WHERE r.suite = ?"
            params = (suite,)
        frame = pd.read_sql_query(query, self.db, params=params)
        # each result's judge records (validity cards with the judges' error rates, which the gate reads) once per
        # result, not per metric row; one JSON text, so pandas' deep copies of attrs cost nothing
        records = self.db.execute("SELECT id, judges FROM results" + (" WHERE suite = ?" if suite else ""), params)
        frame.attrs["judge_records"] = json.dumps({rid: json.loads(raw or "[]") for rid, raw in records})
        return frame

    def result(self, result_id: int) -> dict[str, Any]:
        cur = self.db.execute("SELECT * FROM results WHERE id = ?", (result_id,))
        row = cur.fetchone()
        if row is None:
            raise KeyError(result_id)
        out = dict(zip([c[0] for c in cur.description], row, strict=True))
        for key in ("lineage", "timings", "decoding", "judges", "samples", "examples"):
            out[key] = json.loads(out[key]) if out[key] else {}
        out["logs"] = json.loads(out.get("logs") or "[]")
        return out


def validate_card(card: Any, where: str) -> None:
    """A scorecard the store can take: one line naming the file and the field otherwise."""
    from dataclasses import fields

    from ..harness.candidates import check_id
    from ..harness.data import check_keys
    from ..harness.scorecard import MetricRow, Scorecard

    if not isinstance(card, dict):
        raise UserError(f"{where}: a scorecard is a JSON object, got {type(card).__name__}")
    check_keys(card, [f.name for f in fields(Scorecard)], where)
    if card.get("schema") not in (None, "character-baker.scorecard/1"):
        raise UserError(f"{where}: not a character-baker scorecard (schema {card.get('schema')!r})")
    cand, suite, metrics = card.get("candidate"), card.get("suite"), card.get("metrics")
    if not isinstance(cand, dict) or not isinstance(cand.get("id"), str):
        raise UserError(f"{where}: 'candidate.id' is missing or not a string")
    check_id(cand["id"], f"{where}: candidate.id")
    if not isinstance(suite, dict) or not all(isinstance(suite.get(k), str) for k in ("name", "version")):
        raise UserError(f"{where}: 'suite.name' and 'suite.version' must be strings")
    if not isinstance(metrics, list):
        raise UserError(f"{where}: 'metrics' must be a list")
    for i, m in enumerate(metrics):
        if not isinstance(m, dict) or not all(isinstance(m.get(k), str) for k in ("task", "metric", "condition")):
            raise UserError(f"{where}: metrics[{i}] needs string 'task', 'metric' and 'condition'")
        check_keys(m, [f.name for f in fields(MetricRow)], f"{where}: metrics[{i}]")
        for k in ("n", "errors", "prompts"):
            if m.get(k) is not None and (isinstance(m[k], bool) or not isinstance(m[k], int) or m[k] < 0):
                raise UserError(f"{where}: metrics[{i}].{k} must be a whole number >= 0 or null")
        for k in ("value", "ci_low", "ci_high", "successes"):
            if m.get(k) is not None and (isinstance(m[k], bool) or not isinstance(m[k], (int, float))):
                raise UserError(f"{where}: metrics[{i}].{k} must be a number or null")
    for key in ("judges",):
        if key in card and not isinstance(card[key], list):
            raise UserError(f"{where}: '{key}' must be a list")


def _retry_locked(step: Any, attempts: int = 100) -> Any:
    """SQLite answers "database is locked" at once for some operations (journal mode switches, a transaction
    begun while another process creates the file) instead of waiting: wait and try again."""
    for attempt in range(attempts):
        try:
            return step()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or attempt == attempts - 1:
                raise
            time.sleep(min(0.5, 0.01 * (attempt + 1)))
    return None


def _statements() -> list[str]:
    return [s.strip() for s in SCHEMA.split(";") if s.strip()]
