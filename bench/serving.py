"""Serving under concurrent load: 1, 4 and 16 client threads send single requests back to back to
each micro-batched model, with batching off and on in the same run; prints throughput and p50/p95
latency per request, and each batched run's mean batch size.

Usage: python bench/serving.py [--seconds 4] [--clients 1 4 16] [--slots sentiment embedder image_classifier]
On CPU the text slots serve their int8 ONNX Runtime copies; LAUNCHPAD_EMBEDDER_RUNTIME=torch and
LAUNCHPAD_SENTIMENT_RUNTIME=torch measure the fp32 torch path instead.
The sentiment model must be trained already (it is on first use of its page, or run bench/sentiment.py).
"""
import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import (  # noqa: E402
    catalog,  # noqa: E402,F401  (declares every model slot)
    sentiment,
    vision,
)
from core.embeddings import embed  # noqa: E402
from core.registry import (
    configure_threads,  # noqa: E402
    registry,  # noqa: E402
)

TEXTS = ["@united my flight was delayed three hours and nobody told us anything",
         "How do I export all my invoices as a CSV file?", "@jetblue thanks, the crew was lovely",
         "Can I change the currency on an invoice after sending it?"]


def batch_call(slot: str):
    """call(first, n): one request holding inputs first … first + n - 1 (cycled) for the slot."""
    if slot == "sentiment":
        fn, pool = sentiment.predict, TEXTS
    elif slot == "embedder":
        fn, pool = embed, TEXTS
    else:
        fn, pool = vision.classify, list(vision.sample_gallery().values())
    return lambda first, n=1: fn([pool[(first + j) % len(pool)] for j in range(n)])


def ceiling(call, sizes=(1, 2, 4, 8, 16), repeats: int = 15) -> dict[int, float]:
    """Median seconds of one direct model call on b inputs (batching off: no queue, no waiting)."""
    registry.batching = False
    times = {}
    for b in sizes:
        runs = []
        for i in range(repeats):
            started = time.perf_counter()
            call(i, b)
            runs.append(time.perf_counter() - started)
        times[b] = statistics.median(runs)
    registry.batching = True
    return times


def load(slot: str, call, clients: int, seconds: float) -> dict:
    """`clients` threads calling back to back for `seconds`; latency of every request."""
    latencies, stop, barrier = [[] for _ in range(clients)], threading.Event(), threading.Barrier(clients + 1)

    def client(k: int) -> None:
        barrier.wait()
        i = k
        while not stop.is_set():
            started = time.perf_counter()
            call(i)
            latencies[k].append(time.perf_counter() - started)
            i += clients

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    flat = sorted(x for per in latencies for x in per)
    sizes = list(registry._entries[slot].batch_sizes)
    return {"rps": len(flat) / elapsed, "p50": statistics.median(flat) * 1000,
            "p95": flat[int(0.95 * (len(flat) - 1))] * 1000, "n": len(flat),
            "batch": statistics.mean(sizes) if sizes else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--slots", nargs="+", default=["sentiment", "embedder", "image_classifier"])
    args = parser.parse_args()
    print(f"torch threads: {configure_threads()}; {args.seconds:.0f} s per run\n")
    for slot in args.slots:
        registry.get(slot, progress=print)
        call = batch_call(slot)
        for i in range(8):
            call(i)  # warm
        print(f"{slot} on {registry.get(slot).device}, {registry.get(slot).meta.get('runtime') or 'torch'}")
        print(f"  {'clients':>7} {'batching':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'mean batch':>10}")
        single = None
        for clients in args.clients:
            row = {}
            for batching in (False, True):
                registry.batching = batching
                registry._entries[slot].batch_sizes.clear()
                row[batching] = r = load(slot, call, clients, args.seconds)
                single = single or (r if not batching else None)
                print(f"  {clients:>7} {'on' if batching else 'off':>8} {r['rps']:8.1f} {r['p50']:8.1f} "
                      f"{r['p95']:8.1f} {r['batch']:10.2f}")
            gain = row[True]["rps"] / row[False]["rps"]
            print(f"  {clients:>7} clients: batching gives {gain:.2f}x throughput; batched p95 is "
                  f"{row[True]['p95'] / single['p50']:.1f}x the unbatched single-client p50 "
                  f"({row[True]['p95'] / single['p95']:.1f}x its p95)")
        registry.batching = True
        # The ceiling: N clients that each wait for their answer form a closed loop, so by Little's law their
        # mean latency is N / throughput. p95 within 2x the single-call time T(1) needs at least N / (2 T(1))
        # requests a second, whatever the scheduler; the model's best is b / T(b) over batch sizes b.
        times = ceiling(call)
        best = max(times, key=lambda b: b / times[b])
        n = max(args.clients)
        print("  one direct call: " + ", ".join(f"{b} in {t * 1000:.1f} ms" for b, t in times.items()))
        print(f"  ceiling: at most {best / times[best]:.0f} req/s (batch {best}); a p95 within 2x T(1) at {n} "
              f"clients needs at least {n / (2 * times[1]):.0f} req/s")
        print()


if __name__ == "__main__":
    main()
