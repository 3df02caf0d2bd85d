"""Cold and warm model loading, per registry slot.

Each cold start is a fresh Python process (torch and transformers imports timed separately) with an empty (first) and then a filled (second) model
store, so the second column shows what the conversion cache saves. Warm `get` is the median of
100,000 calls on an already loaded slot.  Usage: python bench/registry.py [--store DIR]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(slot: str) -> None:
    sys.path.insert(0, str(ROOT))
    import_started = time.perf_counter()
    import torch  # noqa: F401  (imports are timed apart from loading)
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    from core import catalog  # noqa: F401  (declares every model slot)
    from core.registry import registry

    started = time.perf_counter()
    bundle = registry.get(slot)
    cold = time.perf_counter() - started
    samples = []
    for _ in range(100):
        t = time.perf_counter_ns()
        for _ in range(1000):
            registry.get(slot)
        samples.append((time.perf_counter_ns() - t) / 1000)
    samples.sort()
    print(json.dumps({"cold_s": cold, "warm_get_ns": samples[len(samples) // 2], "device": bundle.device,
                      "import_s": started - import_started}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--store", help="model store to start from (default: a new empty one)")
    args = parser.parse_args()
    if args.child:
        return child(args.child)

    sys.path.insert(0, str(ROOT))
    from core import catalog

    store = args.store or tempfile.mkdtemp(prefix="launchpad-bench-store-")
    env = dict(os.environ, LAUNCHPAD_STORE=store, HF_HUB_OFFLINE="1")
    print(f"model store: {store}  (each cold start is a new process)\n")
    print(f"{'slot':<18}{'1st cold load s':>17}{'2nd cold load s':>17}{'imports s':>11}{'warm get ns':>13}  device")
    for name in catalog.slots():
        runs = []
        for _ in range(2):
            out = subprocess.run([sys.executable, __file__, "--child", name], env=env, capture_output=True,
                                 text=True)
            if out.returncode != 0:
                runs.append(None)
                print(f"{name:<18}failed: {out.stderr.strip().splitlines()[-1]}")
                break
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        if None in runs:
            continue
        first, second = runs
        print(f"{name:<18}{first['cold_s']:>17.2f}{second['cold_s']:>17.2f}{second['import_s']:>11.2f}"
              f"{second['warm_get_ns']:>13.0f}  {second['device']}")


if __name__ == "__main__":
    main()
