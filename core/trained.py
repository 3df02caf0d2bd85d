"""Models our own code trains into the model store: one lifecycle for all of them.

A `TrainedModel` is declared once by the module that trains it (sentiment, credit risk, the recommender, the
digit recogniser). It knows the slot's folder in the store, the version of the training code, what the training
data is and how to fingerprint it. The slot's loader calls `ready(progress)`: it trains when the stored model is
missing, was written by older training code, or was trained on other data, and returns the folder with how long
training took. Trainers write through `saving()` (one rename: a crash never leaves a half-written model) and
log each run with `record()` (the Training runs page).

`start_job(slot, work)` runs a training in a background thread that belongs to no visitor (one per slot at a time;
pages poll `current_job(slot)`); `SHUTDOWN` is set when the interpreter exits, and long training loops check it.
"""
from __future__ import annotations

import atexit
import json
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from core import config, store
from core.registry import Kind, Progress, SlotError, Source, registry

META = "meta.json"


@dataclass(frozen=True)
class TrainedModel:
    slot: str
    title: str  # "the sentiment model", for progress messages
    version: int  # bump when training changes, so stored models count as stale
    data_package: str  # the installed package the training data comes from
    install: str  # the command that installs it
    train: Callable[[Progress], object]  # trains from the packaged data and saves through saving()
    fingerprint: Callable[[], str] | None = None  # of the training data now; None: only the version counts
    duration: str = "this happens once"  # said while training ("about a minute")

    @property
    def folder(self) -> Path:
        return config.store_dir() / self.slot

    def meta(self, folder: Path | None = None) -> dict | None:
        """The metadata saved beside the model (None when there is no readable model)."""
        try:
            return json.loads(((folder or self.folder) / META).read_text())
        except (OSError, ValueError):
            return None

    def stale(self, meta: dict | None = None) -> str:
        """Why the stored model must be retrained ('' when it is current)."""
        meta = self.meta() if meta is None else meta
        if not meta:
            return "no trained model yet"
        if meta.get("version") != self.version:
            return "the training code changed"
        if self.fingerprint is not None and meta.get("data_fingerprint") != self.fingerprint():
            return "the training data changed"
        return ""

    def default_source(self) -> Source:
        """The slot's default source: the store, or a SlotError when the training data is not installed."""
        if config.package_dir(self.data_package) is None:
            raise SlotError(self.slot, f"model store ({self.slot}), trained from {self.data_package}",
                            f"its training data package '{self.data_package}' is not installed",
                            f"run `make setup` (it runs `{self.install}`)")
        return Source(Kind.STORE, str(self.folder))

    def ready(self, progress: Progress) -> tuple[Path, float]:
        """(the folder of a current model, seconds spent training it now: 0 when it was there already)."""
        reason = self.stale()
        if not reason:
            return self.folder, 0.0
        progress(f"Training {self.title} ({reason}); {self.duration}")
        started = time.perf_counter()
        self.train(progress)
        if self.stale():
            raise RuntimeError(f"training {self.title} finished but the store still has no current model")
        return self.folder, time.perf_counter() - started

    @contextmanager
    def saving(self, folder: Path | None = None) -> Iterator[Path]:
        """An empty folder to write the model into; it replaces `folder` (default: the slot's) in one rename."""
        with config.replacing_folder(folder or self.folder, self.slot) as tmp:
            yield tmp

    def record(self, params: dict, fingerprint: str, seconds: float, metrics: dict, model: str, **more) -> None:
        """Log a run of the slot's own model (a visitor's own-data model is not logged)."""
        store.record_training_run(self.slot, params, fingerprint, seconds, metrics, model=model, **more)


# --- training apart from any visitor's script run ------------------------------------------------------

@dataclass
class TrainingJob:
    """One training run in a background thread. Pages poll it; closing the tab does not stop it."""

    slot: str
    params: dict
    started_by: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    state: str = "running"  # running | done | failed
    message: str = "Starting"
    fraction: float = 0.0
    history: list = field(default_factory=list)  # what the trainer appends as it goes (digits: learning curves)
    before: dict | None = None  # the stored model's metadata when the run started
    meta: dict | None = None  # what the run saved
    error: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def progress(self, message: str, fraction: float | None = None) -> None:
        self.message = message
        if fraction is not None:
            self.fraction = float(fraction)

    def wait(self, timeout: float | None = None) -> "TrainingJob":
        if self.thread is not None:
            self.thread.join(timeout)
        return self


SHUTDOWN = threading.Event()
_JOBS: dict[str, TrainingJob] = {}
_JOBS_LOCK = threading.Lock()


@atexit.register
def _stop_training_at_exit() -> None:
    """A training thread still inside torch when the interpreter finalises aborts the process ("terminate
    called without an active exception", exit 134, seen at the end of a test run): ask it to stop at its
    next batch and wait for it."""
    SHUTDOWN.set()
    threads = [job.thread for job in list(_JOBS.values()) if job.thread is not None] + registry.preparing()
    for thread in threads:
        thread.join(timeout=30)


def current_job(slot: str) -> TrainingJob | None:
    """The slot's latest training run in this process (running or finished), if any."""
    return _JOBS.get(slot)


def start_job(slot: str, work: Callable[[TrainingJob], dict], started_by: str = "", params: dict | None = None,
              on_done: Callable[[TrainingJob], None] | None = None) -> TrainingJob:
    """Run `work(job)` (it trains, saves and returns the metadata saved) in a background thread, or return the
    slot's run already going (two visitors who click Train together watch the same run). The slot is unloaded
    when it finishes, so the next call loads the new model; a failure is kept on the job, the store untouched."""
    with _JOBS_LOCK:
        job = _JOBS.get(slot)
        if job is not None and job.running:
            return job
        job = TrainingJob(slot=slot, params=dict(params or {}), started_by=started_by)

        def run():
            try:
                job.meta = work(job)
                registry.unload(slot)
                job.state = "done"
            except BaseException as exc:  # shown on the page; the stored model is left as it was
                job.error = f"{type(exc).__name__}: {exc}"
                job.state = "failed"
            finally:
                job.finished = time.time()
                if on_done is not None:
                    on_done(job)

        job.thread = threading.Thread(target=run, name=f"training-{slot}-{job.id}", daemon=True)
        _JOBS[slot] = job
        job.thread.start()
        return job
