"""Sentiment scoring speed, ours (batched, length-sorted) next to a transformers pipeline called once
per text with the same model, in the same run; then fp32 torch against the int8 ONNX Runtime copy
(core/quantised.py) through the registry (median of --rounds), with both runtimes' held-out accuracy; then
the held-out accuracy figures; then accuracy per domain (each source's test split and our hand-written sentences
outside airlines) for VADER, the quick TF-IDF model, fp32 torch and int8. --second-opinion N: the language model's
second opinion (core/sentiment.py's JUDGE slot) per domain, alone and mixed with the served classifier at each
weight, on up to N texts of each source's test split (stratified) and all of the hand-written set.

Usage: python bench/sentiment.py [--texts 1000] [--rounds 3] [--domains-only] [--second-opinion 400]
       (trains the model first if the store has none)
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core import (  # noqa: E402
    catalog,  # noqa: F401  (declares every model slot)
    quantised,
    sentiment,
)
from core.registry import registry  # noqa: E402


def slot(runtime: str):
    """The sentiment slot loaded afresh with LAUNCHPAD_SENTIMENT_RUNTIME=runtime."""
    os.environ["LAUNCHPAD_SENTIMENT_RUNTIME"] = runtime
    registry.unload("sentiment")
    return registry.get("sentiment", progress=print)


def rate(texts: list[str]) -> float:
    started = time.perf_counter()
    sentiment.predict(texts)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--domains-only", action="store_true", help="only the accuracy per domain")
    parser.add_argument("--second-opinion", type=int, default=0, metavar="N",
                        help="only the language model's second opinion, on up to N texts per source")
    args = parser.parse_args()
    if args.domains_only:
        return domains()
    if args.second_opinion:
        return second_opinion(args.second_opinion)
    frame, _ = sentiment.dataset()
    _, test = sentiment.split(frame)
    texts = test.text.tolist()[: args.texts]
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    bundle = slot("torch")
    print(f"model: {bundle.meta['mode']} MiniLM on {bundle.device}, {torch.get_num_threads()} threads; "
          f"{len(texts)} held-out tweets\n")
    sentiment.predict(texts[:64])  # warm up

    from transformers import pipeline

    extractor = pipeline("feature-extraction", model=bundle.model.encoder, tokenizer=bundle.tokenizer,
                         device=bundle.device, tokenizer_kwargs={"truncation": True, "max_length": sentiment.MAX_TOKENS})
    head = bundle.model.head
    n_pipe = min(len(texts), 300)

    def pipeline_rate() -> tuple[float, list]:
        started = time.perf_counter()
        piped = []
        with torch.inference_mode():
            for text in texts[:n_pipe]:  # once per text, as a naive app would
                hidden = torch.tensor(extractor(text)[0])
                piped.append(head(hidden.mean(0)).softmax(-1).numpy())
        return n_pipe / (time.perf_counter() - started), piped

    rates = {"pipeline": [], "torch": [], "int8": []}
    p50 = {"torch": [], "int8": []}
    for _ in range(args.rounds):
        pipe, piped = pipeline_rate()
        rates["pipeline"].append(pipe)
        rates["torch"].append(rate(texts))
        p50["torch"].append(quantised.p50_ms(sentiment.predict))
    ours = sentiment.predict(texts)
    agree = np.mean(np.argmax(piped, 1) == ours[:n_pipe].argmax(1))
    torch_meta = bundle.meta

    int8 = slot("int8")
    sentiment.predict(texts[:64])
    for _ in range(args.rounds):
        rates["int8"].append(rate(texts))
        p50["int8"].append(quantised.p50_ms(sentiment.predict))
    int8_probs = sentiment.predict(texts)
    held_out = sentiment.training_frames(torch_meta.get("limit"))[1]
    int8_metrics = sentiment.metrics(held_out.label.tolist(), [sentiment.LABELS[i] for i in
                                                               sentiment.predict(held_out.text.tolist()).argmax(1)])
    median = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{'path':<60}{'texts/s':>9}   median of {args.rounds}: each round")
    rows = [("pipeline", "transformers pipeline, one call per text (fp32 torch)"),
            ("torch", f"ours, fp32 torch: batched ({sentiment.BATCH}), sorted by length"),
            ("int8", f"ours, int8 ONNX Runtime ({int8.meta['runtime']}), same path")]
    for key, label in rows:
        print(f"{label:<60}{median[key]:>9.1f}   {median[key] / median['pipeline']:.1f}x the pipeline  "
              f"[{', '.join(f'{r:.0f}' for r in rates[key])}]")
    print(f"one text through the slot, p50 (median of {args.rounds} x 25 calls): fp32 torch "
          f"{statistics.median(p50['torch']):.2f} ms, int8 {statistics.median(p50['int8']):.2f} ms")
    print(f"fp32 ours vs pipeline: same labels on {agree:.1%} of the {n_pipe} shared texts; int8 vs fp32 ours: "
          f"{np.mean(int8_probs.argmax(1) == ours.argmax(1)):.1%} of {len(texts)}")
    fp32_m = torch_meta["metrics"]
    print(f"held-out ({len(held_out):,} tweets): fp32 torch accuracy {fp32_m['accuracy']:.4f} macro-F1 "
          f"{fp32_m['macro_f1']:.4f}; int8 {int8_metrics['accuracy']:.4f} / {int8_metrics['macro_f1']:.4f} "
          f"(change {100 * (int8_metrics['accuracy'] - fp32_m['accuracy']):+.2f} points)")
    print(f"goals: int8 >= 4x the pipeline: {median['int8'] / median['pipeline']:.1f}x; accuracy loss <= 0.5 points: "
          f"{100 * (fp32_m['accuracy'] - int8_metrics['accuracy']):.2f}")
    export = quantised.exports().get("sentiment", {})
    if export:
        print(f"export: {export['export_seconds']} s; disk fp32 {export['fp32']['bytes'] / 1e6:.1f} MB, int8 "
              f"{export['int8']['bytes'] / 1e6:.1f} MB; memory fp32 weights {export['fp32']['memory_bytes'] / 1e6:.1f} MB,"
              f" int8 session {export['int8']['memory_bytes'] / 1e6:.1f} MB "
              f"({export['int8'].get('batch_memory_bytes', 0) / 1e6:.0f} MB after a batch)")
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")

    meta = torch_meta
    print(f"held-out: {meta['n_test']:,} tweets; trained on {meta['n_train']:,} in {meta['train_seconds']:.0f} s "
          f"({meta['mode']}, limit {meta['limit']})")
    print(f"{'model':<34}{'accuracy':>9}{'macro-F1':>10}")
    rows = [("ours", meta["metrics"])] + list(meta["baselines"].items())
    for name, m in rows:
        print(f"{name:<34}{m['accuracy']:>9.3f}{m['macro_f1']:>10.3f}")
    domains()


def domains() -> None:
    """Accuracy per domain: VADER, the quick model, fp32 torch and int8 on each evaluation set; the hand-written
    set also by kind of sentence (negation, sarcasm, ...) for the served model."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyser = SentimentIntensityAnalyzer()
    limit = slot("torch").meta.get("limit")
    sets = sentiment.evaluation_sets(limit)
    labels = {"VADER": lambda texts: [sentiment.vader_label(analyser, t) for t in texts]}

    def through(name: str):
        return lambda texts: [sentiment.LABELS[i] for i in sentiment.predict(texts, name).argmax(1)]

    registry.unload(sentiment.QUICK)
    registry.get(sentiment.QUICK, progress=print)
    labels["quick (TF-IDF + LR)"] = through(sentiment.QUICK)
    predicted = {name: {d: fn(frame.text.tolist()) for d, frame in sets.items()} for name, fn in labels.items()}
    for runtime in ("torch", "int8"):
        slot(runtime)
        predicted[f"ours, {runtime}"] = {d: through(sentiment.SLOT)(frame.text.tolist()) for d, frame in sets.items()}
    print(f"\naccuracy per domain (model trained on {slot_meta()['n_train']:,} texts, {slot_meta()['data']})")
    print(f"{'model':<22}" + "".join(f"{d[:30] + f' ({len(f):,})':>42}" for d, f in sets.items()))
    for name, by_set in predicted.items():
        cells = [sentiment.metrics(sets[d].label.tolist(), p) for d, p in by_set.items()]
        print(f"{name:<22}" + "".join(f"{'acc ' + format(m['accuracy'], '.4f') + ' F1 ' + format(m['macro_f1'], '.3f'):>42}"
                                      for m in cells))
    hand = next(d for d in sets if d.startswith("hand-written"))
    frame = sets[hand].assign(**{name: by_set[hand] for name, by_set in predicted.items()})
    print(f"\n{hand}, accuracy by kind of sentence")
    print(f"{'kind':<22}{'n':>4}" + "".join(f"{name:>22}" for name in predicted))
    for kind, group in frame.groupby("kind"):
        print(f"{kind:<22}{len(group):>4}" + "".join(f"{(group[name] == group.label).mean():>22.2f}" for name in predicted))


def second_opinion(n: int) -> None:
    """Accuracy per domain of the served classifier, the language model alone, and the two mixed at weights
    0.0 (classifier only) to 1.0 (language model only); JUDGE_WEIGHT is what the page and API use. Texts the
    language model gives no label count as the classifier's."""
    sets = {name: sentiment._subsample(frame, n) if not name.startswith("hand") else frame
            for name, frame in sentiment.evaluation_sets(slot_meta().get("limit")).items()}
    judge = registry.get(sentiment.JUDGE, progress=print)
    print(f"second opinion: {judge.model.name} ({judge.meta.get('runtime')}), mixed in at {sentiment.JUDGE_WEIGHT}")
    weights = [round(w, 1) for w in np.arange(0, 1.01, 0.1)]
    print(f"{'domain':<36}{'n':>6}{'s/text':>8}" + "".join(f"{w:>7}" for w in weights) + f"{'no label':>10}")
    for name, frame in sets.items():
        texts, truth = frame.text.tolist(), np.array([sentiment.LABELS.index(y) for y in frame.label])
        classifier = sentiment.predict(texts)
        started = time.perf_counter()
        opinions = [sentiment.second_opinion(t) for t in texts]
        per_text = (time.perf_counter() - started) / len(texts)
        cells = [np.mean([sentiment.combine(c, o, w).argmax() == y for c, o, y in zip(classifier, opinions, truth)])
                 for w in weights]
        print(f"{name[:35]:<36}{len(texts):>6}{per_text:>8.2f}" + "".join(f"{c:>7.3f}" for c in cells)
              + f"{sum(o is None for o in opinions):>10}", flush=True)


def slot_meta() -> dict:
    return registry.get("sentiment").meta


if __name__ == "__main__":
    main()
