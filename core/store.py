"""The embedded store (SQLite, standard library): support tickets, answer feedback, sentiment corrections,
compare-mode votes, digit corrections, and the log of training runs.

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
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    demo TEXT NOT NULL,                   -- 'chat' or 'copy'
    prompt TEXT NOT NULL,
    model_a TEXT NOT NULL,
    model_b TEXT NOT NULL,
    winner TEXT NOT NULL CHECK (winner IN ('a', 'b', 'tie'))
);
CREATE TABLE IF NOT EXISTS digit_feedback (        -- Digit lab: drawings visitors corrected
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    pixels BLOB NOT NULL CHECK (length(pixels) = 784), -- the 28x28 uint8 digit the model saw, row by row
    label INTEGER NOT NULL CHECK (label BETWEEN 0 AND 9),
    predicted INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS training_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slot TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL,                 -- JSON
    data_fingerprint TEXT NOT NULL DEFAULT '',
    duration_s REAL NOT NULL,
    metrics TEXT NOT NULL,                -- JSON: held-out metrics
    started_by TEXT NOT NULL DEFAULT '',
    started_at TEXT NOT NULL,
    run_key TEXT NOT NULL DEFAULT '',     -- the trainer's id for the run (in its meta.json)
    current INTEGER NOT NULL DEFAULT 0    -- 1 for the run whose model the slot serves now
);
"""


def db_path() -> Path:
    path = Path(config.setting("db"))
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
    """One row per text: correcting the same text again replaces its earlier correction (the latest label wins),
    so resubmitting it cannot multiply its weight in training."""
    with connect() as conn:
        conn.execute("BEGIN IMMEDIATE")  # two sessions submitting the same text at once still leave one row
        try:
            row = conn.execute("SELECT id FROM corrections WHERE text = ? ORDER BY id LIMIT 1", (text,)).fetchone()
            if row is not None:
                conn.execute("UPDATE corrections SET created = ?, predicted = ?, corrected = ? WHERE id = ?",
                             (_now(), predicted, corrected, row[0]))
                kept = int(row[0])
            else:
                kept = int(conn.execute("INSERT INTO corrections (created, text, predicted, corrected) VALUES "
                                        "(?, ?, ?, ?)", (_now(), text, predicted, corrected)).lastrowid)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return kept


def corrections() -> list[dict]:
    with connect() as conn:
        return [dict(r) for r in conn.execute("SELECT * FROM corrections ORDER BY id").fetchall()]


# --- compare mode: a visitor's vote between two models' answers to the same input ------------------

VOTE_CHOICES = ("a", "b", "tie")


def add_vote(demo: str, prompt: str, model_a: str, model_b: str, winner: str) -> int:
    if winner not in VOTE_CHOICES:
        raise ValueError(f"winner is one of {VOTE_CHOICES}")
    with connect() as conn:
        cur = conn.execute("INSERT INTO votes (created, demo, prompt, model_a, model_b, winner) VALUES (?, ?, ?, ?, ?, ?)",
                           (_now(), demo, prompt[:2000], model_a, model_b, winner))
        return int(cur.lastrowid)


def update_vote(vote_id: int, winner: str) -> None:
    """A visitor who changes their mind changes their row, so each comparison counts once."""
    if winner not in VOTE_CHOICES:
        raise ValueError(f"winner is one of {VOTE_CHOICES}")
    with connect() as conn:
        conn.execute("UPDATE votes SET winner = ?, created = ? WHERE id = ?", (winner, _now(), vote_id))


def votes() -> list[dict]:
    with connect() as conn:
        return [dict(r) for r in conn.execute("SELECT * FROM votes ORDER BY id DESC").fetchall()]


def win_rates(demo: str | None = None) -> list[dict]:
    """Per model: comparisons, wins, losses, ties and win rate (a tie counts half), best first."""
    table: dict[str, dict] = {}
    for v in votes():
        if demo and v["demo"] != demo:
            continue
        for side, model in (("a", v["model_a"]), ("b", v["model_b"])):
            row = table.setdefault(model, {"model": model, "comparisons": 0, "wins": 0, "losses": 0, "ties": 0})
            row["comparisons"] += 1
            key = "ties" if v["winner"] == "tie" else "wins" if v["winner"] == side else "losses"
            row[key] += 1
    for row in table.values():
        row["win_rate"] = (row["wins"] + 0.5 * row["ties"]) / row["comparisons"]
    return sorted(table.values(), key=lambda r: (-r["win_rate"], -r["comparisons"]))


# --- Digit lab feedback and the training-runs log ------------------------------------------------

def add_digit_feedback(pixels: bytes, label: int, predicted: int, source: str = "") -> int:
    """A drawing a visitor corrected: 784 bytes (28x28 uint8), the right digit and the model's guess."""
    with connect() as conn:
        cur = conn.execute("INSERT INTO digit_feedback (created, pixels, label, predicted, source) VALUES (?, ?, ?, ?, ?)",
                           (_now(), bytes(pixels), int(label), int(predicted), source[:40]))
        return int(cur.lastrowid)


def digit_feedback() -> list[dict]:
    with connect() as conn:
        return [dict(r) for r in conn.execute("SELECT * FROM digit_feedback ORDER BY id").fetchall()]


def record_training_run(slot: str, params: dict, data_fingerprint: str, duration_s: float, metrics: dict,
                        started_by: str = "", started_at: str | None = None, model: str = "",
                        run_key: str = "", current: bool = True) -> int:
    """Log one training run. `current`: the model this run trained is now the one the slot serves (the
    slot's other runs stop being current, in the same transaction)."""
    with connect() as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if current:
                conn.execute("UPDATE training_runs SET current = 0 WHERE slot = ?", (slot,))
            cur = conn.execute(
                "INSERT INTO training_runs (slot, model, params, data_fingerprint, duration_s, metrics, started_by, "
                "started_at, run_key, current) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (slot, model, json.dumps(params, default=str), data_fingerprint, float(duration_s),
                 json.dumps(metrics, default=str), started_by[:200], started_at or _now(), run_key, int(bool(current))))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(cur.lastrowid)


def training_runs(slot: str | None = None) -> list[dict]:
    """Training runs, newest first, with params and metrics parsed."""
    with connect() as conn:
        sql = "SELECT * FROM training_runs" + (" WHERE slot = ?" if slot else "") + " ORDER BY id DESC"
        rows = conn.execute(sql, (slot,) if slot else ()).fetchall()
    return [dict(r) | {"params": json.loads(r["params"]), "metrics": json.loads(r["metrics"]),
                       "current": bool(r["current"])} for r in rows]
