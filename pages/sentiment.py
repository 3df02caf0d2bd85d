import html
import time

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core import config, quantised, sentiment, store
from core.files import csv_download  # formula cells neutralised, like every CSV we offer
from core.registry import FAILED, NOT_LOADED, READY, SlotError, registry
from pages.common import (
    allow_heavy_call,
    api_help,
    app_shell,
    ensure_model,
    is_operator,
    model_credits,
    read_uploaded_csv,
)

app_shell()
COLOURS = {"negative": "#D9534F", "neutral": "#8C8C8C", "positive": "#2E9E5B"}


def highlight(words: list[tuple[str, float]], label: str) -> str:
    """Words shaded by how much they pushed towards the predicted label (green) or away (red)."""
    top = max((abs(w) for _, w in words), default=0) or 1
    spans = []
    for word, weight in words:
        alpha = min(abs(weight) / top, 1) * 0.6
        colour = f"rgba(46,158,91,{alpha:.2f})" if weight > 0 else f"rgba(217,83,79,{alpha:.2f})"
        spans.append(f'<span title="{weight:+.3f}" style="background:{colour};padding:2px 3px;border-radius:4px">'
                     f"{html.escape(word)}</span>")
    return " ".join(spans)


def probability_chart(probs) -> go.Figure:
    fig = go.Figure(go.Bar(x=list(sentiment.LABELS), y=probs, marker_color=[COLOURS[label] for label in sentiment.LABELS],
                           text=[f"{p:.0%}" for p in probs], textposition="auto"))
    fig.update_layout(height=260, margin=dict(t=10, b=10), xaxis_title="Sentiment",
                      yaxis=dict(title="Probability", range=[0, 1], tickformat=".0%"))
    return fig


st.title("😊 Sentiment analysis")
st.caption("Read the mood of customer messages, one at a time or a whole file, see which words decided, and teach "
           "it by correcting it. Our own classifier, trained on tweets, product reviews and customer sentences we wrote; "
           "one text also gets a second opinion from a small language model.")
SECOND_OPINION = sentiment.second_opinion_on()
credited = ("sentiment", "sentiment_quick", *([sentiment.JUDGE] if SECOND_OPINION else []))
model_credits(*credited, data=sentiment.DATA + "; baseline lexicon VADER (vaderSentiment, MIT).")
api_help("sentiment")


@st.fragment(run_every=2.0)
def fine_tuning() -> None:
    """While the quick model answers: how far the fine-tuned model is. The page switches when it is ready."""
    state = registry.state(sentiment.SLOT)
    if state.state in (READY, FAILED) and sentiment.serving_slot() != sentiment.QUICK:
        st.rerun(scope="app")  # the fine-tuned model takes over (or the page says why it could not)
    if state.state == NOT_LOADED:
        registry.prepare(sentiment.SLOT, after_others=True)
    accuracy = registry.get(sentiment.QUICK).meta["metrics"]["accuracy"]
    st.info(f"**For now the quick model answers** (word counts and logistic regression, {accuracy:.0%} right on "
            "texts it never saw) while our fine-tuned model trains on the server (a few minutes). It takes over on "
            "this page by itself; you can leave meanwhile, training carries on.",
            icon=":material/hourglass_top:")
    st.progress(min(state.progress_fraction or 0.0, 1.0), text=state.progress or "Starting")


def retraining(running: bool) -> None:
    @st.fragment(run_every=1.0 if running else None)
    def progress() -> None:
        job = sentiment.current_retraining()
        if job is None:
            return
        if job.running:
            st.progress(min(job.fraction, 1.0), text=job.message)
        elif st.session_state.get("sentiment_watching") == job.id:
            st.session_state.sentiment_watching = None
            if job.state == "done":
                st.session_state.sentiment_retrained = (job.before, job.meta)
            st.rerun(scope="app")  # the tabs above show the new model
        elif job.state == "failed":
            st.error(f"The last retraining failed and the model was left as it was: {job.error}",
                     icon=":material/error:")

    progress()


def second_opinion(text: str):
    """(the language model's probabilities or None, why there are none): a failure leaves the classifier's answer."""
    if not SECOND_OPINION:
        return None, ""
    if not ensure_model(sentiment.JUDGE):
        return None, "the language model that gives a second opinion is unavailable (see above)."
    try:
        opinion = sentiment.second_opinion(text)
    except (SlotError, RuntimeError) as exc:
        return None, f"the language model could not be asked: {getattr(exc, 'reason', exc)}."
    return opinion, "" if opinion is not None else "the language model answered without a label."


def score_queued() -> None:
    """Scores the queued table one chunk (LAUNCHPAD_SENTIMENT_ROWS_PER_CALL rows) per script run, each chunk a
    model call under the visitor's rate limit: a 200,000-row file is queued, with progress, instead of holding
    the shared model for one 20-minute call, and between chunks the visitor can stop it."""
    job = st.session_state.scoring
    frame, total = job["frame"], len(job["frame"])
    per_call = config.setting("sentiment_rows_per_call") or total
    start = job["next"]
    stop, chunks = min(start + per_call, total), -(-total // per_call)
    if st.button("Stop scoring", key="stop_scoring", icon=":material/stop:"):
        st.session_state.scoring = None
        st.info(f"Stopped after {start:,} of {total:,} rows.")
        return
    if not job.pop("counted", False) and not allow_heavy_call():  # the first chunk was counted by the button
        time.sleep(2)  # the limit's warning says how long; the queue goes on by itself
        st.rerun()
    label = f"Scoring rows {start + 1:,}–{stop:,} of {total:,} (chunk {start // per_call + 1} of {chunks})"
    bar = st.progress(start / total, text=label)
    job["parts"].append(sentiment.score_table(
        frame.iloc[start:stop], job["column"],
        lambda f: bar.progress((start + f * (stop - start)) / total, text=label), slot=job["slot"]))
    job["next"] = stop
    if stop < total:
        st.rerun()  # the next chunk in a new run: other visitors' requests are served in between
    bar.empty()
    st.session_state.scoring = None
    st.session_state.scored = (pd.concat(job["parts"]), job["column"], job["date"])


serving = sentiment.serving_slot()  # the quick model while the fine-tuned one trains (started here)
if SECOND_OPINION:
    registry.prepare(sentiment.JUDGE)  # in the background: usually ready by the time a visitor presses Analyse
if not ensure_model(serving):
    st.stop()
# Filled last: when the fine-tuned model takes over, its rerun would cut this run short, and Streamlit 1.67 resets
# the widgets a cut-short run has not reached yet (the visitor's "Paste lines" went back to "Upload a CSV").
fine_tuning_box = st.container()
meta = registry.get(serving).meta

single, batch, model_tab = st.tabs(["Analyse a text", "Batch scoring", "Model & feedback"], key="sentiment_tab")

with single:
    text = st.text_area("Text", key="sentiment_text", height=110,
                        placeholder="@united the flight was delayed 3 hours and nobody told us anything")
    if st.button("Analyse", type="primary", key="analyse") and allow_heavy_call():
        try:
            state_text, notice = sentiment.check_text(text)
            with st.spinner("Reading it" + (" twice: our classifier, then a language model…" if SECOND_OPINION else "…")):
                label, words, probs = sentiment.explain(state_text, slot=serving)
                opinion, why_not = second_opinion(state_text)
            mixed = sentiment.combine(probs, opinion)
            st.session_state.sentiment_result = {
                "text": state_text, "notice": notice, "label": sentiment.LABELS[int(mixed.argmax())],
                "probs": mixed.tolist(), "words": words, "classifier": (label, probs.tolist()),
                "opinion": None if opinion is None else opinion.tolist(), "why_not": why_not}
        except ValueError as exc:
            st.session_state.pop("sentiment_result", None)
            st.warning(str(exc), icon=":material/edit_note:")
    result = st.session_state.get("sentiment_result")
    if result:
        if result["notice"]:
            st.info(result["notice"])
        left, right = st.columns([2, 3])
        left.metric("Sentiment", result["label"], f"{max(result['probs']):.0%} confident", delta_color="off")
        left.plotly_chart(probability_chart(result["probs"]), width="stretch", key="probs")
        own_label, own_probs = result["classifier"]
        if result["opinion"] is not None:
            judge_label = sentiment.LABELS[max(range(3), key=lambda i: result["opinion"][i])]
            left.caption(f"Two readers together: our classifier says **{own_label}** ({max(own_probs):.0%}), a "
                         f"language model ({registry.model_name(sentiment.JUDGE)}) **{judge_label}** "
                         f"({max(result['opinion']):.0%}), weighed {1 - sentiment.JUDGE_WEIGHT:.0%} : "
                         f"{sentiment.JUDGE_WEIGHT:.0%}.")
        elif result["why_not"]:
            left.caption(f"Our classifier alone: {result['why_not']}")
        right.markdown(f"**Why** our classifier read it as **{own_label}**: words that pushed it that way are "
                       "green, against it red (how much less sure it is when that word is left out).")
        right.markdown(highlight(result["words"], own_label), unsafe_allow_html=True)
        with right.form("correct"):
            fix = st.radio("Wrong? Choose the right label", sentiment.LABELS, horizontal=True, key="correction",
                           index=sentiment.LABELS.index(result["label"]))
            if st.form_submit_button("Save correction"):
                if fix == result["label"]:
                    st.info("That is what the model said already: nothing to correct.")
                else:
                    store.add_correction(result["text"], result["label"], fix)
                    st.success("Saved. Retrain on the Model & feedback tab to fold it in.")

with batch:
    source = st.segmented_control("Texts from", ["Upload a CSV", "Paste lines"], default="Upload a CSV", key="batch_source")
    frame, notices = None, []
    if source == "Paste lines":
        pasted = st.text_area("One text per line", key="pasted", height=150)
        lines = [line for line in pasted.splitlines() if line.strip()]
        frame = pd.DataFrame({"text": lines}) if lines else None
    else:
        upload = st.file_uploader("CSV file", type=["csv", "tsv", "txt"], key="batch_upload")
        if upload is not None:
            frame, notices = read_uploaded_csv(upload)
    for notice in notices:
        st.info(notice)
    if frame is not None:
        candidates = sentiment.text_columns(frame)
        if not candidates:
            st.error(f"No column with text found (columns: {', '.join(frame.columns) or 'none'}). Upload a CSV "
                     "with one column of texts.", icon=":material/error:")
        else:
            column = st.selectbox("Text column", candidates, key="text_column")
            dates = [c for c in sentiment.date_columns(frame) if c != column]
            date_col = st.selectbox("Date column (optional)", ["(none)"] + dates, key="date_column")
            if st.button(f"Score {len(frame):,} rows", type="primary", key="score") and allow_heavy_call():
                st.session_state.pop("scored", None)
                st.session_state.scoring = {"frame": frame, "column": column, "date": date_col, "slot": serving,
                                            "parts": [], "next": 0, "counted": True}
    if st.session_state.get("scoring"):
        score_queued()
    if st.session_state.get("scored"):
        scored, column, date_col = st.session_state.scored
        counts = scored.sentiment.value_counts()
        if counts.get("(empty)"):
            st.caption(f"{counts['(empty)']:,} empty cell(s) were kept and marked '(empty)'.")
        fig = px.bar(counts.reindex([*sentiment.LABELS, "(empty)"]).dropna().reset_index(), x="sentiment",
                     y="count", color="sentiment", color_discrete_map=COLOURS | {"(empty)": "#CCCCCC"},
                     labels={"sentiment": "Sentiment", "count": "Rows"})
        fig.update_layout(height=300, showlegend=False, margin=dict(t=10, b=10))
        st.plotly_chart(fig, width="stretch", key="distribution")
        if date_col and date_col != "(none)" and date_col in scored.columns:
            trend, undated = sentiment.over_time(scored, date_col)
            if not trend.empty:
                fig = px.area(trend, x="period", y="share", color="sentiment", color_discrete_map=COLOURS,
                              labels={"period": "Date", "share": "Share of rows", "sentiment": "Sentiment"})
                fig.update_layout(height=300, yaxis_tickformat=".0%", margin=dict(t=10, b=10))
                st.plotly_chart(fig, width="stretch", key="trend")
            if undated:
                st.caption(f"{undated:,} row(s) had no readable date and are left out of the chart.")
        st.dataframe(scored, hide_index=True, width="stretch", height=320)
        st.download_button("Download results (CSV)", csv_download(scored), "sentiment.csv",
                           "text/csv", key="download_scored", on_click="ignore", icon=":material/download:")

with model_tab:
    if not meta.get("metrics"):
        st.info("This slot is overridden with an external model: no held-out evaluation of ours to show.")
    else:
        ours = "Quick model (TF-IDF + logistic regression)" if serving == sentiment.QUICK else \
            f"Ours ({meta['mode']}, MiniLM)"
        rows = [{"Model": ours, **meta["metrics"]}]
        rows += [{"Model": name, **m} for name, m in meta["baselines"].items()]
        table = pd.DataFrame(rows)
        st.markdown(f"Held-out evaluation on **{meta['n_test']:,}** texts the model never saw (tweets and reviews; trained on "
                    f"{meta['n_train']:,}, {meta['corrections']} correction(s), {meta['train_seconds']:.0f} s, "
                    f"{meta['created']}).")
        st.dataframe(table[["Model", "accuracy", "macro_f1"]], hide_index=True, width="stretch", column_config={
            "accuracy": st.column_config.ProgressColumn("Accuracy", format="%.3f", min_value=0, max_value=1),
            "macro_f1": st.column_config.ProgressColumn("Macro-F1", format="%.3f", min_value=0, max_value=1)})
        choice = st.selectbox("Confusion matrix of", table.Model.tolist(), key="confusion_of")
        matrix = table.set_index("Model").loc[choice, "confusion"]
        fig = px.imshow(matrix, x=list(sentiment.LABELS), y=list(sentiment.LABELS), text_auto=True,
                        color_continuous_scale="Purples", labels={"x": "Predicted", "y": "True", "color": "Tweets"})
        fig.update_layout(height=360, margin=dict(t=10, b=10))
        st.plotly_chart(fig, width="stretch", key="confusion")
    st.subheader("Feedback loop")
    corrections = store.corrections()
    st.caption(f"{len(corrections)} correction(s) stored; "
               f"{len(corrections) - (meta.get('corrections') or 0)} not yet in the model.")
    operator = is_operator()  # other visitors' corrections and retraining the shared model are for operators
    if corrections and operator:
        st.dataframe(pd.DataFrame(corrections)[["created", "text", "predicted", "corrected"]], hide_index=True,
                     width="stretch", height=200)
    job = sentiment.current_retraining()
    busy = "The fine-tuned model is still training: retrain once it is ready." if serving == sentiment.QUICK else \
        "Retraining is running (it carries on if you leave)." if job and job.running else \
        "" if operator else "Only an operator retrains the shared model (LAUNCHPAD_OPERATORS, README Access)."
    if st.button("Retrain with corrections", key="retrain", disabled=not corrections or bool(busy), help=busy or None) \
            and is_operator() and allow_heavy_call():
        job = sentiment.start_retraining(started_by=st.session_state.get("user") or "a visitor")
        st.session_state.sentiment_watching = job.id
    retraining(bool(job and job.running))
    if st.session_state.get("sentiment_retrained"):
        before, after = st.session_state.sentiment_retrained
        b, a = (before or {}).get("metrics") or {}, after["metrics"]
        c1, c2 = st.columns(2)
        c1.metric("Accuracy", f"{a['accuracy']:.3f}", f"{a['accuracy'] - b.get('accuracy', a['accuracy']):+.3f}")
        c2.metric("Macro-F1", f"{a['macro_f1']:.3f}", f"{a['macro_f1'] - b.get('macro_f1', a['macro_f1']):+.3f}")
    st.subheader("Optimised for CPU: int8")
    int8_rows = [r for r in quantised.comparison() if r["slot"] == sentiment.SLOT]
    if not int8_rows:
        st.caption("The fine-tuned model's int8 copy is made the first time it loads on a CPU.")
    else:
        st.markdown(quantised.summary(sentiment.SLOT) + (" It is what answers here now." if meta.get("runtime", "")
                                                         .startswith("ONNX") else ""))
        st.dataframe(pd.DataFrame(int8_rows).rename(columns={
            "variant": "Variant", "runtime": "Runtime", "size_mb": "Size (MB)", "p50_ms": "One text (ms)",
            "texts_per_s": "Texts/s", "quality": "Accuracy", "macro_f1": "Macro-F1"})[
            ["Variant", "Runtime", "Size (MB)", "One text (ms)", "Texts/s", "Accuracy", "Macro-F1"]],
            hide_index=True, width="stretch", column_config={
                c: st.column_config.NumberColumn(format="%.3f" if c in ("Accuracy", "Macro-F1") else "%.1f")
                for c in ("Size (MB)", "One text (ms)", "Texts/s", "Accuracy", "Macro-F1")})
        st.caption("Held-out tweets; measured on this machine when the copy was made. The Models page compares "
                   "both encoders, with a chart.")

if serving == sentiment.QUICK:
    with fine_tuning_box:
        fine_tuning()
