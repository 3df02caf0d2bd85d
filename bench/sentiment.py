"""Sentiment scoring speed, ours (batched, length-sorted) next to a transformers pipeline called once
per text with the same model, in the same run; then the held-out accuracy figures.

Usage: python bench/sentiment.py [--texts 1000]   (trains the model first if the store has none)
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core import (
    catalog,  # noqa: E402,F401  (declares every model slot)
    sentiment,  # noqa: E402
)
from core.registry import registry  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=1000)
    args = parser.parse_args()
    frame, _ = sentiment.dataset()
    _, test = sentiment.split(frame)
    texts = test.text.tolist()[: args.texts]
    bundle = registry.get("sentiment", progress=print)
    print(f"model: {bundle.meta['mode']} MiniLM on {bundle.device}, {torch.get_num_threads()} threads; "
          f"{len(texts)} held-out tweets\n")
    sentiment.predict(texts[:64])  # warm up

    started = time.perf_counter()
    ours = sentiment.predict(texts)
    ours_rate = len(texts) / (time.perf_counter() - started)

    from transformers import pipeline

    extractor = pipeline("feature-extraction", model=bundle.model.encoder, tokenizer=bundle.tokenizer,
                         device=bundle.device, tokenizer_kwargs={"truncation": True, "max_length": sentiment.MAX_TOKENS})
    head = bundle.model.head
    n_pipe = min(len(texts), 300)
    started = time.perf_counter()
    piped = []
    with torch.inference_mode():
        for text in texts[:n_pipe]:  # once per text, as a naive app would
            hidden = torch.tensor(extractor(text)[0])
            piped.append(head(hidden.mean(0)).softmax(-1).numpy())
    pipe_rate = n_pipe / (time.perf_counter() - started)
    agree = np.mean(np.argmax(piped, 1) == ours[:n_pipe].argmax(1))

    print(f"{'path':<52}{'texts/s':>9}")
    print(f"{'transformers pipeline, one call per text':<52}{pipe_rate:>9.1f}   ({n_pipe} texts)")
    print(f"{f'ours: batched ({sentiment.BATCH}), sorted by length, inference_mode':<52}{ours_rate:>9.1f}   "
          f"({ours_rate / pipe_rate:.1f}x; goal >= 5x)")
    print(f"same labels on {agree:.1%} of the shared texts\n")

    meta = bundle.meta
    print(f"held-out: {meta['n_test']:,} tweets; trained on {meta['n_train']:,} in {meta['train_seconds']:.0f} s "
          f"({meta['mode']}, limit {meta['limit']})")
    print(f"{'model':<34}{'accuracy':>9}{'macro-F1':>10}")
    rows = [("ours", meta["metrics"])] + list(meta["baselines"].items())
    for name, m in rows:
        print(f"{name:<34}{m['accuracy']:>9.3f}{m['macro_f1']:>10.3f}")


if __name__ == "__main__":
    main()
