"""The embedded store (SQLite, standard library): support tickets, answer feedback, sentiment corrections.

WAL journal, one short connection per operation (safe across Streamlit's session threads and across
processes), and every write in a transaction, so a committed row survives a crash. The path is
LAUNCHPAD_DB (or `[app] db` in launchpad.toml); default `data/launchpad.sqlite`, git-ignored.
"""
from __future__ import annotations

import json
import random
import sqlite3
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from core import config

SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    name TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    intent TEXT NOT NULL DEFAULT '',
    question TEXT NOT NULL,
    conversation TEXT NOT NULL            -- JSON list of {role, content}
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    score INTEGER NOT NULL CHECK (score IN (0, 1)),   -- 1 thumbs up, 0 thumbs down
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    sources TEXT NOT NULL                 -- JSON list of {question, score}
);
CREATE TABLE IF NOT EXISTS corrections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    text TEXT NOT NULL,
    predicted TEXT NOT NULL,
    corrected TEXT NOT NULL CHECK (corrected IN ('negative', 'neutral', 'positive'))
);
"""


def db_path() -> Path:
    path = Path(config.setting("db", str(config.ROOT / "data" / "launchpad.sqlite")))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def connect():
    conn = sqlite3.connect(db_path(), timeout=30, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            _retry_if_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
        yield conn
    finally:
        conn.close()


def _retry_if_locked(statement, seconds: float = 30.0):
    """Run `statement()`, retrying while SQLite says the database is locked. Turning a new database to WAL
    needs an exclusive lock, and when several processes open it at once SQLite answers 'locked' at once
    instead of waiting for the busy timeout (it would be a deadlock): 4 processes starting together on a
    fresh file failed this way in 5-8 of 25-40 rounds before this retry."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return statement()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01 + 0.04 * random.random())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def create_ticket(question: str, conversation: list[dict], name: str = "", email: str = "",
                  intent: str = "") -> int:
    with connect() as conn:
        cur = conn.execute(
            "INSERT INTO tickets (created, name, email, intent, question, conversation) VALUES (?, ?, ?, ?, ?, ?)",
            (_now(), name.strip()[:200], email.strip()[:200], intent, question,
             json.dumps([{"role": m["role"], "content": m["content"]} for m in conversation])))
        return int(cur.lastrowid)


def tickets(status: str | None = None) -> list[dict]:
    with connect() as conn:
        sql = "SELECT * FROM tickets" + (" WHERE status = ?" if status else "") + " ORDER BY id DESC"
        rows = conn.execute(sql, (status,) if status else ()).fetchall()
    return [dict(r) | {"conversation": json.loads(r["conversation"])} for r in rows]


def set_ticket_status(ticket_id: int, status: str) -> None:
    if status not in ("open", "closed"):
        raise ValueError("status is 'open' or 'closed'")
    with connect() as conn:
        conn.execute("UPDATE tickets SET status = ? WHERE id = ?", (status, ticket_id))


def add_feedback(score: int, question: str, answer: str, sources: list[dict]) -> int:
    with connect() as conn:
        cur = conn.execute(
            "INSERT INTO feedback (created, score, question, answer, sources) VALUES (?, ?, ?, ?, ?)",
            (_now(), int(bool(score)), question, answer, json.dumps(sources)))
        return int(cur.lastrowid)


def feedback() -> list[dict]:
    with connect() as conn:
        rows = conn.execute("SELECT * FROM feedback ORDER BY id DESC").fetchall()
    return [dict(r) | {"sources": json.loads(r["sources"])} for r in rows]


def update_feedback(feedback_id: int, score: int) -> None:
    """A user who changes their mind changes their row, so each answer counts once."""
    with connect() as conn:
        conn.execute("UPDATE feedback SET score = ?, created = ? WHERE id = ?", (int(bool(score)), _now(), feedback_id))


def add_correction(text: str, predicted: str, corrected: str) -> int:
    with connect() as conn:
        cur = conn.execute("INSERT INTO corrections (created, text, predicted, corrected) VALUES (?, ?, ?, ?)",
                           (_now(), text, predicted, corrected))
        return int(cur.lastrowid)


def corrections() -> list[dict]:
    with connect() as conn:
        return [dict(r) for r in conn.execute("SELECT * FROM corrections ORDER BY id").fetchall()]
