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
            # a damaged page anywhere (a disk error, a copy cut short, bytes overwritten) is found before any row is
            # read or written, not halfway through a gate
            problems = [" ".join(str(row[0]).split())  # SQLite's report spans lines: one line here
                        for row in _retry_locked(lambda: self.db.execute("PRAGMA quick_check(3)").fetchall())]
            if problems != ["ok"]:
                raise UserError(f"{self.path}: damaged SQLite store ({'; '.join(problems)}); it was left untouched "
                                "(restore it from a copy, or record the scorecards again into a new store)")
        except sqlite3.DatabaseError as e:
            if type(e) is not sqlite3.DatabaseError:  # a full disk, a lock, an I/O error: the disk's, not the file's
                raise
            raise UserError(f"{self.path}: not a readable SQLite store ({e}); it was left untouched") from None
        self._checked: set[str | None] = set()  # suites whose stored rows were checked (`check_rows`)

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
    def readable(self) -> Iterator[None]:
        """SQLite's word that the file's pages are damaged (or not a database at all) as one line naming the store.
        pandas wraps SQLite's errors in its own (told by module: importing pandas to record a card costs); a full
        disk, a lock or an I/O error is the disk's, not the file's, and goes on as SQLite's own error."""
        try:
            yield
        except Exception as e:
            cause = e.__cause__ if type(e).__module__.split(".")[0] == "pandas" else e
            if not isinstance(cause, sqlite3.DatabaseError):
                raise
            if type(cause) is not sqlite3.DatabaseError:  # OperationalError and kin
                if cause is e:
                    raise
                raise cause from None
            raise UserError(f"{self.path}: not a readable SQLite store ({cause}); it was left untouched") from None

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
        with self.readable(), self.transaction():
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
        with self.readable():
            return int(self.db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def check_rows(self, suite: str | None = None) -> None:
        """Every stored row of a suite (None: all) as the scorecard schema wants it, checked once per open store:
        a row an older harness let in (a 500 % rate, a validity card that is a string) stops the reader with one
        line naming the row, instead of passing a gate or crashing it."""
        from ..harness.candidates import check_lineage
        from ..harness.scorecard import check_judges, check_metric

        if suite in self._checked or None in self._checked:
            return
        where, params = (" WHERE r.suite = ?", (suite,)) if suite else ("", ())
        with self.readable():
            results = self.db.execute("SELECT r.id, r.candidate, r.condition, r.lineage, r.judges FROM results r"
                                      + where, params).fetchall()
            metrics = self.db.execute(
                "SELECT m.result_id, m.task, m.metric, m.judge, m.value, m.n, m.successes, m.errors, m.ci_low, "
                "m.ci_high, m.interval, m.prompts, r.condition FROM metrics m JOIN results r ON r.id = m.result_id"
                + where, params).fetchall()
        rows = {rid: f"{self.path}: row {rid} (candidate {cand!r}, condition {cond!r})"
                for rid, cand, cond, _, _ in results}
        try:
            for rid, _, _, lineage, judges in results:
                _stored_json(lineage, rows[rid], "lineage", dict)
                check_lineage(json.loads(lineage or "{}"), rows[rid])
                _stored_json(judges, rows[rid], "judges", list)
                check_judges(json.loads(judges or "[]"), rows[rid])
            keys = ("task", "metric", "judge", "value", "n", "successes", "errors", "ci_low", "ci_high", "interval",
                    "prompts", "condition")
            for rid, *values in metrics:
                check_metric(dict(zip(keys, values, strict=True)), rows[rid], "metric")
        except UserError as e:
            raise UserError(f"{e}; it was recorded before this check: record its scorecard again to replace the "
                            "row") from None
        self._checked.add(suite)

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
        self.check_rows(suite)
        with self.readable():
            frame = pd.read_sql_query(query, self.db, params=params)
            # each result's judge records (validity cards with the judges' error rates, which the gate reads) once
            # per result, not per metric row; one JSON text, so pandas' deep copies of attrs cost nothing
            records = self.db.execute("SELECT id, judges FROM results" + (" WHERE suite = ?" if suite else ""),
                                      params).fetchall()
        frame.attrs["judge_records"] = json.dumps({rid: json.loads(raw or "[]") for rid, raw in records})
        return frame

    def result(self, result_id: int) -> dict[str, Any]:
        with self.readable():
            cur = self.db.execute("SELECT * FROM results WHERE id = ?", (result_id,))
            row = cur.fetchone()
        if row is None:
            raise KeyError(result_id)
        out = dict(zip([c[0] for c in cur.description], row, strict=True))
        where = f"{self.path}: row {result_id} (candidate {out['candidate']!r}, condition {out['condition']!r})"
        for key, kind in (("lineage", dict), ("timings", dict), ("decoding", dict), ("judges", list),
                          ("samples", dict), ("examples", dict)):
            _stored_json(out[key], where, key, kind)
            out[key] = json.loads(out[key]) if out[key] else {}
        _stored_json(out.get("logs"), where, "logs", list)
        out["logs"] = json.loads(out.get("logs") or "[]")
        from ..harness.scorecard import check_samples

        try:
            check_samples(out["samples"], where, None)
        except UserError as e:
            raise UserError(f"{e}; it was recorded before this check: record its scorecard again to replace the "
                            "row") from None
        return out


def validate_card(card: Any, where: str) -> None:
    """A scorecard the store can take: the one scorecard schema (`harness/scorecard.check_scorecard`)."""
    from ..harness.scorecard import check_scorecard

    check_scorecard(card, where)


def _stored_json(raw: str | None, where: str, column: str, kind: type) -> None:
    """A JSON column as the store wrote it, or one line naming the row."""
    if not raw:
        return
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError, TypeError):
        raise UserError(f"{where}: {column} is not valid JSON; the store was changed outside character-baker "
                        "(record its scorecard again to replace the row)") from None
    if not isinstance(value, kind):
        raise UserError(f"{where}: {column} must be a JSON {'object' if kind is dict else 'list'}, got "
                        f"{type(value).__name__} (record its scorecard again to replace the row)")


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
