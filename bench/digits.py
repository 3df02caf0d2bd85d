"""Digit lab figures: training time and held-out accuracy with the default budget, recognition of digits
drawn as pen strokes (the same strokes the browser test draws with the mouse), one-prediction latency, and
the fp32 / int8 / pruned variants side by side.

Usage: python bench/digits.py [--keep]
Trains into a temporary model store and database (so the app's model and training-runs log are left
alone); --keep trains into the configured store and database instead.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

parser = argparse.ArgumentParser()
parser.add_argument("--keep", action="store_true", help="train into the configured model store and database")
args = parser.parse_args()
if not args.keep:
    scratch = Path(tempfile.mkdtemp(prefix="bench-digits-"))
    os.environ["LAUNCHPAD_STORE"] = str(scratch / "store")
    os.environ["LAUNCHPAD_DB"] = str(scratch / "bench.sqlite")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core import digits  # noqa: E402
from core.registry import registry  # noqa: E402


def percentiles(fn, runs: int = 500) -> tuple[float, float]:
    for _ in range(20):
        fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 95) * 1000)


def canvas_rgba(d: int, **kwargs) -> np.ndarray:
    """What the drawable canvas returns: RGBA, black strokes on its white background."""
    rgb = np.asarray(digits.render_strokes(digits.STROKES[d], **kwargs))
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (another process on these cores slows torch a lot)\n")
    print(f"Training with the defaults {digits.DEFAULTS} ...")
    started = time.perf_counter()
    meta = digits.train(lambda m, f=None: None)
    total = time.perf_counter() - started
    m = meta["metrics"]
    print(f"  held-out accuracy {m['accuracy']:.3f} on {meta['n_test']:,} digits after {meta['epochs_run']} epoch(s), "
          f"{meta['train_seconds']:.1f} s of training (goal >= 0.970 in <= 60 s); {total:.1f} s with the variants")
    print(f"  per digit: {', '.join(f'{d}: {a:.2f}' for d, a in enumerate(m['per_class_accuracy']))}\n")

    registry.unload(digits.SLOT)
    bundle = registry.get(digits.SLOT)
    styles = {"large, centred (as drawn on the canvas)": {},
              "small, in a corner, thinner pen": {"offset": (0.55, 0.05), "scale": 0.4, "width": 10},
              "thick pen": {"width": 36}, "thin pen": {"width": 12}}
    print("Digits drawn as pen strokes, 280x280 canvas, preprocessed and read through the registry slot:")
    for name, kwargs in styles.items():
        read = [int(np.argmax(digits.read(canvas_rgba(d, **kwargs))[1])) for d in range(10)]
        print(f"  {name}: {sum(r == d for d, r in enumerate(read))}/10 (read as {read})")

    x = np.zeros((1, 28, 28), np.uint8)
    x[0] = digits.preprocess(canvas_rgba(3))
    p50, p95 = percentiles(lambda: digits.predict(x))
    print(f"\nOne prediction (preprocessed digit, registry.run, {bundle.device}): p50 {p50:.3f} ms, p95 {p95:.3f} ms "
          "(goal p50 <= 5 ms)")
    rgba = canvas_rgba(3)
    p50, p95 = percentiles(lambda: digits.read(rgba), runs=200)
    print(f"One drawing end to end (280x280 RGBA canvas -> preprocess -> predict): p50 {p50:.2f} ms, p95 {p95:.2f} ms")

    print("\nVariants (measured when the model was trained, one digit at a time):")
    print(f"  {'variant':8} {'runtime':13} {'size KB':>8} {'gzip KB':>8} {'p50 ms':>8} {'accuracy':>9}")
    rows = {v["variant"]: v for v in meta["variants"] if "error" not in v}
    for v in meta["variants"]:
        if "error" in v:
            print(f"  {v['variant']:8} failed: {v['error']}")
            continue
        print(f"  {v['variant']:8} {v['runtime']:13} {v['bytes'] / 1024:8.1f} {v['gzipped_bytes'] / 1024:8.1f} "
              f"{v['latency_ms']:8.3f} {v['accuracy']:9.3f}")
    if "int8" in rows:
        fp32, int8 = rows["fp32"], rows["int8"]
        print(f"  int8 vs fp32: size {fp32['bytes'] / int8['bytes']:.2f}x smaller, latency "
              f"{fp32['latency_ms'] / int8['latency_ms']:.1f}x lower, accuracy {int8['accuracy'] - fp32['accuracy']:+.3f}")

    # how much of int8's speed is ONNX Runtime itself: the same network in fp32 under ONNX Runtime
    images, labels, _ = digits.dataset()
    _, test = digits.split(labels)
    net = digits.load_net()
    onnx_fp32 = Path(tempfile.mkdtemp()) / "fp32.onnx"
    with digits._quiet():
        digits.export_onnx(net, onnx_fp32)
    fp32_session = digits.onnx_session(onnx_fp32)
    int8_session = digits.onnx_session(digits.model_dir() / "model-int8.onnx")
    one = digits.to_tensor(images[test[:1]])
    print("\nFresh latency, one digit (p50 / p95 ms):")
    for name, fn in [("fp32 torch", lambda: net(one)), ("fp32 ONNX Runtime", lambda: fp32_session.run(None, {"x": one.numpy()})),
                     ("int8 ONNX Runtime", lambda: int8_session.run(None, {"x": one.numpy()}))]:
        with torch.inference_mode():
            p50, p95 = percentiles(fn)
        print(f"  {name:18} {p50:.3f} / {p95:.3f}")
    batch = digits.to_tensor(images[test])
    for name, fn in [("fp32 torch", lambda: net(batch)), ("fp32 ONNX Runtime", lambda: fp32_session.run(None, {"x": batch.numpy()})),
                     ("int8 ONNX Runtime", lambda: int8_session.run(None, {"x": batch.numpy()}))]:
        with torch.inference_mode():
            p50, _ = percentiles(fn, runs=20)
        print(f"  1,000 digits at once, {name:18} {p50:.1f} ms ({1000 / p50 * 1000:,.0f} digits/s)")


if __name__ == "__main__":
    main()
