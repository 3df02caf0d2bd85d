"""core.store on both engines (SQLite, and a real PostgreSQL server started on a temporary data directory and a
loopback port): concurrent writers lose nothing, a writer killed mid-write loses no committed row, a dropped
PostgreSQL connection is survived, and the migrations bring old and new databases to one schema."""
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import pytest

from core import store


def postgres_bin() -> str | None:
    """The folder with initdb and pg_ctl (Debian keeps them in /usr/lib/postgresql/N/bin, off PATH)."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return os.path.dirname(os.path.realpath(found))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(versions[-1]) if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server():
    """A throw-away PostgreSQL server: its URL (trust auth, loopback only). PostgreSQL refuses to run as root,
    so as root the server runs as Debian's `postgres` user (or `nobody`) in a temporary folder it owns."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed (`make setup` installs Debian's postgresql)")
    base = tempfile.mkdtemp(prefix="launchpad-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None or shutil.which("runuser") is None:
            pytest.skip("running as root with no `postgres`/`nobody` user or no runuser to start PostgreSQL as")
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", user, "--"]
    data, port = os.path.join(base, "data"), _free_port()
    subprocess.run(as_user + [f"{bindir}/initdb", "-D", data, "-U", "launchpad", "--auth=trust", "-E", "UTF8",
                              "--no-sync"], check=True, capture_output=True)
    subprocess.run(as_user + [f"{bindir}/pg_ctl", "-D", data, "-l", os.path.join(base, "log"), "-w", "-t", "60",
                              "-o", f"-h 127.0.0.1 -p {port} -k {base} -c max_connections=200", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://launchpad@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_user + [f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as url:
        yield url


_databases = itertools.count()


def new_database(server_url: str) -> str:
    import psycopg
    name = f"t{os.getpid()}_{next(_databases)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """A fresh, empty database on each engine: its LAUNCHPAD_DB value."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    return new_database(request.getfixturevalue("postgres"))


def query(db: str, sql: str) -> list[tuple]:
    if db.startswith("postgresql://"):
        import psycopg
        with psycopg.connect(db) as conn:
            return conn.execute(sql).fetchall()
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()

WRITER = """
import sys
from core import store
for i in range(int(sys.argv[1])):
    row = store.add_feedback(1, f"{sys.argv[2]}-{i}", "a", [])
    print(row, flush=True)
"""


def test_concurrent_writers_lose_nothing(db):
    env = dict(os.environ, LAUNCHPAD_DB=db)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, "150", f"w{n}"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    questions = {q for (q,) in query(db, "SELECT question FROM feedback")}
    assert questions == {f"w{n}-{i}" for n in range(4) for i in range(150)}


OPENER = """
import sys, time
from core import store
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
store.add_feedback(1, sys.argv[2], "a", [])
"""


@pytest.mark.slow
def test_processes_opening_a_new_database_at_once_all_write(tmp_path):
    # SQLite answers "locked" at once (no busy wait) when two processes turn a new file to WAL together.
    for round_ in range(10):
        env = dict(os.environ, LAUNCHPAD_DB=str(tmp_path / f"{round_}.sqlite"))
        start = str(time.time() + 1.0)  # past every interpreter's start-up, so they open the file together
        procs = [subprocess.Popen([sys.executable, "-c", OPENER, start, f"p{n}"], env=env, stderr=subprocess.PIPE,
                                  text=True) for n in range(4)]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), f"round {round_}: {errors}"
        with sqlite3.connect(tmp_path / f"{round_}.sqlite") as conn:
            assert conn.execute("SELECT count(*) FROM feedback").fetchone()[0] == 4


def test_a_writer_killed_mid_write_loses_no_committed_row(db):
    env = dict(os.environ, LAUNCHPAD_DB=db)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, "100000", "k"], env=env, stdout=subprocess.PIPE,
                            text=True)
    committed = []
    deadline = time.time() + 60
    while len(committed) < 300 and time.time() < deadline:
        committed.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up
    proc.wait()
    committed += [int(line) for line in proc.stdout.read().split()]
    if not db.startswith("postgresql://"):
        assert query(db, "PRAGMA integrity_check")[0][0] == "ok"
    ids = {i for (i,) in query(db, "SELECT id FROM feedback")}
    assert len(committed) >= 300 and set(committed) <= ids


def test_every_store_function_on_each_engine(db, monkeypatch):
    monkeypatch.setenv("LAUNCHPAD_DB", db)
    ticket = store.create_ticket("Where is my refund?", [{"role": "user", "content": "Where is my refund?"}],
                                 name=" Sam ", email="sam@example.com")
    assert store.tickets("open")[0] | {"created": ""} == {
        "id": ticket, "created": "", "status": "open", "name": "Sam", "email": "sam@example.com", "intent": "",
        "question": "Where is my refund?", "conversation": [{"role": "user", "content": "Where is my refund?"}]}
    store.set_ticket_status(ticket, "closed")
    assert store.tickets("open") == [] and store.tickets()[0]["status"] == "closed"
    fid = store.add_feedback(1, "q", "a", [{"question": "q", "score": 0.5}])
    store.update_feedback(fid, 0)
    assert [(f["score"], f["sources"]) for f in store.feedback()] == [(0, [{"question": "q", "score": 0.5}])]
    store.add_correction("text", "positive", "negative")
    assert [c["corrected"] for c in store.corrections()] == ["negative"]
    vote = store.add_vote("chat", "p", "x", "y", "a")
    store.update_vote(vote, "tie")
    assert [r["model"] for r in store.win_rates("chat")] == ["x", "y"] and store.votes()[0]["winner"] == "tie"
    pixels = bytes(range(256)) * 3 + bytes(16)
    store.add_digit_feedback(pixels, 4, 9, "upload")
    assert [(d["pixels"], d["label"], d["predicted"]) for d in store.digit_feedback()] == [(pixels, 4, 9)]
    first = store.record_training_run("digits", {"epochs": 1}, "f", 1.5, {"accuracy": 0.9})
    second = store.record_training_run("digits", {"epochs": 2}, "f", 2.5, {"accuracy": 0.95})
    runs = store.training_runs("digits")
    assert [(r["id"], r["current"], r["params"]) for r in runs] == [(second, True, {"epochs": 2}),
                                                                     (first, False, {"epochs": 1})]
    import psycopg
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.CheckViolation)):   # the schema's checks, both engines
        store.add_digit_feedback(bytes(10), 4, 9)
    assert query(db, "SELECT max(version) FROM schema_version") == [(store.SCHEMA_VERSION,)]


def test_a_sqlite_file_from_before_migrations_keeps_its_rows(tmp_path, monkeypatch):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:   # what the store made before schema_version existed
        conn.executescript(";".join(store.migration_sql("sqlite", 1)))
        conn.execute("INSERT INTO feedback (created, score, question, answer, sources) VALUES ('t', 1, 'old', 'a', '[]')")
    monkeypatch.setenv("LAUNCHPAD_DB", str(path))
    store.add_feedback(0, "new", "a", [])
    assert [f["question"] for f in store.feedback()] == ["new", "old"]
    assert query(str(path), "SELECT version FROM schema_version") == [(v,) for v, _ in store.MIGRATIONS]


def test_a_dropped_postgresql_connection_is_survived(postgres, monkeypatch):
    import psycopg
    url = new_database(postgres)
    monkeypatch.setenv("LAUNCHPAD_DB", url)
    store.add_feedback(1, "before", "a", [])
    name = url.rsplit("/", 1)[-1]
    with psycopg.connect(postgres, autocommit=True) as admin:   # the server drops every connection of the store's
        killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                               (name,)).fetchall()
    assert killed and all(ok for (ok,) in killed)
    store.add_feedback(1, "after", "a", [])
    assert [f["question"] for f in store.feedback()] == ["after", "before"]


def test_the_store_says_where_its_rows_live(monkeypatch):
    monkeypatch.setenv("LAUNCHPAD_DB", "postgresql://sam:secret@db.example:5433/launchpad")
    assert store.engine() == "postgresql" and "secret" not in store.describe() and "launchpad" in store.describe()
    assert store.db_path().name == "launchpad"


def test_the_same_text_corrected_at_once_by_many_sessions_is_one_row(db, monkeypatch):
    """Resubmitting a correction must not multiply its weight in training, on either engine, even at once."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("LAUNCHPAD_DB", db)
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda label: store.add_correction("same text", "negative", label),
                            ["positive", "neutral"] * 8))
    rows = [r for r in store.corrections() if r["text"] == "same text"]
    assert len(rows) == 1 and set(ids) == {rows[0]["id"]} and rows[0]["corrected"] in ("positive", "neutral")


def test_training_runs_recorded_at_once_leave_exactly_one_current(db, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("LAUNCHPAD_DB", db)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: store.record_training_run("race", {"n": n}, "fp", 1.0, {}), range(16)))
    runs = store.training_runs("race")
    assert len(runs) == 16 and sum(bool(r["current"]) for r in runs) == 1
