"""int8 ONNX copies of our encoders, cached in the model store.

The `embedder` (all-MiniLM-L6-v2) and the fine-tuned `sentiment` model are exported to ONNX (the TorchScript
exporter with eager attention: that graph is the one ONNX Runtime's BERT optimizer fuses fully, into one
EmbedLayerNormalization, six Attention, SkipLayerNormalization and BiasGelu nodes; `dynamo=True` with SDPA
attention exports too, but its attention stays unfused), fused, and quantised to int8
with ONNX Runtime's dynamic quantisation (int8 weights per output channel, uint8 activations scaled per call;
per-tensor weights lost too much: embeddings' cosine to fp32 fell to 0.90). On CPU the slot serves that copy
through ONNX Runtime; on CUDA/MPS it serves torch. LAUNCHPAD_EMBEDDER_RUNTIME and LAUNCHPAD_SENTIMENT_RUNTIME
(auto|int8|torch) force either.

An export lives in `<store>/<slot>-int8/` (model.onnx + meta.json), written in one rename, and is rebuilt when
its source changes (`key`: the embedder's files, the trained sentiment model's `created` and data fingerprint).
At export, meta.json records fp32 torch against int8 ONNX Runtime on this machine: size on disk, memory, one
text's p50 latency, batch throughput, and the slot's quality figures (`comparison()` reads them for the pages).
The ONNX exporter and ONNX Runtime helpers the digits slot uses live here too (`quiet`, `session`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from core import config

VERSION = 1  # bump when the export or quantisation changes: every stored copy is rebuilt
MODEL, META = "model.onnx", "meta.json"
RUNTIMES = ("auto", "int8", "torch")
SLOTS = ("embedder", "sentiment")
TIMED_TEXT = "@united my flight was delayed three hours and nobody told us anything"


# --- ONNX helpers shared with the digits slot ------------------------------------------------------

@contextmanager
def quiet():
    """The ONNX exporter, optimizer and quantiser log advice (torchvision missing, "consider pre-processing",
    TorchScript deprecation) that is no use to a visitor; keep it out of the server's log."""
    names = ("", "torch.onnx", "torch.export", "onnxscript", "onnx_ir", "onnxruntime", "fusion", "onnx_model")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def session(path: Path, threads: int = 1, entries: dict[str, str] | None = None):
    """An ONNX Runtime CPU session with `threads` intra-op threads and its log kept to errors (`entries`: more
    session config entries, e.g. {"session.set_denormal_as_zero": "1"})."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    for key, value in (entries or {}).items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# --- which runtime a slot serves ----------------------------------------------------------------------

def runtime(slot: str, device: str) -> str:
    """"int8" or "torch" for the slot on `device`: LAUNCHPAD_<SLOT>_RUNTIME (auto: int8 on CPU, torch on
    CUDA/MPS). A value other than auto/int8/torch raises config's ValueError naming the setting."""
    chosen = config.setting(f"{slot}_runtime")
    if chosen == "auto":
        return "int8" if device == "cpu" else "torch"
    return chosen


def folder(slot: str) -> Path:
    """Where a slot's copy lives (`slot` may name a variant: "embedder-override" for a user's own encoder)."""
    return config.store_dir() / f"{slot}-int8"


def files_key(location: str | Path, commit: str | None = None) -> str:
    """A fingerprint of a model folder's files (names and contents), or of a hub id at a commit."""
    path = Path(location)
    if not path.is_dir():
        return f"hub:{location}@{commit or 'unknown'}"
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def stored(slot: str, key: str) -> dict | None:
    """The export's meta.json when the stored copy was made from source `key` by this VERSION, else None."""
    try:
        meta = json.loads((folder(slot) / META).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version") != VERSION or meta.get("key") != key or not (folder(slot) / MODEL).is_file():
        return None
    return meta


# --- the served model ---------------------------------------------------------------------------------

@dataclass
class Hidden:
    """What a transformers encoder returns, as far as our callers read it."""

    last_hidden_state: Any


class Int8Model:
    """The int8 ONNX Runtime session, called like the torch module it stands in for: the embedder's
    `model(input_ids=…, attention_mask=…, token_type_ids=…).last_hidden_state`, or the sentiment net's
    `model(input_ids, attention_mask)` → logits; torch tensors in and out. It has no torch parameters, so
    the registry counts its memory from the bundle's meta["bytes"]. It runs on the CPU only.

    Each text goes through the session alone, without padding: dynamic quantisation scales activations per
    call, so in a batch a text's result would depend on the other texts and their padding (cosine 0.984
    between one text alone and in a batch of 32), and micro-batching would make an answer depend on who else
    asked. The texts of a batch run side by side on `workers` threads over a one-thread session (ONNX Runtime
    releases the GIL): 1,000 tweets on 2 cores at 476-498 texts/s, against 334-371 one after another on a
    two-thread session and 270-280 on a one-thread session; one text's p50 2.6 ms against 2.2 and 2.7."""

    def __init__(self, sess, hidden: bool, workers: int = 1):
        self.session, self.hidden, self.workers = sess, hidden, workers
        self.inputs = [i.name for i in sess.get_inputs()]
        self._pool = None

    def __call__(self, input_ids, attention_mask, token_type_ids=None):
        import numpy as np
        import torch

        ids = input_ids.cpu().numpy().astype(np.int64)
        mask = attention_mask.cpu().numpy().astype(np.int64)
        given = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)
                 if token_type_ids is None else token_type_ids.cpu().numpy().astype(np.int64)}

        def one(i: int):
            keep = mask[i] > 0
            return self.session.run(None, {n: given[n][i:i + 1, keep] for n in self.inputs})[0][0]

        rows = list(self.pool().map(one, range(len(ids)))) if len(ids) > 1 and self.workers > 1 else \
            [one(i) for i in range(len(ids))]
        if not self.hidden:
            return torch.from_numpy(np.stack(rows))
        out = np.zeros((*ids.shape, rows[0].shape[-1]), np.float32)
        for i, row in enumerate(rows):
            out[i, mask[i] > 0] = row
        return Hidden(torch.from_numpy(out))

    def pool(self):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="int8")
        return self._pool

    def close(self) -> None:
        """The registry calls this when it unloads the slot."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def to(self, device=None, dtype=None, **_):
        if device is not None and str(device) != "cpu":
            raise RuntimeError("the int8 ONNX copy runs on the CPU only: set LAUNCHPAD_<SLOT>_RUNTIME=torch")
        return self

    def eval(self):
        return self


def threads() -> int:
    from core.registry import configure_threads

    return configure_threads()  # as many as torch uses: one per core, at most 8


def served(slot: str, hidden: bool, path: Path | None = None) -> Int8Model:
    """The slot's stored int8 copy (or `path`), ready to call: one-thread session, a worker per core."""
    return Int8Model(session(path or folder(slot) / MODEL, 1), hidden, workers=threads())


def serve_int8(slot: str, device: str, copy: str, key: Callable[[], str], make: Callable[[str], dict], progress,
               hidden: bool, meta: dict) -> Int8Model | None:
    """The int8 copy that serves `slot` on `device` (`copy` names its folder; made by `make(key)` first when it
    is missing or was made from another key), with `meta` updated to say so. None when torch serves: the
    runtime says torch, or the copy failed (ONNX Runtime missing, a failed export), recorded in
    meta["int8_error"], unless LAUNCHPAD_<SLOT>_RUNTIME=int8 forces it, when the error is raised."""
    if runtime(slot, device) != "int8":
        return None
    try:
        made_from = key()
        info = ensure(copy, made_from, lambda: make(made_from), progress)
        model = served(copy, hidden)
    except Exception as exc:
        if config.setting(f"{slot}_runtime") == "int8":
            raise
        meta["int8_error"] = f"{type(exc).__name__}: {exc}"[:300]
        return None
    meta.update(bundle_meta(info))
    return model


def bundle_meta(info: dict) -> dict:
    """What the int8 bundle's meta adds: its runtime, and the bytes the registry counts against its budget."""
    return {"runtime": "ONNX Runtime int8", "bytes": info["int8"].get("memory_bytes") or info["int8"]["bytes"],
            "int8_created": info.get("created")}


def weight_files(location: str | Path) -> list[Path]:
    """The weight files of a model folder (what fp32 takes on disk); none for a hub id."""
    path = Path(location)
    return sorted(f for f in path.glob("*") if f.suffix in (".safetensors", ".bin", ".pt")) if path.is_dir() else []


# --- export -----------------------------------------------------------------------------------------

def hidden_states(encoder):
    """The transformers encoder as a module (input_ids, attention_mask, token_type_ids) → last hidden state."""
    import torch

    class HiddenStates(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state

    return HiddenStates().eval()


def export_fp32(module, encoder, names: list[str], output: str, path: Path) -> None:
    """`module` (taking the int64 inputs `names`, batch and tokens dynamic) → fp32 ONNX at `path`. `encoder` is
    the transformers model inside it: exported with eager attention, the graph the BERT optimizer fuses."""
    import torch

    sample = torch.tensor([[101, 7592, 2088, 102, 0], [101, 1037, 2936, 6251, 102]])
    inputs = {"input_ids": sample, "attention_mask": (sample > 0).long(), "token_type_ids": torch.zeros_like(sample)}
    was = encoder.config._attn_implementation
    with quiet():
        encoder.set_attn_implementation("eager")
        try:
            with torch.inference_mode():
                torch.onnx.export(module, tuple(inputs[n] for n in names), str(path), dynamo=False, opset_version=17,
                                  input_names=names, output_names=[output],
                                  dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, output]})
        finally:
            encoder.set_attn_implementation(was)


def fuse(fp32: Path, out: Path, encoder_config, options=None) -> dict[str, int]:
    """ONNX Runtime's BERT optimizer on `fp32` → `out` (`options`: its FusionOptions, else its defaults); returns
    how many of each fused operator it made."""
    from onnxruntime.transformers.optimizer import optimize_model

    with quiet():
        optimised = optimize_model(str(fp32), model_type="bert", num_heads=encoder_config.num_attention_heads,
                                   hidden_size=encoder_config.hidden_size, opt_level=0, optimization_options=options)
        optimised.save_model_to_file(str(out))
    return {k: v for k, v in optimised.get_fused_operator_statistics().items() if v}


def quantise_dynamic(src: Path, out: Path) -> None:
    """Dynamic int8: int8 weights per output channel, uint8 activations scaled per call."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet():
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def export_int8(module, encoder, names: list[str], output: str, work: Path) -> tuple[Path, dict]:
    """`module` → fp32 ONNX → fused → int8 (the three steps above). Returns the int8 file (in `work`) and what
    each step did and took."""
    steps: dict[str, Any] = {}
    fp32, fused, int8 = work / "fp32.onnx", work / "fused.onnx", work / MODEL
    started = time.perf_counter()
    export_fp32(module, encoder, names, output, fp32)
    steps["export_s"] = round(time.perf_counter() - started, 2)
    steps["fp32_onnx_bytes"] = fp32.stat().st_size
    mark = time.perf_counter()
    steps["fused"] = fuse(fp32, fused, encoder.config)
    steps["optimise_s"] = round(time.perf_counter() - mark, 2)
    mark = time.perf_counter()
    quantise_dynamic(fused, int8)
    steps["quantise_s"] = round(time.perf_counter() - mark, 2)
    fp32.unlink()
    fused.unlink()
    return int8, steps


# --- measuring fp32 torch against int8 ONNX Runtime ----------------------------------------------------

SESSION_MEMORY = """
import sys, numpy, onnxruntime, psutil
def run(batch, tokens):
    ids = numpy.full((batch, tokens), 1000, numpy.int64)
    s.run(None, {i.name: (ids if i.name == "input_ids" else numpy.ones_like(ids)) for i in s.get_inputs()})
    return psutil.Process().memory_info().rss - before
before = psutil.Process().memory_info().rss
o = onnxruntime.SessionOptions(); o.intra_op_num_threads = int(sys.argv[2]); o.log_severity_level = 3
s = onnxruntime.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
print(run(1, 16), run(32, 64))
"""


def session_memory(path: Path) -> tuple[int, int]:
    """Resident bytes an ONNX Runtime session of `path` adds: after one short text (weights, prepacked, and
    the runtime) and after a batch of 32 texts of 64 tokens (its arena keeps that batch's activations).
    Measured in a fresh process (in this one, memory the export freed is reused and hides it); 0s on failure."""
    import subprocess
    import sys

    try:
        out = subprocess.run([sys.executable, "-c", SESSION_MEMORY, str(path), "1"], capture_output=True, text=True,
                             timeout=120)
        one, batch = out.stdout.split()[-2:]
        return int(one), int(batch)
    except (subprocess.SubprocessError, ValueError, OSError):
        return 0, 0


def p50_ms(fn: Callable[[list[str]], Any], text: str = TIMED_TEXT, calls: int = 25) -> float:
    """Median milliseconds of one call on one text (after three warm-up calls)."""
    for _ in range(3):
        fn([text])
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        fn([text])
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def throughput(fn: Callable[[list[str]], Any], texts: list[str]) -> float:
    """Texts a second for one call on all of `texts` (the callers batch and sort by length themselves)."""
    fn(texts[:8])
    started = time.perf_counter()
    fn(texts)
    return round(len(texts) / (time.perf_counter() - started), 1)


def speed(fn: Callable[[list[str]], Any], texts: list[str]) -> dict:
    return {"p50_ms": p50_ms(fn), "texts_per_s": throughput(fn, texts), "batch_texts": len(texts)}


def torch_bytes(module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def build(slot: str, key: str, source: str, module, encoder, names: list[str], output: str, hidden: bool,
          fp32_files: list[Path], measure: Callable[[Int8Model], dict]) -> dict:
    """Export `module` (fp32 torch, on the CPU), quantise, measure and store the slot's int8 copy in one rename;
    returns its meta.json. `measure(int8_model)` returns {"fp32": {...}, "int8": {...}, ...} with the slot's
    p50_ms, texts_per_s and quality, for the torch module and the int8 copy."""
    started = time.perf_counter()
    with config.replacing_folder(folder(slot), f"{slot}-int8") as tmp:
        path, steps = export_int8(module, encoder, names, output, tmp)
        model = served(slot, hidden, path)
        figures = measure(model)
        model.close()
        meta = {"version": VERSION, "slot": slot, "key": key, "source": source,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "quantisation": "ONNX Runtime dynamic int8 (per-channel int8 weights, uint8 activations), "
                                "after the BERT optimizer's fusion",
                "steps": steps, "export_seconds": round(time.perf_counter() - started, 1),
                "measured_on": {"cpus": os.cpu_count(), "workers": threads(),
                                "load_average": round(os.getloadavg()[0], 2)}, **figures}
        meta["fp32"] |= {"runtime": "torch", "bytes": sum(f.stat().st_size for f in fp32_files),
                         "memory_bytes": torch_bytes(module)}
        one, batch = session_memory(path)
        meta["int8"] |= {"runtime": "ONNX Runtime", "bytes": path.stat().st_size, "memory_bytes": one,
                         "batch_memory_bytes": batch}
        (tmp / META).write_text(json.dumps(meta, indent=1))
    return meta


def ensure(slot: str, key: str, make: Callable[[], dict], progress) -> dict:
    """The slot's export meta: the stored copy when it was made from `key`, else `make()` builds one now."""
    meta = stored(slot, key)
    if meta is None:
        progress(f"Making the int8 ONNX Runtime copy of the {slot} model (once per model, seconds)")
        meta = make()
    return meta


def classifier_figures(probabilities: Callable[[Any, list[str]], Any], fp32_model, int8_model, texts: list[str],
                       labels: list[str], names: tuple[str, ...], metrics: Callable[[list, list], dict],
                       fp32_metrics: dict, sample: int = 256) -> dict:
    """A classifier's figures: int8's accuracy and macro-F1 on every held-out text; fp32's as measured when it
    was trained (the same texts); the share of the first `sample` texts both label alike; speed on those."""
    few = texts[:sample]
    int8_probs = probabilities(int8_model, texts)
    ours = metrics(labels, [names[i] for i in int8_probs.argmax(1)])
    agree = (probabilities(fp32_model, few).argmax(1) == int8_probs[:len(few)].argmax(1)).mean()
    pick = ("accuracy", "macro_f1")
    return {"fp32": speed(lambda t: probabilities(fp32_model, t), few) | {k: fp32_metrics.get(k) for k in pick},
            "int8": speed(lambda t: probabilities(int8_model, t), few) | {k: ours[k] for k in pick},
            "label_agreement": round(float(agree), 4), "n_test": len(texts), "n_agreement": len(few)}


# --- what the pages show ------------------------------------------------------------------------------

QUALITY = {"embedder": ("retrieval top-1 (mean of the chat sets)", "top1_mean"),
           "sentiment": ("held-out accuracy", "accuracy")}


def exports() -> dict[str, dict]:
    """Each slot's stored export meta (slots never exported on this machine are left out)."""
    found = {}
    for slot in SLOTS:
        try:
            found[slot] = json.loads((folder(slot) / META).read_text())
        except (OSError, ValueError):
            continue
    return found


def comparison() -> list[dict]:
    """One row per slot and runtime (fp32 torch, int8 ONNX Runtime), figures as measured at export."""
    rows = []
    for slot, meta in exports().items():
        label, field = QUALITY[slot]
        for variant in ("fp32", "int8"):
            m = meta.get(variant, {})
            rows.append({"slot": slot, "variant": variant, "runtime": m.get("runtime"),
                         "size_mb": m.get("bytes", 0) / 1e6, "memory_mb": m.get("memory_bytes", 0) / 1e6,
                         "p50_ms": m.get("p50_ms"), "texts_per_s": m.get("texts_per_s"),
                         "quality": m.get(field), "quality_name": label, "macro_f1": m.get("macro_f1"),
                         "created": meta.get("created"), "load_average": meta.get("measured_on", {}).get("load_average")})
    return rows


def summary(slot: str) -> str:
    """One plain sentence for a business reader: how much faster and smaller, and what quality changed."""
    meta = exports().get(slot)
    if not meta:
        return ""
    fp32, int8 = meta["fp32"], meta["int8"]
    label, field = QUALITY[slot]
    change = (int8.get(field, 0) - fp32.get(field, 0)) * 100
    changed = "did not change" if abs(change) < 0.05 else f"changed by {change:+.1f} points"
    return (f"The int8 copy answers one text {fp32['p50_ms'] / int8['p50_ms']:.1f}x faster, scores "
            f"{int8['texts_per_s'] / fp32['texts_per_s']:.1f}x as many texts a second and is "
            f"{fp32['bytes'] / int8['bytes']:.1f}x smaller on disk; {label} {changed}.")


def gains(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per slot, int8 against fp32 as factors where higher is better: smaller on disk, less memory, faster for
    one text (p50), more texts a second."""
    out = {}
    for slot in dict.fromkeys(r["slot"] for r in rows):
        fp32, int8 = ({r["variant"]: r for r in rows if r["slot"] == slot}.get(v, {}) for v in ("fp32", "int8"))
        pairs = {"Smaller on disk": (fp32.get("size_mb"), int8.get("size_mb")),
                 "Less memory": (fp32.get("memory_mb"), int8.get("memory_mb")),
                 "Faster, one text (p50)": (fp32.get("p50_ms"), int8.get("p50_ms")),
                 "Throughput": (int8.get("texts_per_s"), fp32.get("texts_per_s"))}
        out[slot] = {name: round(a / b, 2) for name, (a, b) in pairs.items() if a and b}
    return out


def details_markdown() -> str:
    """How each stored copy was made and measured, for the pages' expander."""
    lines = []
    for slot, meta in exports().items():
        steps, on = meta.get("steps", {}), meta.get("measured_on", {})
        fused = ", ".join(f"{v} {k}" for k, v in steps.get("fused", {}).items()) or "none"
        if slot == "embedder":
            quality = (f"retrieval top-1 per chat evaluation set fp32 {meta['fp32'].get('top1')} vs int8 "
                       f"{meta['int8'].get('top1')}; cosine to fp32 over {meta.get('n_cosine')} texts: lowest "
                       f"{meta.get('cosine_min')}, mean {meta.get('cosine_mean')}")
        else:
            quality = (f"held-out accuracy / macro-F1 on {meta.get('n_test')} tweets: fp32 "
                       f"{meta['fp32'].get('accuracy'):.3f} / {meta['fp32'].get('macro_f1'):.3f} (measured at "
                       f"training), int8 {meta['int8'].get('accuracy'):.3f} / {meta['int8'].get('macro_f1'):.3f}; "
                       f"the same label on {meta.get('label_agreement', 0):.1%} of {meta.get('n_agreement')}")
        lines.append(
            f"- **{slot}** (made {meta.get('created')}, in {meta.get('export_seconds')} s: export "
            f"{steps.get('export_s')} s, fusion {steps.get('optimise_s')} s, quantisation {steps.get('quantise_s')} s). "
            f"{meta.get('quantisation')}; fused: {fused}. Measured then on {on.get('cpus')} CPU cores, "
            f"{on.get('workers')} int8 workers, load average {on.get('load_average')}: one text's p50 over 25 calls, "
            f"throughput over {meta['int8'].get('batch_texts')} texts. Memory: fp32 is torch's weights and buffers; "
            f"int8 the session's resident size after one text "
            f"({(meta['int8'].get('batch_memory_bytes') or 0) / 1e6:.0f} MB once it has run a batch of 32 texts of "
            f"64 tokens: its arena keeps the activations). Quality: {quality}.")
    return "\n".join(lines) + ("\n\nEach text runs through the int8 session alone (no padding), so its result does not "
                               "depend on the other texts batched with it. `bench/embeddings.py` and "
                               "`bench/sentiment.py` measure the same on a quiet machine, median of 3.")
