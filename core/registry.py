"""The model registry: the one way any page obtains a model.

One `Registry` per process (`core.registry.registry`), shared by every browser session. Each module
that owns a model declares its slot beside its loader (`registry.declare(SlotSpec(...))`);
`core.catalog` imports all of them. The registry

* loads each slot at most once, however many threads ask at the same moment (they wait for it),
  and afterwards returns the same object from a lock-free fast path;
* picks the device and dtype in one place (`pick_device`, `pick_dtype`): CUDA, then Apple MPS,
  then CPU, half precision on GPUs where the slot allows it; a slot can be forced to a device;
* falls back to CPU when CUDA runs out of memory while loading or running, and records why;
* keeps resident weights under a memory budget by evicting the least recently used idle slot;
* keeps per-slot stats, read as a typed snapshot (`state(slot)` -> `SlotState`), updated in one place
  (the bookkeeping methods at the end of `Registry`), and tells `on_call` listeners about each model call;
* coalesces concurrent small requests from different sessions into one batched call (`batched`);
* turns every failure into a `SlotError` that names the slot, the source it tried and the fix,
  without touching any other slot.

`python -m core.catalog` prints every slot with its source, licence and offline availability.
"""
from __future__ import annotations

import gc
import os
import queue
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable

from core import config


class State(StrEnum):
    NOT_LOADED = "not loaded"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


NOT_LOADED, LOADING, READY, FAILED = State


class Kind(StrEnum):
    """What a `Source` points at."""

    FILE = "file"  # a file on disk (a GGUF, a state_dict)
    FOLDER = "folder"  # a folder on disk (transformers layout, or one our code wrote)
    HUB = "hub"  # a Hugging Face model id
    STORE = "store"  # the model store, where our own code trains the model from packaged data
    ENDPOINT = "endpoint"  # the base URL of an OpenAI-compatible server


class Origin(StrEnum):
    """Why a slot uses a source."""

    DEFAULT = "default"  # the slot's offline default
    CHOICE = "choice"  # a packaged alternative, picked by name
    OVERRIDE = "override"  # a file, folder, hub id or URL the user set

RETRY_AFTER_S = 30.0  # a failed load is answered from memory this long, then tried again
QUIET_WAIT_S, QUIET_POLL_S = 300.0, 0.5  # prepare(after_others=True): the longest wait for other loads; how often it looks
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")

Progress = Callable[..., None]  # progress(message, fraction=None): what a load is doing, and how far (0..1) it is


@dataclass(frozen=True)
class Source:
    """Where a slot's weights come from (see `Kind`) and why (see `Origin`)."""

    kind: Kind
    location: str
    origin: Origin = Origin.DEFAULT
    parts: tuple[str, ...] = ()  # packages whose data files are joined into `location` on first load

    def __str__(self) -> str:
        return self.location


@dataclass
class ModelBundle:
    """What a loader returns and `get` hands out: the model plus what is needed to run it."""

    model: Any
    tokenizer: Any = None
    meta: dict = field(default_factory=dict)
    device: str = "cpu"
    dtype: str = "float32"

    def to(self, device: str, dtype=None) -> None:
        import torch

        dtype = dtype or torch.float32
        self.model.to(device=device, dtype=dtype)
        self.device, self.dtype = device, str(dtype).removeprefix("torch.")

    def size(self) -> tuple[int, int]:
        """(parameters, bytes of parameters and buffers) of the torch module, if it is one."""
        model = self.model
        if not hasattr(model, "parameters"):  # not torch (scikit-learn): the loader may say its size on disk
            return 0, int(self.meta.get("bytes", 0))
        params = sum(p.numel() for p in model.parameters())
        nbytes = sum(t.numel() * t.element_size() for t in model.parameters())
        nbytes += sum(b.numel() * b.element_size() for b in model.buffers())
        return params, nbytes


@dataclass(frozen=True)
class Choice:
    """A packaged model a slot can be switched to by name (`LAUNCHPAD_CHAT_LM=qwen2.5-1.5b`)."""

    key: str
    model: str
    licence: str
    provenance: str
    resolve: Callable[[], Source]


@dataclass(frozen=True)
class SlotSpec:
    """A named model slot. `default` resolves the offline default source (raising SlotError with a
    fix when it is missing); `loader(source, device, dtype, progress)` returns a ModelBundle."""

    name: str
    title: str
    task: str
    model: str  # the model's short name, for cards and captions
    default: Callable[[], Source]
    loader: Callable[[Source, str, Any, Progress], ModelBundle]
    licence: str
    provenance: str
    half_precision: bool = True
    warmup: Callable[[ModelBundle], None] | None = None
    choices: tuple[Choice, ...] = ()  # packaged alternatives, by name
    endpoints: bool = False  # whether an http(s) URL (an OpenAI-compatible server) is a valid source

    def choice(self, key: str | None) -> Choice | None:
        return next((c for c in self.choices if c.key == (key or "").strip().lower()), None)


class SlotError(RuntimeError):
    """A slot could not load or run. Says which slot, which source, why, and how to fix it."""

    def __init__(self, slot: str, source: str, reason: str, fix: str):
        self.slot, self.source, self.reason, self.fix = slot, source, reason, fix
        super().__init__(f"Model slot '{slot}' could not load from {source}: {reason}. Fix: {fix}")


@dataclass
class _Entry:
    state: str = NOT_LOADED
    bundle: ModelBundle | None = None
    error: SlotError | None = None
    source: str = ""
    load_seconds: float | None = None
    params: int = 0
    bytes: int = 0
    calls: int = 0
    errors: int = 0
    loads: int = 0
    in_use: int = 0
    last_used: float = 0.0
    progress: str = ""
    progress_fraction: float | None = None  # how far the load is (0..1), where the loader says
    fallback: str = ""
    last_error: str = ""
    failed_at: float = 0.0
    latencies: deque = field(default_factory=lambda: deque(maxlen=1000))  # per request, seconds
    batch_sizes: deque = field(default_factory=lambda: deque(maxlen=1000))  # requests per model call
    warmup_seconds: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    preparer: threading.Thread | None = None  # the background load prepare() started, while it runs


@dataclass(frozen=True)
class SlotState:
    """A snapshot of one slot, as the Models page, the sidebar and /metrics read it."""

    slot: str
    title: str
    task: str
    state: State
    device: str  # "" while not loaded; "remote" for a model served elsewhere
    dtype: str
    parameters: int
    bytes: int  # resident weights (a server child process: its file size)
    load_seconds: float | None  # loading the weights, training excluded
    train_seconds: float | None  # training it took before this load (models our code trains), else None
    loads: int
    calls: int  # requests served (a batched model call serves several)
    errors: int  # requests that raised
    p50_ms: float | None  # per request, over the last 1,000
    p95_ms: float | None
    mean_batch: float | None  # requests per model call
    queue_depth: int  # requests waiting for or inside a model call now
    warmup_seconds: float | None
    last_error: str
    fallback: str  # why it runs somewhere other than asked (CUDA out of memory, no GPU)
    progress: str
    progress_fraction: float | None  # 0..1 where the loader says (training), else None
    source: str
    model: str
    runtime: str
    licence: str
    provenance: str

    def in_words(self) -> str:
        """The slot's health for a non-engineer: is it there, is it well, how long a visitor waits."""
        if self.state == FAILED:
            return f"Not working: {self.last_error or 'its load failed'}. The Load button tries again."
        if self.state == LOADING:
            return f"Getting ready: {self.progress or 'loading'}. Visitors who need it wait meanwhile."
        if self.state == NOT_LOADED:
            return "Not loaded yet: it loads the first time a visitor needs it, or press Load."
        served = f"{self.calls:,} request{'s' if self.calls != 1 else ''} served"
        errors = f", {self.errors:,} failed" if self.errors else ""
        wait = f"; a typical answer takes {_duration(self.p50_ms)}" if self.p50_ms is not None else ""
        return f"Ready: {served}{errors}{wait}."


def _duration(ms: float) -> str:
    return f"{ms:,.0f} ms" if ms < 1000 else f"{ms / 1000:,.1f} s"


class Counted:
    """Stands in for a slot's model object (registry.counted): attributes are the model's, and calling one of its
    methods is a registry.run(), so the Models page counts the call and its latency."""

    def __init__(self, registry: Registry, slot: str):
        self._registry, self._slot = registry, slot

    def __getattr__(self, attribute: str):
        value = getattr(self._registry.get(self._slot).model, attribute)
        if not callable(value):
            return value
        return lambda *args, **kwargs: self._registry.run(
            self._slot, lambda bundle: getattr(bundle.model, attribute)(*args, **kwargs))


CallListener = Callable[[str, float, int, bool], None]  # (slot, seconds, batch size, failed), once per model call

_IMPORT_LOCK = threading.Lock()
_HF_NAMES = ("AutoModel", "AutoTokenizer", "AutoModelForCausalLM", "AutoModelForSequenceClassification",
             "AutoModelForImageClassification", "AutoImageProcessor", "TextIteratorStreamer", "StoppingCriteria",
             "StoppingCriteriaList", "pipeline")


def import_transformers():
    """transformers resolves its names lazily, and threads resolving them at the same moment can fail
    ("cannot import name 'AutoModel' from 'transformers'", seen with 20 visitors arriving at once).
    Every loader that uses transformers calls this first: it resolves all the names we use, once, under a lock."""
    with _IMPORT_LOCK:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
        import transformers

        for name in _HF_NAMES:
            getattr(transformers, name)
        return transformers


# --- device and dtype: the one place they are chosen -------------------------------------------

def pick_device(forced: str | None = None) -> tuple[str, str]:
    """(device, note). `forced` is cuda[:N] | mps | cpu | auto; an unavailable choice falls back."""
    import torch

    forced = (forced or "auto").strip().lower()
    has_cuda = torch.cuda.is_available()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if forced == "cpu":
        return "cpu", "forced to CPU"
    if forced.startswith("cuda"):
        return (forced, "forced") if has_cuda else ("cpu", f"{forced} was asked for but CUDA is not available")
    if forced == "mps":
        return ("mps", "forced") if has_mps else ("cpu", "mps was asked for but MPS is not available")
    if forced != "auto":
        raise ValueError(f"unknown device '{forced}': use cuda, mps, cpu or auto")
    if has_cuda:
        return "cuda", ""
    if has_mps:
        return "mps", ""
    return "cpu", ""


_THREADS_SET = False


def configure_threads() -> int:
    """torch's CPU threads, once per process: one per core up to 8 (LAUNCHPAD_TORCH_THREADS overrides).
    Beyond about 8, small models gain little and many sessions contend for the same cores; with
    micro-batching one worker per slot does the work, so intra-op threads are what count."""
    global _THREADS_SET
    import torch

    if not _THREADS_SET:
        threads = config.setting("torch_threads") or max(1, min(os.cpu_count() or 1, 8))
        torch.set_num_threads(threads)
        _THREADS_SET = True
    return torch.get_num_threads()


def pick_dtype(device: str, half_precision: bool):
    """bf16 on CUDA cards that support it, else fp16 on GPUs; fp32 on CPU (this CPU has no fast bf16)."""
    import torch

    if not half_precision or device == "cpu":
        return torch.float32
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16


def _is_oom(exc: BaseException, device: str) -> bool:
    import torch

    if device == "cpu":
        return False
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, oom) or "out of memory" in str(exc).lower()


def _free_accelerator_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def available_offline(source: Source) -> bool:
    """Whether a source can load with no network: a file or folder that exists, or a cached hub id."""
    if source.kind == Kind.ENDPOINT:
        return False  # a server elsewhere
    if source.kind == Kind.STORE:
        return True  # trained on this machine from packaged data (its default() checked the data is there)
    if source.parts:
        return all(config.package_dir(p) is not None for p in source.parts)
    if source.kind in (Kind.FILE, Kind.FOLDER):
        return Path(source.location).exists()
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(source.location, local_files_only=True)
        return True
    except Exception:
        return False


def packaged(slot: str, package: str, relative: str, install: str) -> Source:
    """The default source: a file or folder inside an installed package, or a SlotError saying so."""
    root = config.package_dir(package)
    path = root / relative if root else None
    if path is None or not path.exists():
        raise SlotError(slot, f"{package}/{relative}", f"the package '{package}' is not installed",
                        f"run `make setup` (it runs `{install}`), or set LAUNCHPAD_{slot.upper()} "
                        "to a Hugging Face id or local folder")
    return Source(Kind.FOLDER if path.is_dir() else Kind.FILE, str(path))


def override_folder(source: Source, required: str, written_by: str) -> Path:
    """The folder an override source names on disk, or the snapshot of the Hugging Face repository it
    names; FileNotFoundError when `required` (the file `written_by` writes) is not in it."""
    folder = Path(source.location)
    if source.kind == Kind.HUB:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(source.location))
    if not (folder / required).is_file():
        raise FileNotFoundError(f"{folder} has no {required} (a folder written by {written_by})")
    return folder


# --- the registry ------------------------------------------------------------------------------

class Registry:
    def __init__(self, specs: list[SlotSpec] = (), memory_budget_mb: float | None = None):
        self._specs: dict[str, SlotSpec] = {}
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()  # guards eviction, in_use counts and the slot table
        self._budget_mb = memory_budget_mb
        self._batchers: dict[tuple, _Batcher] = {}
        self._listeners: list[CallListener] = []
        self.batching = config.setting("batching")
        for spec in specs:
            self.declare(spec)

    # what there is
    def declare(self, spec: SlotSpec) -> SlotSpec:
        """Add a slot (each module that owns a model declares its own at import). Declaring a name again
        replaces its spec and keeps what is loaded."""
        with self._lock:
            self._specs[spec.name] = spec
            self._entries.setdefault(spec.name, _Entry())
        return spec

    def slots(self) -> list[str]:
        return list(self._specs)

    def specs(self) -> list[SlotSpec]:
        return list(self._specs.values())

    def spec(self, name: str) -> SlotSpec:
        if name not in self._specs:
            raise KeyError(f"no model slot named '{name}'; slots: {', '.join(self._specs)}"
                           " (import core.catalog to declare them all)")
        return self._specs[name]

    @property
    def memory_budget_bytes(self) -> float:
        mb = self._budget_mb if self._budget_mb is not None else config.setting("memory_budget_mb")
        return mb * 1024 * 1024

    def on_call(self, listener: CallListener) -> None:
        """Call listener(slot, seconds, batch size, failed) after every model call (the /metrics route)."""
        self._listeners.append(listener)

    def source(self, name: str) -> Source:
        """The override (env var or config file) if one is set, else the slot's offline default."""
        spec = self.spec(name)
        override = config.slot_setting(name, "source")
        if not override:
            return spec.default()
        if (choice := spec.choice(override)) is not None:
            return replace(choice.resolve(), origin=Origin.CHOICE)
        if override.lower().startswith(("http://", "https://")):
            if spec.endpoints:
                return Source(Kind.ENDPOINT, override, Origin.OVERRIDE)
            raise SlotError(name, override, "this slot runs its model in the app; only chat slots can use a server",
                            f"set LAUNCHPAD_{name.upper()} to a folder or a Hugging Face id, or unset it")
        path = Path(override).expanduser()
        if path.exists():
            return Source(Kind.FOLDER if path.is_dir() else Kind.FILE, str(path), Origin.OVERRIDE)
        if HUB_ID.match(override):
            return Source(Kind.HUB, override, Origin.OVERRIDE)
        raise SlotError(
            name, override, "the override is neither an existing file or folder nor a Hugging Face model id",
            f"set LAUNCHPAD_{name.upper()} (or [models.{name}] source in launchpad.toml) to a folder that "
            "exists or an id like 'org/model'" + (", one of " + ", ".join(c.key for c in spec.choices) if spec.choices
                                                 else "") + (", or a server's URL" if spec.endpoints else "")
            + ", or unset it to use the offline default",
        )

    def describe(self, name: str) -> tuple[str, str, str]:
        """(model, licence, provenance) of what the slot is set to: its default, a packaged choice, or an
        override (a file, folder, hub id or server, whose licence is its model card's)."""
        spec = self.spec(name)
        choice = spec.choice(config.slot_setting(name, "source"))
        if choice is not None:
            return choice.model, choice.licence, choice.provenance
        try:
            src = self.source(name)
        except SlotError:
            return spec.model, spec.licence, spec.provenance
        if src.origin != Origin.OVERRIDE:
            return spec.model, spec.licence, spec.provenance
        if src.kind == Kind.ENDPOINT:
            served = config.slot_setting(name, "model") or "the server's first model"
            return served, "see the server's model card", f"{served} served by the OpenAI-compatible server {src.location}"
        short = src.location if src.kind == Kind.HUB else Path(src.location).name
        return short, f"override {src.location}: see its model card for the licence", f"override: {src.location}"

    def model_name(self, name: str) -> str:
        return self.describe(name)[0]

    def licence(self, name: str) -> str:
        return self.describe(name)[1]

    # getting models
    def get(self, name: str, progress: Progress | None = None) -> ModelBundle:
        """The slot's model, loading it on first use. Thread-safe; later calls take the fast path."""
        entry = self._entries.get(name)
        if entry is not None and entry.bundle is not None:
            entry.last_used = time.monotonic()
            return entry.bundle
        return self._load(name, progress, retry=False)

    def load(self, name: str, progress: Progress | None = None) -> ModelBundle:
        """Like get, but retries a slot that failed before (the Models page's Load button)."""
        return self._load(name, progress, retry=True)

    def _load(self, name: str, progress: Progress | None, retry: bool) -> ModelBundle:
        spec, entry = self.spec(name), self._entries[name]
        with entry.lock:  # one loader per slot; concurrent callers wait here for its result
            if entry.bundle is not None:
                entry.last_used = time.monotonic()
                return entry.bundle
            recent = time.monotonic() - entry.failed_at < RETRY_AFTER_S
            if entry.state == FAILED and entry.error is not None and recent and not retry:
                raise entry.error  # pages rerun often: do not retry a broken load on every rerun

            def report(message: str, fraction: float | None = None) -> None:
                self._note(entry, progress=message, progress_fraction=fraction)
                if progress is not None:
                    progress(message)

            self._loading(entry)
            started = time.perf_counter()
            try:
                bundle = self._load_bundle(spec, entry, report)
            except SlotError as exc:
                self._failed(entry, exc)
                raise
            except BaseException:  # the caller's thread was stopped mid-load (Streamlit's StopException)
                self._unloaded(entry)
                raise
            self._loaded(entry, bundle, time.perf_counter() - started)
        self._evict_for(name)
        return bundle

    def _load_bundle(self, spec: SlotSpec, entry: _Entry, report: Progress) -> ModelBundle:
        source = self.source(spec.name)  # raises SlotError for a bad override
        self._note(entry, source=f"{source.location} ({source.origin})")
        try:
            device, note = pick_device(config.slot_setting(spec.name, "device") or config.setting("device"))
        except ValueError as exc:
            raise SlotError(spec.name, entry.source, str(exc),
                            f"set LAUNCHPAD_{spec.name.upper()}_DEVICE to cuda, mps, cpu or auto") from exc
        if note and note != "forced" and note != "forced to CPU":
            self._note(entry, fallback=note)
        dtype = pick_dtype(device, spec.half_precision)
        configure_threads()
        report(f"Loading {spec.title} on {device}")
        try:
            try:
                bundle = spec.loader(source, device, dtype, report)
            except Exception as exc:
                if not _is_oom(exc, device):
                    raise
                self._note(entry, fallback=f"{device} ran out of memory while loading ({str(exc)[:120]}); loaded on CPU")
                _free_accelerator_memory()
                report(f"{device} is out of memory: loading {spec.title} on CPU instead")
                import torch

                bundle = spec.loader(source, "cpu", torch.float32, report)
            if spec.warmup is not None:  # the first real request should not pay for lazy initialisation
                report(f"Warming up {spec.title}")
                started = time.perf_counter()
                spec.warmup(bundle)
                self._note(entry, warmup_seconds=time.perf_counter() - started)
            return bundle
        except SlotError:
            raise
        except Exception as exc:
            raise SlotError(spec.name, entry.source, f"{type(exc).__name__}: {exc}", _fix_for(spec, source)) from exc

    # running models
    def counted(self, name: str) -> Counted:
        """The slot's model object, with each of its method calls counted and timed like run() (for pages that
        call the model's own methods: credit risk, the recommender)."""
        self.spec(name)
        return Counted(self, name)

    def run(self, name: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Call fn(bundle, *args, **kwargs), timing it for the stats. On a GPU out-of-memory the
        slot moves to CPU, the reason is recorded, and the call is retried there once."""
        return self._run(name, fn, args, kwargs, batch=0)

    def _run(self, name: str, fn: Callable[..., Any], args: tuple, kwargs: dict, batch: int) -> Any:
        """run(); `batch` is how many requests this one model call serves (a batcher times each itself)."""
        bundle = self.get(name)
        entry = self._entries[name]
        with self._lock:
            entry.in_use += 1
        started, failed = time.perf_counter(), True
        try:
            try:
                result = fn(bundle, *args, **kwargs)
            except Exception as exc:
                if not _is_oom(exc, bundle.device):
                    raise
                self._move_to_cpu(name, f"{bundle.device} ran out of memory while running ({str(exc)[:120]})")
                result = fn(bundle, *args, **kwargs)
            failed = False
            return result
        except Exception as exc:
            self._note(entry, progress="", last_error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            seconds = time.perf_counter() - started
            with self._lock:
                entry.in_use -= 1
            self._called(name, seconds, batch, failed)
            if batch == 0:  # a direct call: one request, timed here
                self._served(name, seconds, failed)

    def batched(self, name: str, fn: Callable[..., Any], items: list, *args, max_batch: int = 32) -> list:
        """fn(bundle, items, *args) -> one result per item, with concurrent calls from other sessions for
        the same slot, fn and args coalesced into one model call of at most `max_batch` items. Each
        caller gets exactly its own results, or its own exception: when a shared call fails, each
        request in it is run again alone. A request of `max_batch` items or more, or any request with
        batching off (LAUNCHPAD_BATCHING=off, or `registry.batching = False`), runs directly."""
        items = list(items)
        if not self.batching or len(items) >= max_batch:
            return self.run(name, fn, items, *args)
        key = (name, fn, args, max_batch)  # one batcher per slot, function and extra arguments
        try:
            hash(key)
        except TypeError:  # unhashable arguments are told apart by identity
            key = (name, fn, tuple(map(id, args)), max_batch)
        batcher = self._batchers.get(key)
        if batcher is None:
            with self._lock:  # checked again under the lock: exactly one worker thread per key
                batcher = self._batchers.get(key)
                if batcher is None:
                    batcher = self._batchers[key] = _Batcher(self, name, fn, args, max_batch)
        return batcher.submit(items)

    def _move_to_cpu(self, name: str, reason: str) -> None:
        entry = self._entries[name]
        with entry.lock:
            bundle = entry.bundle
            if bundle is not None and bundle.device not in ("cpu", "remote") and hasattr(bundle.model, "to"):
                import torch

                bundle.to("cpu", torch.float32)
                params, nbytes = bundle.size()
                self._note(entry, fallback=reason + "; moved to CPU", params=params, bytes=nbytes)
                _free_accelerator_memory()

    def prepare(self, name: str, retry: bool = False, after_others: bool = False) -> None:
        """Start loading the slot in a background thread (training it first, for models our code trains) and
        return at once; a no-op while it is loaded or being prepared. The load belongs to no visitor: closing
        a tab or pressing Stop does not stop it. Its progress is in state(name).progress. `retry`: try a slot that
        failed a moment ago again at once (the Models page's Load button), as load() does. `after_others`: a
        training of minutes (the fine-tuned sentiment model) first waits until no other slot is loading (at
        most QUIET_WAIT_S), so on a fresh machine it does not take the cores from the loads visitors wait for."""
        entry = self._entries[self.spec(name).name]
        with self._lock:
            if entry.bundle is not None or (entry.preparer is not None and entry.preparer.is_alive()):
                return
            entry.preparer = threading.Thread(target=self._prepare, args=(name, retry, after_others),
                                              name=f"prepare-{name}", daemon=True)
            entry.preparer.start()

    def preparing(self) -> list[threading.Thread]:
        """The background loads prepare() started that are still running."""
        return [e.preparer for e in self._entries.values() if e.preparer is not None and e.preparer.is_alive()]

    def loading(self) -> list[str]:
        """The slots loading (or training) now."""
        return [n for n, e in self._entries.items() if e.state == LOADING]

    def _prepare(self, name: str, retry: bool, after_others: bool) -> None:
        if after_others:
            self._wait_for_others(name)
        try:
            self._load(name, None, retry)
        except SlotError:  # recorded in the slot's state; wait() raises it to whoever waits
            pass

    def _wait_for_others(self, name: str) -> None:
        entry = self._entries[name]
        deadline = time.monotonic() + QUIET_WAIT_S
        while time.monotonic() < deadline and entry.bundle is None:
            others = [self.spec(n).title for n in self.loading() if n != name]
            if not others:
                return
            self._note(entry, progress=f"Starts when the other models have loaded ({', '.join(others)} loading)",
                       progress_fraction=0.0)
            time.sleep(QUIET_POLL_S)

    def wait(self, name: str, timeout: float) -> bool:
        """Whether the slot is loaded, waiting up to `timeout` seconds for the load prepare() started (it
        starts one when none runs). Raises the SlotError of a failed load."""
        entry = self._entries[self.spec(name).name]
        if entry.bundle is not None:
            return True
        self.prepare(name)
        thread = entry.preparer
        if thread is not None:
            thread.join(timeout)
        if entry.bundle is not None:
            return True
        if entry.state == FAILED and entry.error is not None:
            raise entry.error
        return False

    def warmup(self, name: str, progress: Progress | None = None) -> float:
        """Load the slot and run one tiny inference so the first real call is not the slow one."""
        self.get(name, progress)
        spec = self.spec(name)
        started = time.perf_counter()
        if spec.warmup is not None:
            self.run(name, spec.warmup)
        return time.perf_counter() - started

    def unload(self, name: str) -> bool:
        """Drop the slot's model (and a remembered failure). Returns whether anything was loaded."""
        entry = self._entries[self.spec(name).name]
        with entry.lock:
            had = entry.bundle is not None
            if had and hasattr(entry.bundle.model, "close"):  # a runtime holding native memory (llama.cpp)
                entry.bundle.model.close()
            self._unloaded(entry)
        if had:
            _free_accelerator_memory()
        return had

    def _evict_for(self, keep: str) -> None:
        """Evict least recently used idle slots until resident bytes fit the budget."""
        budget = self.memory_budget_bytes
        with self._lock:
            resident = {n: e for n, e in self._entries.items() if e.bundle is not None}
            total = sum(e.bytes for e in resident.values())
            victims = sorted((e.last_used, n) for n, e in resident.items() if n != keep and e.in_use == 0)
        for _, name in victims:
            if total <= budget:
                break
            total -= self._entries[name].bytes
            self.unload(name)
            self._note(self._entries[name], progress="evicted to stay within the memory budget")

    # what is going on
    def state(self, name: str) -> SlotState:
        spec, entry = self.spec(name), self._entries[name]
        lat = sorted(entry.latencies)
        bundle = entry.bundle
        model, licence, provenance = self.describe(name)
        waiting = sum(b.queue.qsize() for b in list(self._batchers.values()) if b.name == name)
        return SlotState(
            slot=name, title=spec.title, task=spec.task, state=entry.state,
            device=bundle.device if bundle else "", dtype=bundle.dtype if bundle else "",
            parameters=entry.params, bytes=entry.bytes, load_seconds=entry.load_seconds,
            train_seconds=bundle.meta.get("trained_seconds") if bundle else None,
            loads=entry.loads, calls=entry.calls, errors=entry.errors,
            p50_ms=_percentile(lat, 50) * 1000 if lat else None,
            p95_ms=_percentile(lat, 95) * 1000 if lat else None,
            mean_batch=sum(entry.batch_sizes) / len(entry.batch_sizes) if entry.batch_sizes else None,
            queue_depth=waiting + entry.in_use, warmup_seconds=entry.warmup_seconds,
            last_error=str(entry.error) if entry.error else entry.last_error, fallback=entry.fallback,
            progress=entry.progress, progress_fraction=entry.progress_fraction,
            source=entry.source or _describe_source(self, name), model=model,
            runtime=bundle.meta.get("runtime", "") if bundle else "", licence=licence, provenance=provenance)

    def states(self) -> list[SlotState]:
        return [self.state(n) for n in self.slots()]

    def table(self) -> list[dict]:
        """slot, source, licence, available offline: what `python -m core.registry` prints."""
        rows = []
        for name in self._specs:
            try:
                src = self.source(name)
                where, offline = f"{src.location} ({src.origin})", available_offline(src)
            except SlotError as exc:
                where, offline = f"{exc.source}: {exc.reason}", False
            rows.append({"slot": name, "source": where, "licence": self.licence(name),
                         "offline": "yes" if offline else "no"})
        return rows


    # bookkeeping: the one place a slot's stats change
    @staticmethod
    def _note(entry: _Entry, **changes) -> None:
        """What a load or a call found out: its source, a fallback, progress, an error text, sizes."""
        for name, value in changes.items():
            if not hasattr(entry, name):
                raise AttributeError(f"slot stats have no field '{name}'")
            setattr(entry, name, value)

    def _loading(self, entry: _Entry) -> None:
        entry.state, entry.error, entry.fallback = LOADING, None, ""

    def _loaded(self, entry: _Entry, bundle: ModelBundle, seconds: float) -> None:
        trained = bundle.meta.get("trained_seconds") or 0.0  # a model our code trained first: not load time
        entry.load_seconds = max(0.0, seconds - trained)
        entry.params, entry.bytes = bundle.size()
        entry.bundle, entry.state, entry.progress, entry.progress_fraction = bundle, READY, "", None
        entry.loads += 1
        entry.last_used = time.monotonic()

    def _failed(self, entry: _Entry, exc: SlotError) -> None:
        entry.state, entry.error, entry.progress, entry.progress_fraction = FAILED, exc, "", None
        entry.last_error, entry.failed_at = str(exc), time.monotonic()

    def _unloaded(self, entry: _Entry) -> None:
        entry.bundle, entry.state, entry.error = None, NOT_LOADED, None
        entry.progress, entry.progress_fraction = "", None
        entry.last_error = entry.fallback = ""
        entry.params = entry.bytes = 0

    def _served(self, name: str, seconds: float, failed: bool) -> None:
        """One request finished (it may have shared a model call with others)."""
        entry = self._entries[name]
        entry.latencies.append(seconds)
        with self._lock:
            entry.calls += 1
            entry.errors += failed
        entry.last_used = time.monotonic()

    def _called(self, name: str, seconds: float, batch: int, failed: bool) -> None:
        """One model call finished, serving `batch` requests (0: a direct call, one request)."""
        self._entries[name].batch_sizes.append(max(batch, 1))
        for listener in self._listeners:
            try:
                listener(name, seconds, max(batch, 1), failed)
            except Exception:  # a broken listener never fails a visitor's request
                pass


MAX_WAIT_S = 0.004  # the longest a request waits for others to join its batch


class _Request:
    __slots__ = ("items", "done", "result", "error", "started")

    def __init__(self, items: list):
        self.items, self.done, self.result, self.error = items, threading.Event(), None, None
        self.started = time.perf_counter()


class _Batcher:
    """One worker thread per (slot, fn, args): it takes the oldest waiting request, adds whatever else
    is queued (waiting up to MAX_WAIT_S for more only while the slot is busy, so a lone visitor never
    waits), runs them as one call, and hands each caller its own slice of the results."""

    def __init__(self, registry: Registry, name: str, fn, args: tuple, max_batch: int):
        self.registry, self.name, self.fn, self.args, self.max_batch = registry, name, fn, args, max_batch
        self.queue: queue.Queue[_Request] = queue.Queue()
        self.busy = False  # the last call served more than one request: load is high, worth waiting
        self.carry: _Request | None = None  # a request that did not fit the last batch goes first next time
        threading.Thread(target=self._work, name=f"batcher-{name}", daemon=True).start()

    def submit(self, items: list) -> list:
        request = _Request(items)
        self.queue.put(request)
        request.done.wait()
        self.registry._served(self.name, time.perf_counter() - request.started, request.error is not None)
        if request.error is not None:
            raise request.error
        return request.result

    def _collect(self) -> list[_Request]:
        batch = [self.carry or self.queue.get()]
        self.carry = None
        size = len(batch[0].items)
        deadline = time.perf_counter() + (MAX_WAIT_S if self.busy else 0.0)
        while True:
            try:
                remaining = deadline - time.perf_counter()
                request = self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait()
            except queue.Empty:
                return batch
            if size + len(request.items) > self.max_batch:
                self.carry = request
                return batch
            batch.append(request)
            size += len(request.items)
            if size >= self.max_batch:
                return batch

    def _work(self) -> None:
        while True:
            batch = self._collect()
            self.busy = len(batch) > 1
            try:
                items = [item for request in batch for item in request.items]
                results = self.registry._run(self.name, self.fn, (items, *self.args), {}, batch=len(batch))
                if len(results) != len(items):
                    raise RuntimeError(f"{self.name}: {len(results)} results for {len(items)} inputs")
                start = 0
                for request in batch:
                    request.result = results[start:start + len(request.items)]
                    start += len(request.items)
            except BaseException as exc:
                if len(batch) == 1:
                    batch[0].error = exc
                else:  # someone's input broke the shared call: run each alone, so only theirs fails
                    for request in batch:
                        try:
                            request.result = self.registry._run(self.name, self.fn, (request.items, *self.args),
                                                                {}, batch=1)
                        except BaseException as alone:
                            request.error = alone
            for request in batch:
                request.done.set()


def _percentile(sorted_values: list[float], q: float) -> float:
    k = (len(sorted_values) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def _describe_source(registry: Registry, name: str) -> str:
    try:
        src = registry.source(name)
        return f"{src.location} ({src.origin})"
    except SlotError as exc:
        return f"{exc.source}: {exc.reason}"


def _fix_for(spec: SlotSpec, source: Source) -> str:
    env = f"LAUNCHPAD_{spec.name.upper()}"
    if source.origin == Origin.OVERRIDE:
        if source.kind == Kind.HUB:
            return (f"the hub id needs internet or a copy in the Hugging Face cache; check the id, or point "
                    f"{env} at a local folder, or unset it to use the offline default")
        return f"check that {source.location} holds a complete model for this task, or unset {env}"
    return f"run `make setup` to reinstall the packaged models, or set {env} to a Hugging Face id or local folder"


registry = Registry()  # the process-wide one; slots are declared into it by the modules that own them
