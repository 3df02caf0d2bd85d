"""First use on a fresh machine: seconds from `streamlit run app.py` starting, with an empty model store, until
each demo's model first answers over the HTTP API (the same registry the pages use). The server prepares the
models our code trains as it starts (LAUNCHPAD_PRELOAD's default); every route is asked at once, as first
visitors would, and asked again each second until it answers. Sentiment answers first from the quick model;
the bench keeps asking until the fine-tuned model takes over and prints both.

Usage: python bench/first_use.py [--store DIR] [--no-preload] [--fine-tune-timeout 1200]
The store defaults to a new empty folder; the chat model's GGUF is joined from its wheels into it, as on a
fresh machine. Run it on an otherwise idle machine (2 cores is the figure that matters).
"""
import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import api as api_bench  # noqa: E402  (bench/api.py: the same requests)
import httpx2 as httpx  # noqa: E402
from servers import streamlit_server  # noqa: E402  (tests/servers.py)

GOAL_S = 60
PAGES = {"sentiment": "Sentiment analysis", "images/classify": "Image classifier",
         "credit-risk/score": "Credit-risk scoring", "recommendations": "Movie recommender",
         "embeddings": "Support chatbot (retrieval)", "chat/completions": "Support chatbot, Copy studio (LLM)"}


def ask_until_answered(base: str, name: str, call, started: float, results: dict, until=None, timeout: float = 900):
    """Calls `call(client)` every second until it returns a response that `until` accepts (default: any 200)."""
    with httpx.Client(base_url=base, timeout=600) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                response = call(client)
                if response.status_code == 200 and (until is None or until(response)):
                    results[name] = time.perf_counter() - started
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
    results[name] = None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", help="model store (default: a new empty folder)")
    parser.add_argument("--no-preload", action="store_true", help="LAUNCHPAD_PRELOAD=none: nothing before visitors")
    parser.add_argument("--fine-tune-timeout", type=float, default=1200)
    args = parser.parse_args()
    store = args.store or tempfile.mkdtemp(prefix="launchpad-first-use-")
    photo = api_bench.jpeg()
    chat_body = {"model": "penny", "messages": [{"role": "user", "content": api_bench.QUESTION}], "max_tokens": 32}
    calls = {
        "sentiment": lambda c: c.post("/api/v1/sentiment", json={"text": api_bench.TEXT}),
        "embeddings": lambda c: c.post("/api/v1/embeddings", json={"input": api_bench.TEXT}),
        "images/classify": lambda c: c.post("/api/v1/images/classify", files={"file": ("cat.jpg", photo, "image/jpeg")}),
        "credit-risk/score": lambda c: c.post("/api/v1/credit-risk/score", json={"applicants": [api_bench.APPLICANT]}),
        "recommendations": lambda c: c.post("/api/v1/recommendations", json={"liked": api_bench.LIKED, "k": 10}),
        "chat/completions": lambda c: c.post("/api/v1/chat/completions", json=chat_body),
    }
    env = dict(LAUNCHPAD_STORE=store, LAUNCHPAD_RATE_LIMIT="0/60", LAUNCHPAD_SERVER_RATE_LIMIT="0/60", LAUNCHPAD_PASSWORD="", LAUNCHPAD_USERS="",
               LAUNCHPAD_PRELOAD="none" if args.no_preload else "")  # "": the default list
    results: dict[str, float | None] = {}
    started = time.perf_counter()
    with streamlit_server(Path(store) / "first-use-server.log", wait_s=300, **env) as base:
        results["server answers /_stcore/health"] = time.perf_counter() - started
        threads = [threading.Thread(target=ask_until_answered, args=(base, name, call, started, results))
                   for name, call in calls.items()]
        threads.append(threading.Thread(target=ask_until_answered, args=(
            base, "sentiment (fine-tuned)", calls["sentiment"], started, results,
            lambda r: r.json()["model"] == "sentiment", args.fine_tune_timeout)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    print(f"store {store} (empty at start), preload {'off' if args.no_preload else 'on (default)'}\n")
    print(f"{'route':<28}{'first answer (s)':>18}  {'goal <= 60 s':<14}page")
    for name, seconds in results.items():
        page = PAGES.get(name, PAGES.get(name.split(" ")[0], ""))
        shown = f"{seconds:.1f}" if seconds is not None else "no answer"
        verdict = "" if name.startswith("server") or "fine-tuned" in name else \
            ("met" if seconds is not None and seconds <= GOAL_S else "missed")
        print(f"{name:<28}{shown:>18}  {verdict:<14}{page}")


if __name__ == "__main__":
    main()
