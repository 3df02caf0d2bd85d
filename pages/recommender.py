import pandas as pd
import plotly.express as px
import streamlit as st

from core import files, recommender
from pages.common import (
    allow_heavy_call,
    api_help,
    app_shell,
    ensure_model,
    model_credits,
    read_uploaded_csv,
    sample_or_own_model,
)

app_shell()
SAMPLE, OWN = "Sample: MovieLens, 100,004 ratings", "Your own interactions (CSV)"
ALL_GENRES = "All genres"
PLAIN_METHODS = {  # what each model does, for the visitor; the engineers' names are in the radio's help
    recommender.Method.ITEM_ITEM: "Movies rated together", recommender.Method.BPR: "Learned taste",
    recommender.Method.CONTENT: "Similar titles and genres", recommender.Method.POPULARITY: "Most popular"}
COLUMNS = {"#": st.column_config.NumberColumn("#", width=40),
           "title": st.column_config.TextColumn("Title", width=280),  # most titles whole; on a phone the reason shows too
           "genres": st.column_config.TextColumn("Genres"),
           "ratings": st.column_config.NumberColumn("Ratings", help="Ratings in the training data"),
           "because you liked": st.column_config.TextColumn("Because you liked"),
           "score": None, "item": None}


def train_own() -> None:
    left, right = st.columns(2)
    ratings_file = left.file_uploader("Interactions: user, item, rating (optional), timestamp (optional)",
                                      type=["csv", "txt"], key="rec_ratings_upload")
    items_file = right.file_uploader("Item metadata (optional): item, title, genres", type=["csv", "txt"],
                                     key="rec_items_upload")
    if ratings_file is None:
        return
    raw, read_notices = read_uploaded_csv(ratings_file, "Interactions")
    raw_items, item_read_notices = (read_uploaded_csv(items_file, "Item metadata") if items_file is not None
                                    else (None, []))
    for notice in read_notices + item_read_notices:
        st.info(files.plain(notice))  # notices quote the visitor's file: shown as plain text
    if raw is None or (items_file is not None and raw_items is None):
        return
    key = (ratings_file.file_id, items_file.file_id if items_file is not None else None)
    if st.session_state.get("rec_cleaned", (None,))[0] != key:  # cleaned once per pair of files, not every rerun
        try:
            ratings, notices = recommender.clean_interactions(raw)
            items, item_notices = recommender.clean_items(raw_items, ratings)
            st.session_state.rec_cleaned = (key, ratings, items, notices + item_notices, None)
        except recommender.DataError as exc:
            st.session_state.rec_cleaned = (key, None, None, [], str(exc))
    _, ratings, items, cleaned_notices, problem = st.session_state.rec_cleaned
    if problem:
        st.error(files.plain(problem), icon=":material/error:")
        return
    for notice in cleaned_notices:
        st.info(files.plain(notice))  # notices quote the visitor's file: shown as plain text
    st.caption(f"{len(ratings):,} interactions, {ratings.user.nunique():,} users, {ratings['item'].nunique():,} items.")
    if st.button("Train on this data", type="primary", key="rec_train") and allow_heavy_call():
        if not ensure_model("embedder"):
            return
        with st.status("Training…") as box:
            bar = st.progress(0.0)

            def report(message, fraction=None):
                box.update(label=message)
                if fraction is not None:
                    bar.progress(min(float(fraction), 1.0))

            model = recommender.train(ratings, items, report)
            box.update(label=f"Trained in {model.meta['train_seconds']:.0f} s", state="complete", expanded=False)
        st.session_state.rec_own = model


def show(table: pd.DataFrame, key: str) -> None:
    if table.empty:
        st.info("Nothing to recommend with these filters: try another genre.")
        return
    table = table.copy()
    table.insert(0, "#", range(1, len(table) + 1))
    first = ["#", "title", "because you liked"]  # the reason next to the title: on a phone the grid shows ~2 columns
    order = [c for c in first if c in table.columns] + [c for c in table.columns
                                                        if c not in first and COLUMNS.get(c, True) is not None]
    st.dataframe(table, hide_index=True, column_config=COLUMNS, column_order=order, key=key)


def evaluation(model: recommender.Recommender) -> None:
    if not model.metrics:
        st.info("This model was loaded without its evaluation.")
        return
    meta = model.meta
    st.caption(f"Each user's latest {recommender.HOLDOUT:.0%} of ratings (by timestamp) held out: "
               f"{meta['test_ratings']:,} ratings; trained on the other {meta['train_ratings']:,}. Every held-out "
               "movie counts as relevant; movies a user rated in training are never recommended to them.")
    table = pd.DataFrame(model.metrics).T.drop(columns="users")
    table.index = [recommender.METHODS[k] for k in table.index]
    st.dataframe(table, column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns})
    long = table.drop(columns="coverage").reset_index(names="model").melt("model", var_name="metric")
    fig = px.bar(long, x="metric", y="value", color="model", barmode="group")
    fig.update_layout(xaxis_title="Metric (top 10, averaged over users)", yaxis_title="Value", height=380,
                      legend=dict(orientation="h", y=-0.2))
    st.plotly_chart(fig, width="stretch", key="rec_eval_chart")
    st.caption(recommender.hit_rate_note(model.metrics) + f" Trained in {meta['train_seconds']:.0f} s.")


st.title("🎬 Movie recommender")
st.caption("Recommendations from models we train here on real ratings, each with the movie it follows from; "
           "new visitors pick a few favourites and get recommendations at once, without retraining.")
model_credits("recommender", "embedder", data=recommender.MOVIELENS)
api_help("recommender")

model = sample_or_own_model("recommender", (SAMPLE, OWN), "rec_data", train_own, "rec_own",
                            "Upload interactions (and, if you have it, item metadata), then train.")

left, right = st.columns([3, 1])
which = left.radio("Recommend by", list(recommender.METHODS), format_func=PLAIN_METHODS.get, horizontal=True,
                   key="rec_model", help="  \n".join(f"**{PLAIN_METHODS[m]}**: {name}" for m, name in
                                                    recommender.METHODS.items()))
genre = right.selectbox("Genre", [ALL_GENRES] + model.genres, key="rec_genre")
genre = None if genre == ALL_GENRES else genre

visitor, known, evaluate_tab, search = st.tabs(["New visitor", "Existing user", "Evaluation", "Search titles"], key="recommender_tab")
with visitor:
    popular = model.items.sort_values("ratings", ascending=False)["item"].tolist()
    titles = dict(zip(model.items["item"], model.items.title))
    picked = st.multiselect("Pick a few movies you like (type to search)", popular, format_func=titles.get,
                            key="rec_liked", max_selections=20, placeholder="Toy Story, The Matrix, …",
                            filter_mode="contains", select_all=False)  # Enter never picks every match
    if not picked:
        st.info("Pick at least one movie: recommendations appear as soon as you do.")
    else:
        show(model.recommend(which, liked=picked, genre=genre), "rec_visitor_table")
with known:
    user = st.selectbox("User", model.users, key="rec_user",
                        format_func=lambda u: f"User {u} ({len(model.history.get(u, []))} ratings in training)")
    liked = model.items.title.iloc[model.liked.get(user, [])[:8]].tolist()
    st.caption("Liked in training: " + (files.plain("; ".join(liked)) if liked else "nothing rated 4 or above"))
    show(model.recommend(which, user=user, genre=genre), "rec_user_table")
with evaluate_tab:
    evaluation(model)
with search:
    query = st.text_input("Title contains", key="rec_search", max_chars=200, placeholder="star wars")
    found = model.search(query, limit=len(model.items))
    if genre:  # the genre filter above applies here too
        found = found[found.genres.str.contains(genre, regex=False)]
    found = found.head(50)
    if found.empty:
        st.info(f"No title contains '{files.plain(query)}'" + (f" in {files.plain(genre)}." if genre else "."))
    else:
        item = st.selectbox("Movies like", found["item"].tolist(), format_func=titles.get, key="rec_similar_to")
        similar = model.similar(item)
        st.caption(f"By {'content (title and genres): it has fewer than 5 ratings' if similar.by[0] == 'content' else 'who rated them together (cosine)'}.")
        st.dataframe(similar.drop(columns=["by"]), hide_index=True, column_config={**COLUMNS, "similarity":
                     st.column_config.ProgressColumn("Similarity", min_value=0, max_value=1, format="%.2f")})
