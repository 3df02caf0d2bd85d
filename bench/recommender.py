"""Recommender: training time (each stage), recommendation latency per user for every model (known
users and folded-in new visitors), and the held-out evaluation table.

Usage: python bench/recommender.py [--users 200]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from core import (
    catalog,  # noqa: E402,F401  (declares every model slot)
    recommender,  # noqa: E402
)
from core.registry import registry  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=200)
    args = parser.parse_args()
    ratings, items = recommender.movielens()
    registry.get("embedder")  # its load is not training
    stages, last = {}, [time.perf_counter(), "start"]

    def progress(message, fraction=None):
        now = time.perf_counter()
        stage = message.split(":")[0]
        stages[last[1]] = stages.get(last[1], 0) + now - last[0]
        last[:] = [now, stage]

    started = time.perf_counter()
    model = recommender.train(ratings, items, progress)
    total = time.perf_counter() - started
    print(f"training on {model.meta['train_ratings']:,} ratings ({model.meta['users']} users, "
          f"{model.meta['items']:,} movies): {total:.1f} s in all")
    for stage, seconds in stages.items():
        if seconds > 0.05 and stage != "start":
            print(f"  {stage}: {seconds:.1f} s")
    users = model.users[: args.users]
    liked = [model.items["item"].iloc[model.liked[u][:5]].tolist() for u in users if len(model.liked.get(u, []))]
    print(f"\nlatency per request, median (p95) over {len(users)} users / {len(liked)} new visitors with 5 likes:")
    for which, name in recommender.METHODS.items():
        row = []
        for calls in ([lambda u=u, w=which: model.recommend(w, user=u) for u in users],
                      [lambda ls=ls, w=which: model.recommend(w, liked=ls) for ls in liked]):
            times = []
            for call in calls:
                t = time.perf_counter()
                call()
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            row.append(f"{statistics.median(times):6.1f} ms ({times[int(0.95 * (len(times) - 1))]:.1f})")
        print(f"  {name:<42} user {row[0]}   new visitor {row[1]}")
    table = pd.DataFrame(model.metrics).T.drop(columns="users")
    table.index = [recommender.METHODS[k] for k in table.index]
    print(f"\nheld out: each user's latest 20% ({model.meta['test_ratings']:,} ratings)")
    print(table.round(4).to_string())


if __name__ == "__main__":
    main()
