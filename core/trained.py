"""Models our own code trains into the model store: one lifecycle for all of them.

A `TrainedModel` is declared once by the module that trains it (sentiment, credit risk, the recommender, the
digit recogniser). It knows the slot's folder in the store, the version of the training code, what the training
data is and how to fingerprint it. The slot's loader calls `ready(progress)`: it trains when the stored model is
missing, was written by older training code, or was trained on other data, and returns the folder with how long
training took. Trainers write through `saving()` (one rename: a crash never leaves a half-written model) and
log each run with `record()` (the Training runs page).
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from core import config, store
from core.registry import Kind, Progress, SlotError, Source

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
