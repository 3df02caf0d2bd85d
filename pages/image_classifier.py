import hashlib
import html

import plotly.graph_objects as go
import streamlit as st

from core import vision
from core.files import plain  # class and file names are visitor text: shown literally
from pages.common import allow_heavy_call, api_help, app_shell, ensure_model, is_operator, model_credits

app_shell()
IMAGE_TYPES = ["jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff"]


def read_uploads(files, key: str) -> list[vision.Picture]:
    """The pictures of one uploader's files, decoded once: reruns reuse them until the files change (only the
    latest upload per uploader is kept). The budgets (files, total pixels) are checked before any decoding."""
    files = list(files or [])
    decoded = st.session_state.setdefault("decoded_uploads", {})
    ids = tuple(f.file_id for f in files)
    if decoded.get(key, (None,))[0] != ids:
        try:
            pictures, problems = vision.read_images([(f.getvalue(), f.name) for f in files])
        except vision.ImageInputError as exc:  # over a budget: nothing was decoded
            pictures, problems = [], [str(exc)]
        decoded[key] = (ids, pictures, problems)
    _, pictures, problems = decoded[key]
    for problem in problems:
        st.warning(plain(problem), icon=":material/broken_image:")
    return pictures


def probability_chart(labels: list[str], probs: list[float], axis: str) -> go.Figure:
    labels = [html.escape(label) for label in labels]  # Plotly renders <a href>, <b>... in labels: show them as text
    fig = go.Figure(go.Bar(x=probs[::-1], y=labels[::-1], orientation="h", marker_color="#5B5BD6",
                           text=[f"{p:.0%}" for p in probs[::-1]], textposition="auto"))
    fig.update_layout(height=60 + 34 * len(labels), margin=dict(l=10, r=10, t=10, b=40),
                      xaxis=dict(title="Probability", range=[0, 1], tickformat=".0%"), yaxis=dict(title=axis))
    return fig


# --- page -------------------------------------------------------------------------------------
st.title("🖼️ Image classifier")
st.caption("Recognise 1,000 everyday objects and animals, or teach it your own classes from a few examples.")
model_credits("image_classifier", data="sample photos from scikit-image (BSD-3-Clause).")
api_help("image_classifier")
if not ensure_model("image_classifier"):
    st.stop()

recognise, teach = st.tabs(["Recognise", "Teach your own classes"], key="vision_tab")

with recognise:
    source = st.segmented_control("Images from", ["Samples", "Upload", "Camera"], default="Samples", key="source")
    pictures: list[vision.Picture] = []
    if source == "Upload":
        files = st.file_uploader("Images (one or many)", type=IMAGE_TYPES, accept_multiple_files=True, key="uploads")
        pictures = read_uploads(files, "uploads")
    elif source == "Camera":
        shot = st.camera_input("Take a photo", key="camera")
        pictures = read_uploads([shot] if shot else [], "camera")
    else:
        gallery = vision.sample_gallery()
        chosen = st.multiselect("Sample photos", list(gallery), default=["Coffee cup", "Chelsea the cat"], key="samples")
        pictures = [vision.Picture(name, gallery[name]) for name in chosen]

    if pictures:
        cache = st.session_state.setdefault("image_results", {})  # reruns do not classify again
        keys = [hashlib.sha1(p.image.tobytes()).hexdigest() for p in pictures]
        todo = [(k, p) for k, p in zip(keys, pictures) if k not in cache]
        if todo:
            if not allow_heavy_call():
                st.stop()
            with st.spinner(f"Classifying {len(todo)} image(s)…"):
                cache.update(zip([k for k, _ in todo], vision.classify([p.image for _, p in todo], k=5)))
        results = [cache[k] for k in keys]
        for picture, top5 in zip(pictures, results):
            with st.container(border=True):
                left, right = st.columns([1, 2])
                left.image(picture.image, caption=plain(picture.name), width="stretch")
                right.markdown(f"**{top5[0][0]}** · {top5[0][1]:.0%} confident")
                if top5[0][1] < vision.UNSURE_BELOW:
                    right.caption("Not sure: it only knows ImageNet's 1,000 classes (objects and animals; no people, "
                                  "astronauts or brands) and names the closest. Teach it your own classes for those.")
                right.plotly_chart(probability_chart([label for label, _ in top5], [p for _, p in top5], "ImageNet class"),
                                   width="stretch", key=f"chart-{picture.name}-{id(picture)}")
                if picture.notes:
                    right.caption("Note: " + plain("; ".join(picture.notes)))
    else:
        st.info("Choose sample photos, upload images, or take a photo to classify.")

with teach:
    st.markdown("Name each class and give it a few example images (2 or more). It learns them in seconds, and "
                "tells you how often it gets an example right that it was not shown, so you know whether to add more.",
                help="A classifier fitted on the network's features; the figure is leave-one-out accuracy.")
    count = st.number_input("Number of classes", min_value=2, max_value=6, value=2, key="n_classes")
    examples: dict[str, list] = {}
    columns = st.columns(int(count))
    for i, col in enumerate(columns):
        with col:
            name = st.text_input("Class name", value=f"Class {chr(65 + i)}", key=f"class-name-{i}", max_chars=40)
            files = st.file_uploader(f"Examples of {plain(name) if name else 'this class'}", type=IMAGE_TYPES,
                                     accept_multiple_files=True, key=f"class-files-{i}")
            shots = st.session_state.setdefault(f"class-shots-{i}", [])
            if st.toggle("Add photos from the camera", key=f"class-camera-on-{i}"):
                shot = st.camera_input(f"Photo of {plain(name) if name else 'this class'}", key=f"class-camera-{i}")
                if shot is not None and shot.file_id not in [s.name for s in shots] and len(shots) < 30:
                    shots.extend(vision.Picture(shot.file_id, p.image) for p in read_uploads([shot], f"class-camera-{i}"))
            examples[name] = [p.image for p in read_uploads(files, f"class-files-{i}")] + [s.image for s in shots]
            if examples[name]:
                st.image(examples[name][:12], width=56)  # thumbnails of the examples, not file names
            st.caption(f"{len(examples[name])} usable image(s)" + (f", {len(shots)} from the camera" if shots else ""))

    if st.button("Train custom classifier", type="primary", key="train") and allow_heavy_call():
        if len([n for n in examples if n.strip()]) < int(count):
            st.error("Each class needs a different, non-empty name.")
        else:
            try:
                with st.spinner("Extracting features and fitting…"):
                    st.session_state.custom_model = vision.fit_custom(examples)
            except ValueError as exc:
                st.error(plain(exc))

    saved = vision.list_custom()
    if saved:
        pick, load = st.columns([3, 1], vertical_alignment="bottom")
        choice = pick.selectbox("Or load a saved custom model", saved, key="saved-choice")
        if load.button("Load", key="load-custom", width="stretch"):
            try:
                st.session_state.custom_model = vision.load_custom(choice)
            except ValueError as exc:
                st.error(plain(exc))

    model = st.session_state.get("custom_model")
    if model is not None:
        st.divider()
        a, b, c = st.columns(3)
        a.metric("Leave-one-out accuracy", f"{model.meta['loo_accuracy']:.0%}")
        b.metric("Classes", len(model.classes))
        c.metric("Examples", sum(model.meta["examples"].values()))
        st.caption("Examples per class: " + plain(", ".join(f"{k}: {v}" for k, v in model.meta["examples"].items())))
        trials = read_uploads(st.file_uploader("Classify new images with your model", type=IMAGE_TYPES,
                                               accept_multiple_files=True, key="custom-trials"), "custom-trials")
        if trials:
            for picture, guess in zip(trials, model.predict([p.image for p in trials])):
                left, right = st.columns([1, 2])
                left.image(picture.image, caption=plain(picture.name), width="stretch")
                if guess.label == vision.NONE:
                    right.markdown(f"**None of your classes** · it looks most like {plain(guess.closest)}, but less than "
                                   "any of your examples do. Add examples, or a class for it.")
                else:
                    right.markdown(f"**{plain(guess.label)}** · {guess.confidence:.0%} confident")
                right.plotly_chart(probability_chart(model.classes, [float(p) for p in guess.probabilities], "Your class"),
                                   width="stretch", key=f"custom-chart-{picture.name}-{id(picture)}")
                right.caption(f"Similarity to the closest class's examples: {guess.similarity:.2f} (below "
                              f"{model.threshold:.2f} is 'none of these')" if model.centroids is not None else
                              "Saved before 'none of these' existed: train it again to get that answer.")
        name_col, save_col = st.columns([3, 1], vertical_alignment="bottom")
        save_name = name_col.text_input("Save as", value="my-classes", key="save-name", max_chars=60)
        if save_col.button("Save to model store", key="save-custom", width="stretch"):
            try:  # a viewer saves new names only: replacing a saved model other visitors load is an operator's call
                saved_as = vision.save_custom(model, save_name, overwrite=is_operator())
                st.success(f"Saved as '{plain(saved_as)}'.")
            except ValueError as exc:
                st.error(plain(exc))
