"""Image classifier throughput: batched vs one-by-one in the same run, and single-image latency.

Usage: python bench/image.py [--images 64]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import (
    catalog,  # noqa: E402,F401  (declares every model slot)
    vision,  # noqa: E402
)
from core.registry import registry  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    args = parser.parse_args()

    gallery = list(vision.sample_gallery().values())
    images = [gallery[i % len(gallery)] for i in range(args.images)]
    bundle = registry.get("image_classifier")
    registry.warmup("image_classifier")
    vision.classify(images[:16], batch_size=16)  # warm the batched path too
    import torch

    print(f"device {bundle.device}, dtype {bundle.dtype}, torch threads {torch.get_num_threads()}, "
          f"{args.images} images (scikit-image samples, decode not counted)\n")

    started = time.perf_counter()
    for img in images:
        vision.classify([img])
    one_by_one = args.images / (time.perf_counter() - started)

    batched = {}
    for size in (4, 16, 32):
        started = time.perf_counter()
        vision.classify(images, batch_size=size)
        batched[size] = args.images / (time.perf_counter() - started)

    latencies = []
    for img in images[:32]:
        t = time.perf_counter()
        vision.classify([img])
        latencies.append((time.perf_counter() - t) * 1000)
    latencies.sort()

    print(f"{'mode':<28}{'images/s':>10}")
    print(f"{'one by one':<28}{one_by_one:>10.1f}")
    for size, rate in batched.items():
        print(f"{f'batched, {size} per batch':<28}{rate:>10.1f}   ({rate / one_by_one:.2f}x one by one)")
    print(f"default batch size on {bundle.device}: {vision.default_batch_size(bundle.device)}")
    print(f"\nsingle-image latency (preprocess + forward + top-5): p50 {statistics.median(latencies):.1f} ms, "
          f"p95 {latencies[int(0.95 * (len(latencies) - 1))]:.1f} ms")


if __name__ == "__main__":
    main()
