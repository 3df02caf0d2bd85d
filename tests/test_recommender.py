"""Issue 6: recommender split, metrics, models, fold-in, uploads, the slot and the page."""
import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import files, recommender
from core.registry import Registry, registry


def two_tastes(users: int = 40, items: int = 40, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Half the users watch only the first half of the items, half only the second half."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        block = range(0, items // 2) if u < users // 2 else range(items // 2, items)
        for t, i in enumerate(rng.choice(list(block), size=12, replace=False)):
            rows.append({"user": f"u{u}", "item": f"i{i}", "rating": float(rng.integers(3, 6)), "timestamp": t})
    items_frame = pd.DataFrame({"item": [f"i{i}" for i in range(items)],
                                "title": [f"{'Space' if i < items // 2 else 'Romance'} film {i}" for i in range(items)],
                                "genres": ["Sci-Fi" if i < items // 2 else "Romance" for i in range(items)]})
    return pd.DataFrame(rows), items_frame


@pytest.fixture(scope="module")
def small():
    ratings, items = two_tastes()
    return recommender.train(ratings, items, epochs=30)


# --- the split ---------------------------------------------------------------------------------------

def test_the_split_holds_out_each_users_latest_ratings_and_leaks_nothing():
    ratings, _ = recommender.movielens()
    train, test = recommender.split(ratings)
    assert len(train) + len(test) == len(ratings)
    assert not set(zip(train.user, train["item"])) & set(zip(test.user, test["item"]))
    latest_train = train.groupby("user").timestamp.max()
    earliest_test = test.groupby("user").timestamp.min()
    assert (latest_train.loc[earliest_test.index] <= earliest_test).all()
    sizes = ratings.groupby("user").size()
    assert (test.groupby("user").size() == np.maximum(1, np.floor(sizes * 0.2)).astype(int)).all()


def test_ties_in_time_are_split_by_row_order_without_duplicates():
    frame = pd.DataFrame({"user": ["a"] * 5, "item": list("vwxyz"), "rating": 4.0, "timestamp": [1, 2, 2, 2, 2]})
    train, test = recommender.split(frame)
    assert train["item"].tolist() == ["v", "w", "x", "y"] and test["item"].tolist() == ["z"]


# --- metrics, by hand ------------------------------------------------------------------------------------

def test_metrics_on_a_tiny_example_match_hand_computation():
    recommended = {"a": [1, 2, 3], "b": [4, 5, 6]}
    relevant = {"a": [2, 9], "b": [7]}
    m = recommender.ranking_metrics(recommended, relevant, catalogue=10, k=3)
    # a: one hit (item 2) at rank 2 of 3; b: no hits
    assert m["precision@3"] == pytest.approx((1 / 3 + 0) / 2)
    assert m["recall@3"] == pytest.approx((1 / 2 + 0) / 2)
    ndcg_a = (1 / np.log2(3)) / (1 / np.log2(2) + 1 / np.log2(3))  # hit at rank 2; ideal: two hits at ranks 1-2
    assert m["NDCG@3"] == pytest.approx(ndcg_a / 2)
    assert m["coverage"] == pytest.approx(6 / 10) and m["users"] == 2


def test_a_perfect_ranking_scores_one():
    m = recommender.ranking_metrics({"a": [5, 6]}, {"a": [6, 5]}, catalogue=4, k=2)
    assert m["NDCG@2"] == pytest.approx(1) and m["precision@2"] == 1 and m["recall@2"] == 1


# --- the models --------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["bpr", "item_item", "content"])
def test_a_new_visitor_is_folded_in_and_gets_their_own_taste(small, model):
    liked = ["i0", "i1", "i2"]
    recs = small.recommend(model, liked=liked)
    assert len(recs) == 10 and not set(recs["item"]) & set(liked)
    assert all(int(i[1:]) < 20 for i in recs["item"]), recs  # all from the first half, like the visitor
    titles = set(small.items.set_index("item").loc[liked, "title"])
    assert set(recs["because you liked"]) <= titles


def test_known_users_never_get_what_they_rated_and_the_genre_filter_holds(small):
    user = small.users[25]
    rated = set(small.items["item"].iloc[small.history[user]])
    for model in recommender.METHODS:
        recs = small.recommend(model, user=user, genre="Romance")
        assert not set(recs["item"]) & rated and recs.genres.eq("Romance").all()


def test_fold_in_separates_the_two_tastes(small):
    a = recommender.fold_in(small.item_factors, small.item_bias, np.arange(0, 5))
    b = recommender.fold_in(small.item_factors, small.item_bias, np.arange(20, 25))
    first, second = small.item_factors[:20], small.item_factors[20:]
    assert (first @ a).mean() > (second @ a).mean() and (second @ b).mean() > (first @ b).mean()


def test_the_slot_loads_a_folder_written_by_save_and_names_a_folder_without_one(small, tmp_path, monkeypatch):
    recommender.save(small, tmp_path / "rec")
    monkeypatch.setenv("LAUNCHPAD_RECOMMENDER", str(tmp_path / "rec"))
    loaded = Registry(registry.specs()).get("recommender")
    assert loaded.model.recommend("bpr", "u0", k=5).equals(small.recommend("bpr", "u0", k=5))
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("LAUNCHPAD_RECOMMENDER", str(tmp_path / "empty"))
    with pytest.raises(Exception, match="has no arrays.safetensors"):
        Registry(registry.specs()).get("recommender")


def test_save_and_load_give_the_same_recommendations(small, tmp_path):
    recommender.save(small, tmp_path / "rec")
    again = recommender.load(tmp_path / "rec")
    for model in recommender.METHODS:
        pd.testing.assert_frame_equal(again.recommend(model, user="u3"), small.recommend(model, user="u3"))
    assert again.metrics == small.metrics


# --- uploads ---------------------------------------------------------------------------------------------

def test_missing_columns_get_a_clear_message():
    frame, _ = files.read_csv(b"customer,product\n1,2\n", "x.csv")
    with pytest.raises(recommender.DataError, match="Missing column\\(s\\): user, item"):
        recommender.clean_interactions(frame)


def test_bad_ratings_duplicates_and_empty_cells_are_reported_not_fatal():
    ratings, _ = two_tastes()
    text = ratings.astype(str)
    text.loc[0, "rating"] = "five"
    text.loc[1, "user"] = ""
    text = pd.concat([text, text.iloc[[5]].assign(rating="1", timestamp="99")], ignore_index=True)
    clean, notices = recommender.clean_interactions(text)
    joined = " ".join(notices)
    assert "not a number" in joined and "empty user" in joined and "latest rating was kept" in joined
    assert len(clean) == len(ratings) - 2
    pair = clean[(clean.user == text.user[5]) & (clean["item"] == text["item"][5])]
    assert pair.rating.tolist() == [1.0]


def test_a_european_ratings_file_keeps_its_half_stars():
    ratings, _ = two_tastes()
    ratings = ratings.assign(rating=ratings.rating - 0.5 * (ratings.index % 2))  # half stars
    semicolons = ratings.astype(str).assign(rating=ratings.rating.map(lambda r: f"{r:g}".replace(".", ",")))
    frame, _ = files.read_csv(semicolons.to_csv(sep=";", index=False).encode(), "ratings.csv")
    clean, notices = recommender.clean_interactions(frame)
    assert not any("not a number" in n for n in notices)
    assert sorted(clean.rating) == sorted(ratings.rating)


def test_too_little_data_is_refused():
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"]})
    with pytest.raises(recommender.DataError, match="Too little data"):
        recommender.clean_interactions(frame)


def test_item_metadata_without_an_item_column_is_refused_and_unmatched_items_keep_their_id():
    ratings, items = two_tastes()
    with pytest.raises(recommender.DataError, match="'item' column"):
        recommender.clean_items(pd.DataFrame({"name": ["x"]}), ratings)
    clean, notices = recommender.clean_items(items.head(30), ratings)
    assert len(clean) == 40 and "10 item(s) have no metadata" in notices[0]
    assert clean.set_index("item").loc["i35", "title"] == "i35"


# --- MovieLens through the registry ------------------------------------------------------------------

@pytest.fixture(scope="module")
def movielens_model():
    return registry.get("recommender").model  # trains into the test store on first use


def test_on_movielens_the_trained_model_beats_popularity_on_ndcg(movielens_model):
    m = movielens_model.metrics
    assert m["bpr"]["users"] == 671
    assert m["bpr"]["NDCG@10"] > m["popularity"]["NDCG@10"]
    assert m["bpr"]["coverage"] > m["popularity"]["coverage"]


def test_similar_items_use_content_for_items_with_few_ratings(movielens_model):
    items = movielens_model.items
    rare = items[items.ratings == 1]["item"].iloc[0]
    common = items.sort_values("ratings")["item"].iloc[-1]
    assert movielens_model.similar(rare).by[0] == "content"
    assert movielens_model.similar(common).by[0] == "ratings"
    star_wars = movielens_model.search("star wars")
    assert len(star_wars) >= 3 and star_wars.title.str.contains("Star Wars").all()


def page() -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=300).run()
    return at.switch_page("pages/recommender.py").run()


def test_page_recommends_for_a_new_visitor_and_a_user(movielens_model):
    at = page()
    assert not at.exception
    assert any("Pick at least one" in i.value for i in at.info)
    toy = movielens_model.items.set_index("title").loc["Toy Story (1995)", "item"]
    calls = registry.state("recommender").calls
    at.multiselect(key="rec_liked").set_value([toy]).run()
    assert registry.state("recommender").calls > calls  # the Models page counts the page's calls
    table = at.dataframe[0].value
    assert len(table) == 10 and (table["because you liked"] == "Toy Story (1995)").all()
    at.selectbox(key="rec_genre").set_value("Animation").run()
    assert at.dataframe[0].value.genres.str.contains("Animation").all()
    assert len(at.dataframe[1].value) == 10
    assert not at.exception
    at.text_input(key="rec_search").set_value("the").run()  # the search tab keeps the genre filter
    found = at.selectbox(key="rec_similar_to").options
    genres = movielens_model.items.set_index("title").genres
    assert found and all("Animation" in genres[title] for title in found), found[:5]
    picker = at.multiselect(key="rec_liked").proto
    assert picker.select_all == 0  # no "Select N matches": Enter after typing "Up" filled the 20 picks with unrelated films
    from streamlit.proto.SelectWidgetFilterMode_pb2 import SelectWidgetFilterMode
    assert picker.filter_mode == SelectWidgetFilterMode.FILTER_MODE_CONTAINS  # "Matrix" offered a kung-fu film by fuzzy match


def test_page_refuses_a_malformed_upload_and_trains_on_a_good_one(movielens_model):
    at = page()
    at.segmented_control(key="rec_data").set_value(recommender_own(at)).run()
    at.file_uploader(key="rec_ratings_upload").set_value([("r.csv", b"a,b\n1,2\n", "text/csv")]).run()
    assert any("Missing column" in e.value for e in at.error)
    ratings, items = two_tastes()
    at.file_uploader(key="rec_ratings_upload").set_value(
        [("r.csv", ratings.to_csv(index=False).encode(), "text/csv")])
    at.file_uploader(key="rec_items_upload").set_value([("i.csv", items.to_csv(index=False).encode(), "text/csv")])
    at.run()
    at.button(key="rec_train").click().run()
    assert not at.exception and not at.error
    assert "rec_own" in at.session_state and at.session_state.rec_own.meta["users"] == 40


def recommender_own(at) -> str:
    return next(o for o in at.segmented_control(key="rec_data").options if "own" in o)


def test_infinite_and_absurd_ratings_are_skipped_with_a_notice():
    rows = [{"user": str(u), "item": str(i), "rating": "4"} for u in range(6) for i in range(12)]
    rows[0]["rating"], rows[1]["rating"] = "inf", "1e308"
    ratings, notices = recommender.clean_interactions(pd.DataFrame(rows))
    assert len(ratings) == len(rows) - 2 and np.isfinite(ratings.rating).all()
    assert any("infinite or beyond" in n and "2 row(s)" in n for n in notices)
