"""core.store: a SQLite store that survives concurrent writers, processes opening a new file together, and a
writer killed mid-write."""
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

WRITER = """
import sys
from core import store
for i in range(int(sys.argv[1])):
    row = store.add_feedback(1, f"{sys.argv[2]}-{i}", "a", [])
    print(row, flush=True)
"""


def test_concurrent_writers_lose_nothing(tmp_path):
    env = dict(os.environ, LAUNCHPAD_DB=str(tmp_path / "w.sqlite"))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, "150", f"w{n}"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    with sqlite3.connect(tmp_path / "w.sqlite") as conn:
        questions = {q for (q,) in conn.execute("SELECT question FROM feedback")}
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


def test_a_writer_killed_mid_write_loses_no_committed_row(tmp_path):
    env = dict(os.environ, LAUNCHPAD_DB=str(tmp_path / "k.sqlite"))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, "100000", "k"], env=env, stdout=subprocess.PIPE,
                            text=True)
    committed = []
    deadline = time.time() + 60
    while len(committed) < 300 and time.time() < deadline:
        committed.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up
    proc.wait()
    committed += [int(line) for line in proc.stdout.read().split()]
    with sqlite3.connect(tmp_path / "k.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = {i for (i,) in conn.execute("SELECT id FROM feedback")}
    assert len(committed) >= 300 and set(committed) <= ids
