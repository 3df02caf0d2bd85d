"""The demo catalogue: what Home shows as cards and what app.py puts under "Demos"."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Demo:
    title: str
    icon: str
    page: str  # path relative to the repository root
    pitch: str
    slots: tuple[str, ...]  # registry slots the demo uses


DEMOS: list[Demo] = [
    Demo("Image classifier", ":material/image_search:", "pages/image_classifier.py",
         "Recognise 1,000 kinds of objects in a photo, or teach it your own classes from a handful of "
         "examples, like a teachable machine.", ("image_classifier",)),
]
