"""Credit-risk: training time, batch scoring speed (applicants/s, both models, through the same
validation path a CSV upload takes), single-applicant latency with reason codes, and the held-out table.

Usage: python bench/risk.py [--rows 100000] [--repeats 3]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from core import risk  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = risk.sample_data()
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        model = risk.train(data, risk.SAMPLE["target"], risk.SAMPLE["bad"])
        times.append(time.perf_counter() - started)
    print(f"training both models on {model.meta['train_rows']:,} rows: median {statistics.median(times):.2f} s "
          f"over {args.repeats} runs ({', '.join(f'{t:.2f}' for t in times)})\n")

    # an upload: every cell a string, as files.read_csv returns it
    rows = data.drop(columns=[risk.SAMPLE["target"]]).astype(str)
    upload = pd.concat([rows] * (args.rows // len(rows) + 1), ignore_index=True).head(args.rows)
    for method, name in risk.METHODS.items():
        started = time.perf_counter()
        scored, problems = risk.score_batch(model, upload, method, approve_at=540, decline_below=500)
        seconds = time.perf_counter() - started
        assert scored is not None and (scored.band != "not scored").sum() == len(upload)
        print(f"batch scoring, {name}: {len(upload):,} applicants in {seconds:.2f} s = "
              f"{len(upload) / seconds:,.0f} applicants/s (validation included)")
    one = risk.features(rows.head(1), model.schema)
    for method, name in risk.METHODS.items():
        latencies = []
        for _ in range(20):
            started = time.perf_counter()
            model.probability_of_default(one, method)
            model.explain(one, method)
            latencies.append(time.perf_counter() - started)
        print(f"one applicant with reason codes, {name}: median {statistics.median(latencies) * 1000:.0f} ms")

    table = pd.DataFrame({k: model.metrics[k] for k in ("gbm", "scorecard", "gbm_uncalibrated")}).T
    print(f"\nheld-out ({model.meta['test_rows']:,} applicants, {model.meta['bad_rate']:.0%} bad):")
    print(table.round(4).to_string())
    cal = model.metrics["calibration"]
    print(f"calibration changed the Brier score by {cal['brier_change']:+.4f} (bootstrap s.e. {cal['brier_change_se']:.4f})")


if __name__ == "__main__":
    main()
