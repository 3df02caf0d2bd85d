"""core.vision: the image_classifier slot (packaged weights and overrides), top-5, custom classes, and every
kind of bad image input."""
import io

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image, ImageFile
from streamlit.testing.v1 import AppTest

from core import files, vision
from core.registry import Registry, registry


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


COFFEE = Image.fromarray(skimage.data.coffee())
CHELSEA = Image.fromarray(skimage.data.chelsea())
CAT_CLASSES = {"tabby cat", "tiger cat", "Persian cat", "Siamese cat", "Egyptian Mau", "cougar", "lynx"}


def test_coffee_is_espresso_and_chelsea_is_a_cat_in_one_batch():
    coffee, chelsea = vision.classify([COFFEE, CHELSEA], k=5)
    assert coffee[0][0] == "espresso"
    assert {label for label, _ in chelsea[:3]} & CAT_CLASSES
    probs = [p for _, p in coffee]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_batched_and_single_results_agree():
    batched = vision.classify([COFFEE, CHELSEA], k=3)
    single = [vision.classify([img], k=3)[0] for img in (COFFEE, CHELSEA)]
    for b, s in zip(batched, single):
        assert [label for label, _ in b] == [label for label, _ in s]
        assert np.allclose([p for _, p in b], [p for _, p in s], atol=1e-4)


# --- bad input ---------------------------------------------------------------------------------
JPEG = encode(COFFEE, "JPEG")
REFUSED = {
    "notes.txt": (b"hello, I am plain text", "not an image"),
    "empty.png": (b"", "empty"),
    "truncated.jpg": (JPEG[: len(JPEG) // 2], "truncated"),
    "bomb.png": (encode(Image.new("1", (20000, 20000)), "PNG"), "too large"),
    "big.png": (encode(Image.new("1", (8000, 6000)), "PNG"), "limit is 40 MP"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_unusable_files_get_a_clear_message(name):
    data, words = REFUSED[name]
    with pytest.raises(vision.ImageInputError) as info:
        vision.read_image(data, name)
    assert name in str(info.value) and words in str(info.value)


HANDLED = {
    "rgba.png": (lambda: encode(COFFEE.convert("RGBA"), "PNG"), "transparent"),
    "cmyk.jpg": (lambda: encode(COFFEE.convert("CMYK"), "JPEG"), "CMYK"),
    "gray.png": (lambda: encode(COFFEE.convert("L"), "PNG"), "grayscale"),
    "16bit.png": (lambda: encode(Image.fromarray(np.asarray(COFFEE.convert("L")).astype(np.uint16) * 257), "PNG"),
                  "8 bits"),
    "anim.gif": (lambda: encode(COFFEE.convert("P"), "GIF", save_all=True,
                                append_images=[CHELSEA.convert("P").resize(COFFEE.size)]), "first"),
    "1x1.png": (lambda: encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"), "1×1"),
    "strip.png": (lambda: encode(Image.new("L", (20000, 1), 128), "PNG"), "20000×1"),
}


@pytest.mark.parametrize("name", list(HANDLED))
def test_unusual_images_are_converted_and_classified(name):
    make, note = HANDLED[name]
    picture = vision.read_image(make(), name)
    assert picture.image.mode == "RGB"
    assert any(note in n for n in picture.notes), picture.notes
    (top,) = vision.classify([picture.image], k=1)
    assert 0 <= top[0][1] <= 1
    if name in ("rgba.png", "cmyk.jpg", "gray.png", "16bit.png", "anim.gif"):
        assert top[0][0] == "espresso"  # the picture survived the conversion


# --- custom classes ------------------------------------------------------------------------------

def synthetic(kind: str, seed: int) -> Image.Image:
    """Two visually distinct families: warm blobs on dark, and cool stripes on light."""
    rng = np.random.default_rng(seed)
    a = np.zeros((96, 96, 3), dtype=np.float32)
    yy, xx = np.mgrid[:96, :96]
    if kind == "blobs":
        a[:] = rng.uniform(0, 40)
        for _ in range(4):
            cy, cx, r = rng.uniform(10, 86, 2).tolist() + [rng.uniform(8, 18)]
            a[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = [rng.uniform(180, 255), rng.uniform(60, 140), 20]
    else:
        a[:] = rng.uniform(200, 240)
        period, phase = rng.uniform(8, 16), rng.uniform(0, 8)
        a[((xx + yy * rng.uniform(-0.5, 0.5) + phase) // period) % 2 == 0] = [20, 80, rng.uniform(150, 255)]
    a += rng.normal(0, 12, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def test_custom_classes_reach_full_accuracy_on_held_out_images(tmp_path, monkeypatch):
    train = {k: [synthetic(k, s) for s in range(5)] for k in ("blobs", "stripes")}
    model = vision.fit_custom(train)
    assert model.classes == ["blobs", "stripes"]
    assert model.meta["loo_accuracy"] >= 0.9  # 10 examples: at most one miss
    held_out = [(k, synthetic(k, s)) for k in ("blobs", "stripes") for s in range(100, 110)]
    predictions = model.predict([img for _, img in held_out])
    assert [guess.label for guess in predictions] == [k for k, _ in held_out]

    monkeypatch.setenv("LAUNCHPAD_STORE", str(tmp_path))
    name = vision.save_custom(model, "blobs vs stripes!")
    assert name == "blobs-vs-stripes" and vision.list_custom() == [name]
    again = vision.load_custom(name)
    assert again.classes == model.classes and np.array_equal(again.weight, model.weight)
    assert np.array_equal(again.centroids, model.centroids) and again.threshold == model.threshold
    (tmp_path / "custom_images" / f"{name}.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="damaged"):
        vision.load_custom(name)


def views(image: Image.Image) -> list[Image.Image]:
    """A photo, mirrored, and two crops: a class's examples from one sample photo."""
    from PIL import ImageOps

    w, h = image.size
    return [image, ImageOps.mirror(image), image.crop((w // 8, h // 8, w - w // 8, h - h // 8)),
            ImageOps.mirror(image.crop((0, 0, w * 3 // 4, h * 3 // 4)))]


def test_custom_classes_say_none_of_these_for_an_image_unlike_every_class():
    gallery = vision.sample_gallery()
    coffee, cat = views(gallery["Coffee cup"].convert("RGB")), views(gallery["Chelsea the cat"].convert("RGB"))
    model = vision.fit_custom({"Coffee": coffee[:2], "Cat": cat[:2]})
    assert vision.OPEN_SET_RANGE[0] <= model.threshold <= vision.OPEN_SET_RANGE[1]
    astronaut, rocket, new_cat = model.predict([gallery["Astronaut"].convert("RGB"), gallery["Rocket"].convert("RGB"),
                                                cat[2]])
    assert astronaut.label == rocket.label == vision.NONE  # a softmax alone said "Coffee"
    assert astronaut.similarity < model.threshold <= new_cat.similarity and new_cat.label == "Cat"


def test_custom_classes_need_two_named_classes_with_two_examples():
    with pytest.raises(ValueError, match="at least two classes"):
        vision.fit_custom({"only": [COFFEE, CHELSEA]})
    with pytest.raises(ValueError, match="thin"):
        vision.fit_custom({"a": [COFFEE, CHELSEA], "thin": [COFFEE]})


# --- the page -----------------------------------------------------------------------------------

def page() -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=120).run()
    return at.switch_page("pages/image_classifier.py").run()


def test_page_classifies_the_default_samples():
    at = page()
    assert not at.exception
    assert any("espresso" in m.value for m in at.markdown)
    assert any("Licence" in c.value for c in at.caption)


def test_page_warns_about_a_broken_upload_and_classifies_the_good_one():
    at = page()
    at.segmented_control(key="source").set_value("Upload").run()
    at.file_uploader(key="uploads").set_value([("cup.jpg", JPEG, "image/jpeg"),
                                               ("fake.png", b"not really a png", "image/png")]).run()
    assert not at.exception
    assert any(files.plain("fake.png") in w.value and "not an image" in w.value for w in at.warning)  # as text
    assert any("espresso" in m.value for m in at.markdown)


def test_page_trains_a_custom_classifier_from_uploads():
    at = page()
    for i, kind in enumerate(("blobs", "stripes")):
        at.text_input(key=f"class-name-{i}").set_value(kind)
        at.file_uploader(key=f"class-files-{i}").set_value(
            [(f"{kind}{s}.png", encode(synthetic(kind, s), "PNG"), "image/png") for s in range(3)])
    at.run()
    at.button(key="train").click().run()
    assert not at.exception and not at.error
    assert any(m.label == "Leave-one-out accuracy" for m in at.metric)
    at.file_uploader(key="custom-trials").set_value([("t.png", encode(synthetic("stripes", 77), "PNG"), "image/png")])
    at.run()
    assert any(m.value.startswith("**stripes**") for m in at.markdown)


# --- the slot: packaged weights and a transformers override ----------------------------------

@pytest.mark.parametrize("name, expected", [("coffee", "espresso")])
def test_image_classifier_recognises_a_sample_photo(name, expected):
    import skimage.data
    from PIL import Image

    from core.efficientnet import MEAN, STD

    image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((224, 224), Image.BICUBIC)
    x = (torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1) - MEAN) / STD
    bundle = registry.get("image_classifier")
    with torch.inference_mode():
        top = bundle.model(x[None]).argmax(-1).item()
    assert bundle.meta["labels"][top] == expected


def test_image_classifier_override_from_a_local_transformers_folder(monkeypatch, tmp_path):
    """A user's own image model: a tiny ViT the test builds and saves, loaded through the same slot."""
    from PIL import Image
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    from core import vision

    config_ = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                        image_size=32, patch_size=8, num_labels=2, id2label={0: "cat", 1: "cup"},
                        label2id={"cat": 0, "cup": 1})
    torch.manual_seed(0)
    ViTForImageClassification(config_).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    monkeypatch.setenv("LAUNCHPAD_IMAGE_CLASSIFIER", str(tmp_path))
    fresh = Registry(registry.specs())
    monkeypatch.setattr(vision, "registry", fresh)
    (top,) = vision.classify([Image.new("RGB", (50, 40), (200, 30, 30))], k=2)
    assert {label for label, _ in top} == {"cat", "cup"} and abs(sum(p for _, p in top) - 1) < 1e-5
    assert vision.features([Image.new("RGB", (8, 8))]).shape == (1, 32)
    assert "override" in fresh.state("image_classifier").source


def test_a_postscript_file_named_png_is_refused_without_reaching_the_eps_reader(monkeypatch):
    from PIL import EpsImagePlugin

    reached = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: reached.append(1))
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto 8 8 lineto stroke\nshowpage\n"
    with pytest.raises(vision.ImageInputError) as info:
        vision.read_image(eps, "cat.png")
    assert not reached and "cat.png is a PostScript/EPS file" in str(info.value)


def test_images_above_40_megapixels_are_refused_before_decoding(monkeypatch):
    """40 MP is the README's limit: 6325x6325 (40.0 MP and a bit) is refused from its header, with nothing decoded;
    6324x6324 (just under) goes on to be decoded."""
    assert vision.MAX_PIXELS == 40_000_000
    over, under = encode(Image.new("1", (6325, 6325)), "PNG"), encode(Image.new("1", (6324, 6324)), "PNG")
    decoded = []

    def no_decoding(self, *args, **kwargs):
        decoded.append(self.size)
        raise OSError("decoding stopped by the test")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(vision.ImageInputError, match="the limit is 40 MP") as info:
        vision.read_image(over, "over.png")
    assert "6,325×6,325" in str(info.value) and decoded == []
    with pytest.raises(vision.ImageInputError, match="decoding stopped by the test"):
        vision.read_image(under, "under.png")
    assert decoded == [(6324, 6324)]
