"""core.quantised: the int8 ONNX Runtime copies of the embedder and the sentiment model, exported for real from
the packaged and the trained models (no mocks), compared with torch, cached in the (test) model store and rebuilt
when their source changes; the runtime settings."""
import json

import numpy as np
import pytest
import torch

from core import (
    catalog,  # noqa: F401  (declares every model slot)
    chat,
    embeddings,
    quantised,
    sentiment,
)
from core.registry import registry

# Bounds measured on 2 cores (2026-12-03), with margin: embeddings' cosine to fp32 0.988 at the lowest of the 216
# retrieval texts (mean 0.994); sentiment labels agreed on 95% of 150 held-out tweets for the frozen-head model
# the tests train (its probabilities sit closer to each other than the fine-tuned model's).
MIN_COSINE, MIN_MEAN_COSINE, MIN_AGREEMENT, MAX_TOP1_DROP = 0.96, 0.985, 0.85, 0.05


def _fresh(slot: str, runtime: str, monkeypatch):
    monkeypatch.setenv(f"LAUNCHPAD_{slot.upper()}_RUNTIME", runtime)
    registry.unload(slot)
    return registry.get(slot)


@pytest.fixture(scope="module")
def embedder_pair():
    """(torch bundle, int8 bundle) of the packaged embedder; the int8 copy exported into the test store."""
    with pytest.MonkeyPatch.context() as mp:
        fp32 = _fresh("embedder", "torch", mp)
        int8 = _fresh("embedder", "int8", mp)
    return fp32, int8


def test_a_bad_runtime_setting_says_what_it_takes(monkeypatch):
    monkeypatch.setenv("LAUNCHPAD_SENTIMENT_RUNTIME", "fast")
    with pytest.raises(ValueError, match=r"LAUNCHPAD_SENTIMENT_RUNTIME = 'fast' is not valid: use one of: auto, int8, torch"):
        quantised.runtime("sentiment", "cpu")


def test_auto_serves_int8_on_cpu_and_torch_on_a_gpu(monkeypatch):
    monkeypatch.delenv("LAUNCHPAD_EMBEDDER_RUNTIME", raising=False)
    assert quantised.runtime("embedder", "cpu") == "int8"
    assert quantised.runtime("embedder", "cuda") == "torch" and quantised.runtime("embedder", "mps") == "torch"
    monkeypatch.setenv("LAUNCHPAD_EMBEDDER_RUNTIME", "torch")
    assert quantised.runtime("embedder", "cpu") == "torch"


@pytest.mark.slow
def test_the_int8_embedder_agrees_with_torch_and_keeps_retrieval(embedder_pair):
    fp32, int8 = embedder_pair
    assert int8.meta["runtime"] == "ONNX Runtime int8" and int8.dtype == "int8" and fp32.meta["runtime"] == "torch"
    texts = embeddings.retrieval_texts()
    a, b = embeddings.encode(fp32, texts), embeddings.encode(int8, texts)
    cosine = (a * b).sum(1)
    assert cosine.min() > MIN_COSINE and cosine.mean() > MIN_MEAN_COSINE
    before, after = embeddings.retrieval_top1(fp32, a), embeddings.retrieval_top1(int8, b)
    assert all(after[name] >= before[name] - MAX_TOP1_DROP for name in before), (before, after)


@pytest.mark.slow
def test_an_int8_embedding_does_not_depend_on_the_other_texts_in_its_batch(embedder_pair):
    _, int8 = embedder_pair
    texts = ["How do I reset my password?", "a much longer question about exporting every invoice as a CSV file",
             "refund"]
    alone = np.stack([embeddings.encode(int8, [t])[0] for t in texts])
    np.testing.assert_allclose(embeddings.encode(int8, texts), alone, atol=2e-5)


@pytest.mark.slow
def test_the_export_records_both_runtimes_and_is_reused_on_the_next_load(embedder_pair, monkeypatch):
    meta = json.loads((quantised.folder("embedder") / "meta.json").read_text())
    for variant in ("fp32", "int8"):
        assert meta[variant]["p50_ms"] > 0 and meta[variant]["texts_per_s"] > 0 and meta[variant]["bytes"] > 0
        assert set(meta[variant]["top1"]) == {"chat_eval", "chat_eval_fresh", "chat_eval_third"}
    assert meta["int8"]["bytes"] < meta["fp32"]["bytes"] / 3  # int8 weights: about a quarter of fp32
    assert meta["steps"]["fused"].get("Attention") and meta["export_seconds"] > 0
    monkeypatch.setattr(quantised, "build", lambda *a, **k: pytest.fail("the stored copy should have been reused"))
    again = _fresh("embedder", "auto", monkeypatch)
    assert again.meta["int8_created"] == meta["created"]
    assert registry.state("embedder").bytes == meta["int8"]["memory_bytes"] > 0
    slots = {row["slot"] for row in quantised.comparison()}
    assert "embedder" in slots and "faster" in quantised.summary("embedder")


@pytest.mark.slow
def test_retrieval_top1_scores_as_the_chatbot_retrieves(embedder_pair, monkeypatch):
    """embeddings.retrieval_top1 (used at export) against the chatbot's own search through the slot (int8: a text's
    embedding does not depend on its batch, so both see the same vectors)."""
    import pandas as pd

    from core import config

    assert registry.get("embedder").meta["runtime"] == "ONNX Runtime int8"
    monkeypatch.setattr(chat, "_INDEX_CACHE", {})
    kb = chat.sample_kb()
    ids = dict(zip(kb.entries.question, pd.read_csv(config.DATA_DIR / "faq_sample.csv").id))
    ours = embeddings.retrieval_top1(registry.get("embedder"))
    for name in embeddings.EVAL_SETS:
        evaluation = pd.read_csv(config.DATA_DIR / name)
        hits = [ids[kb.search(q, k=1)[0].question] == gold for q, gold in zip(evaluation.question, evaluation.faq_id)]
        assert ours[name.removesuffix(".csv")] == pytest.approx(np.mean(hits), abs=1e-9), name
    assert embeddings._without_product("Does Pennant's app work?") == chat._without_name("Does Pennant's app work?",
                                                                                         chat.SAMPLE_NAME)


@pytest.mark.slow
def test_the_setting_forces_torch(monkeypatch):
    bundle = _fresh("sentiment", "torch", monkeypatch)
    assert isinstance(bundle.model, torch.nn.Module) and bundle.meta["runtime"] == "torch"
    registry.unload("sentiment")


@pytest.mark.slow
def test_the_int8_sentiment_model_agrees_and_a_retrained_model_gets_its_own_copy(monkeypatch):
    bundle = _fresh("sentiment", "auto", monkeypatch)
    assert bundle.meta["runtime"] == "ONNX Runtime int8" and not isinstance(bundle.model, torch.nn.Module)
    first = json.loads((quantised.folder("sentiment") / "meta.json").read_text())
    trained = sentiment.stored_meta()
    assert first["n_test"] == trained["n_test"] and first["fp32"]["accuracy"] == trained["metrics"]["accuracy"]
    assert first["label_agreement"] >= MIN_AGREEMENT
    assert abs(first["int8"]["accuracy"] - first["fp32"]["accuracy"]) < 0.05
    probs = sentiment.predict(["@united thank you, the crew were wonderful", "@united lost my bag again"])
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    # a retrained model: new `created` in its meta (what a training run writes), so the copy is made again
    folder = sentiment.model_dir()
    (folder / "meta.json").write_text(json.dumps(trained | {"created": "2099-01-01T00:00:00+00:00"}))
    try:
        again = _fresh("sentiment", "auto", monkeypatch)
        second = json.loads((quantised.folder("sentiment") / "meta.json").read_text())
        assert second["key"] != first["key"] and second["key"].startswith("2099-01-01")
        assert again.meta["int8_created"] == second["created"]
        assert not list(quantised.folder("sentiment").parent.glob(".tmp-sentiment-int8-*"))
    finally:
        (folder / "meta.json").write_text(json.dumps(trained))
        registry.unload("sentiment")
