"""Every page runs under AppTest without an exception; the shell's own behaviour."""
import pytest
from streamlit.testing.v1 import AppTest

from core import catalog  # noqa: F401  (declares every model slot)
from core.demos import DEMOS
from core.registry import NOT_LOADED, READY, registry

TIMEOUT = 120  # a page may load a model on first use


def app() -> AppTest:
    return AppTest.from_file("../app.py", default_timeout=TIMEOUT)


def test_home_renders_without_loading_any_model():
    for slot in registry.slots():
        registry.unload(slot)
    at = app().run()
    assert not at.exception
    assert at.title[0].value.startswith("🚀 Launchpad")
    assert all(s.state == NOT_LOADED for s in registry.states())


def test_home_gives_a_guided_tour_of_real_pages_in_about_five_minutes():
    from pathlib import Path

    from core.demos import TOUR

    at = app().run()
    tour = at.expander[0]
    assert "Five-minute demo" in tour.label
    assert [m.value.split("**")[1] for m in tour.markdown if m.value.startswith("**")] == [f"{n}. {s.label}" for n, s in enumerate(TOUR, 1)]
    assert 4 <= sum(s.minutes for s in TOUR) <= 6
    root = Path(__file__).resolve().parent.parent
    assert all((root / s.page).is_file() for s in TOUR)
    assert {s.page for s in TOUR} <= {d.page for d in DEMOS}


@pytest.mark.parametrize("page", [d.page for d in DEMOS] + ["pages/models.py"])
def test_every_page_runs_without_an_exception(page):
    at = app().run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert at.title, f"{page} has no title"


def test_models_page_loads_and_unloads_a_slot_with_its_buttons():
    registry.unload("embedder")
    at = app().run()
    at.switch_page("pages/models.py").run()
    at.button(key="load-embedder").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value.set_index("Slot")
    assert table.loc["embedder", "State"] == READY
    assert float(table.loc["embedder", "Memory (MB)"]) > 20  # int8 ONNX Runtime session about 45 MB, torch weights 91 MB
    assert "None" not in table.astype(str).to_numpy()  # a missing figure is a dash
    lines = [m.value for m in at.markdown if "**Text embedder**" in m.value]
    assert lines and "Ready:" in lines[0], lines  # the plain-language line above the table
    assert any("Licence" in c.value for c in at.caption)
    calls = registry.state("embedder").calls  # the process-wide registry: earlier tests have called it too
    at.button(key="warm-embedder").click().run()
    assert registry.state("embedder").calls == calls + 1
    at.button(key="unload-embedder").click().run()
    assert at.dataframe[0].value.set_index("Slot").loc["embedder", "State"] == NOT_LOADED


def test_models_page_shows_a_broken_override_with_its_fix(monkeypatch):
    monkeypatch.setenv("LAUNCHPAD_IMAGE_CLASSIFIER", "/no/such/folder here")
    registry.unload("image_classifier")
    at = app().run()
    at.switch_page("pages/models.py").run()
    at.button(key="load-image_classifier").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "LAUNCHPAD_IMAGE_CLASSIFIER" in errors
    registry.unload("image_classifier")
