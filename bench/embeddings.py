"""The embedder, fp32 torch against the int8 ONNX Runtime copy (core/quantised.py), in the same run: throughput
over held-out tweets (encode: sorted by length, batches of 64), one text's p50, memory, size on disk, and
retrieval top-1 on each chat evaluation set. Prints figures (median of --rounds); asserts nothing.

Usage: python bench/embeddings.py [--texts 1000] [--rounds 3]   (makes the int8 copy first if the store has none)
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import (  # noqa: E402
    catalog,  # noqa: F401  (declares every model slot)
    embeddings,
    quantised,
    sentiment,
)
from core.registry import registry  # noqa: E402


def bundle(runtime: str):
    os.environ["LAUNCHPAD_EMBEDDER_RUNTIME"] = runtime
    registry.unload(embeddings.SLOT)
    started = time.perf_counter()
    b = registry.get(embeddings.SLOT, progress=print)
    print(f"{runtime}: {b.meta['runtime']} on {b.device}, loaded in {time.perf_counter() - started:.1f} s")
    return b


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    frame, _ = sentiment.dataset()
    texts = sentiment.split(frame)[1].text.tolist()[: args.texts]
    print(f"load average before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores; {quantised.threads()} threads\n")
    bundles = {"fp32 torch": bundle("torch"), "int8 ONNX Runtime": bundle("int8")}
    rates, p50s = {k: [] for k in bundles}, {k: [] for k in bundles}
    for _ in range(args.rounds):
        for name, b in bundles.items():
            rates[name].append(quantised.throughput(lambda t, b=b: embeddings.encode(b, t), texts))
            p50s[name].append(quantised.p50_ms(lambda t, b=b: embeddings.encode(b, t)))
    meta = quantised.exports().get(embeddings.SLOT, {})
    top1 = {name: embeddings.retrieval_top1(b) for name, b in bundles.items()}
    base = statistics.median(rates["fp32 torch"])
    print(f"\n{len(texts)} held-out tweets, median of {args.rounds} rounds (each round's figures in brackets)")
    print(f"{'runtime':<20}{'texts/s':>9}{'vs torch':>9}{'p50 ms':>8}{'disk MB':>9}{'memory MB':>11}  top-1 per set")
    for name in bundles:
        variant = meta.get("fp32" if name.startswith("fp32") else "int8", {})
        rate = statistics.median(rates[name])
        print(f"{name:<20}{rate:>9.1f}{rate / base:>8.2f}x{statistics.median(p50s[name]):>8.2f}"
              f"{variant.get('bytes', 0) / 1e6:>9.1f}{variant.get('memory_bytes', 0) / 1e6:>11.1f}  {top1[name]}"
              f"   [{', '.join(f'{r:.0f}' for r in rates[name])} texts/s]")
    worst = max(top1["fp32 torch"][s] - top1["int8 ONNX Runtime"][s] for s in top1["fp32 torch"])
    print(f"\ngoals: throughput >= 3x torch: {statistics.median(rates['int8 ONNX Runtime']) / base:.2f}x; "
          f"top-1 within 0.01 of fp32 on every set: largest drop {worst:+.3f}")
    print("memory: fp32 = torch's weights and buffers; int8 = the session's resident size after one text, measured "
          f"in a fresh process when the copy was made ({meta.get('int8', {}).get('batch_memory_bytes', 0) / 1e6:.0f} "
          "MB after a batch of 32x64 tokens)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
