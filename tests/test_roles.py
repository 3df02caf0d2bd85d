"""Roles (#23): viewers use the demos; operators also get Operations, retraining and overwriting saved classes.
Resource budgets refused before the work, and uploads parsed once per file (core functions and pages)."""
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import access, config, store, vision

USERS = "ann:pw-ann,bob:pw-bob"


@pytest.fixture
def no_operators(monkeypatch):
    """The default: the suite's conftest makes everyone an operator; these tests check the real default."""
    monkeypatch.delenv("LAUNCHPAD_OPERATORS", raising=False)


def rules(monkeypatch, operators: str = "", users: str = USERS, password: str = "") -> access.Access:
    monkeypatch.setenv("LAUNCHPAD_OPERATORS", operators)
    monkeypatch.setenv("LAUNCHPAD_USERS", users)
    monkeypatch.setenv("LAUNCHPAD_PASSWORD", password)
    return access.load_access({})


# --- core: who is an operator -----------------------------------------------------------------------------

def test_only_named_users_listed_as_operators_are_operators(monkeypatch):
    r = rules(monkeypatch, "ann")
    assert r.is_operator("ann", named=True)
    assert not r.is_operator("bob", named=True)
    assert not r.is_operator("ann", named=False)  # "ann" typed beside a shared password is not ann
    assert not r.is_operator(None, named=False)
    assert r.operations_refusal("ann", True) == ""
    assert "signed in as bob, a viewer" in r.operations_refusal("bob", True)


def test_an_operator_must_be_a_configured_user(monkeypatch):
    r = rules(monkeypatch, "carol")
    assert not r.is_operator("carol", named=True)
    assert "no operator is named among this app's users" in r.operations_refusal("bob", True)


def test_a_shared_password_makes_no_operator(monkeypatch):
    r = rules(monkeypatch, "guest", users="", password="s3cret")
    assert not r.is_operator("guest", named=False)
    assert "shared password, which names no one" in r.operations_refusal("guest", False)


def test_open_access_has_no_operator_until_one_is_set(monkeypatch):
    r = rules(monkeypatch, "", users="")
    assert not r.required and not r.is_operator(None, False)
    refusal = r.operations_refusal(None, False)
    assert "disabled until an operator is set" in refusal and "LAUNCHPAD_OPERATORS" in refusal
    assert rules(monkeypatch, "*", users="").is_operator(None, False)  # everyone, by explicit choice


HOW = ("name operators in LAUNCHPAD_OPERATORS=alice,bob (or `operators = [\"alice\"]` under [auth] in "
       ".streamlit/secrets.toml); each must be a named user (LAUNCHPAD_USERS or [auth.users]), who signs in "
       "with their own password.")


def test_each_refusal_says_exactly_why_and_how_to_set_an_operator(monkeypatch):
    """The whole message for each of the four cases (mutation testing showed that the checks on fragments above
    let any change to the rest of the wording through; these are what a visitor reads)."""
    assert rules(monkeypatch, "", users="").operations_refusal(None, False) == (
        "**Operations are disabled until an operator is set.** This app has open access (no sign-in), so anyone "
        "with the link could read tickets, load and unload models or retrain them. Configure sign-in with named "
        "users, then " + HOW + " On a machine only you can reach, LAUNCHPAD_OPERATORS=* makes every visitor an "
        "operator.")
    assert rules(monkeypatch, "guest", users="", password="pw").operations_refusal("guest", False) == (
        "**Operations are for operators**, who sign in with their own name. This app has only a shared password, "
        "which names no one. Add named users (LAUNCHPAD_USERS or [auth.users]), then " + HOW)
    assert rules(monkeypatch, "carol").operations_refusal("bob", True) == (
        "**Operations are disabled until an operator is set**: no operator is named among this app's users. "
        + HOW[0].upper() + HOW[1:])
    viewer = ("**Operations are for operators.** You are signed in as {}, a viewer: the demos are all yours. Ask "
              "an operator if you need tickets, models or retraining.")
    assert rules(monkeypatch, "ann").operations_refusal("bob", True) == viewer.format("bob")
    assert rules(monkeypatch, "ann").operations_refusal(None, False) == viewer.format("a visitor")


def test_operators_from_secrets_toml(monkeypatch):
    monkeypatch.delenv("LAUNCHPAD_OPERATORS", raising=False)
    for key in ("LAUNCHPAD_USERS", "LAUNCHPAD_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    for listed in (["ann"], "ann, dee"):
        r = access.load_access({"auth": {"users": {"ann": "x", "bob": "y"}, "operators": listed}})
        assert r.is_operator("ann", True) and not r.is_operator("bob", True)


def test_the_operators_setting_is_in_the_settings_table():
    assert config.SETTINGS["operators"].env == "LAUNCHPAD_OPERATORS"
    assert "`LAUNCHPAD_OPERATORS`" in config.settings_markdown()


# --- core: what only an operator may change ------------------------------------------------------------

def test_a_viewer_cannot_overwrite_a_saved_custom_model():
    model = vision.CustomClassifier(["cats", "dogs"], np.zeros((2, 4), np.float32), np.zeros(2, np.float32),
                                    {"examples": {"cats": 2, "dogs": 2}, "loo_accuracy": 1.0})
    name = vision.save_custom(model, "roles-test-classes", overwrite=False)
    with pytest.raises(ValueError, match="only an operator can replace it"):
        vision.save_custom(model, "roles-test-classes", overwrite=False)
    assert vision.save_custom(model, "roles-test-classes", overwrite=True) == name  # an operator may


def test_the_same_text_corrected_again_is_one_row():
    text = "@united roles test: the seats were fine I guess"
    before = len(store.corrections())
    for label in ("negative", "neutral", "negative"):
        store.add_correction(text, "positive", label)
    rows = [c for c in store.corrections() if c["text"] == text]
    assert len(store.corrections()) == before + 1 and len(rows) == 1 and rows[0]["corrected"] == "negative"


# --- pages ---------------------------------------------------------------------------------------------

def app(timeout: float = 120) -> AppTest:
    return AppTest.from_file("../app.py", default_timeout=timeout)


def sign_in(name: str, password: str) -> AppTest:
    at = app().run()
    at.text_input(key="sign_in_name").set_value(name)
    at.text_input(key="sign_in_password").set_value(password)
    at.button[0].click().run()
    return at


OPERATIONS = ("pages/models.py", "pages/support_desk.py", "pages/training_runs.py")


@pytest.mark.parametrize("page", OPERATIONS)
def test_with_open_access_operations_pages_say_they_are_disabled(no_operators, page):
    at = app().run()
    at.switch_page(page).run()
    assert not at.exception
    warning = " ".join(w.value for w in at.warning)
    assert "disabled until an operator is set" in warning and "LAUNCHPAD_OPERATORS" in warning
    assert not at.button and not at.dataframe  # no Load/Unload, no tickets, no runs


def test_a_viewer_does_not_see_operations_and_an_operator_does(monkeypatch):
    monkeypatch.setenv("LAUNCHPAD_USERS", USERS)
    monkeypatch.setenv("LAUNCHPAD_OPERATORS", "ann")
    viewer = sign_in("bob", "pw-bob")
    assert any("Signed in as **bob**" in c.value for c in viewer.sidebar.caption)
    assert not viewer.exception
    for page in OPERATIONS:  # not in the viewer's navigation at all
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            viewer.switch_page(page)
    operator = sign_in("ann", "pw-ann")
    assert any("(operator)" in c.value for c in operator.sidebar.caption)
    operator.switch_page("pages/models.py").run()
    assert not operator.exception and not operator.warning
    assert any(b.key == "load-embedder" for b in operator.button)


# --- budgets, refused before the work ------------------------------------------------------------------

def png_bytes(size=(64, 48)) -> bytes:
    import io

    from PIL import Image
    out = io.BytesIO()
    Image.radial_gradient("L").resize(size).convert("RGB").save(out, "PNG")
    return out.getvalue()


def test_csv_columns_over_the_budget_are_refused_naming_the_setting(monkeypatch):
    from core import files
    monkeypatch.setenv("LAUNCHPAD_MAX_CSV_COLUMNS", "3")
    assert files.read_csv(b"a,b,c\n1,2,3\n", "ok.csv")[0].shape == (1, 3)
    with pytest.raises(files.UploadError, match=r"Columns in wide.csv: 4, over this server's limit of 3.*"
                                                r"LAUNCHPAD_MAX_CSV_COLUMNS"):
        files.read_csv(b"a,b,c,d\n1,2,3,4\n", "wide.csv")


def test_image_uploads_over_the_file_or_pixel_budget_are_refused_before_decoding(monkeypatch):
    monkeypatch.setenv("LAUNCHPAD_MAX_UPLOAD_FILES", "2")
    monkeypatch.setenv("LAUNCHPAD_MAX_UPLOAD_MEGAPIXELS", "1")
    decoded = []
    monkeypatch.setattr(vision, "read_image", lambda data, name: decoded.append(name))
    with pytest.raises(vision.ImageInputError, match="Images in one upload: 3.*LAUNCHPAD_MAX_UPLOAD_FILES"):
        vision.read_images([(png_bytes(), f"{i}.png") for i in range(3)])
    with pytest.raises(vision.ImageInputError, match="Megapixels in one upload.*: 2.*LAUNCHPAD_MAX_UPLOAD_MEGAPIXELS"):
        vision.read_images([(png_bytes((1000, 1000)), "a.png"), (png_bytes((1000, 600)), "b.png")])
    assert decoded == []  # refused on the headers alone


def test_recommender_data_over_the_users_times_items_budget_is_refused(monkeypatch):
    import pandas as pd

    from core import recommender
    frame = pd.DataFrame({"user": [f"u{i // 20}" for i in range(200)], "item": [f"i{i % 40}" for i in range(200)]})
    assert recommender.clean_interactions(frame)[0].user.nunique() == 10
    monkeypatch.setenv("LAUNCHPAD_RECOMMENDER_MAX_CELLS", "399")
    with pytest.raises(recommender.DataError, match=r"10 users, 40 items\): 400.*LAUNCHPAD_RECOMMENDER_MAX_CELLS"):
        recommender.clean_interactions(frame)


def test_sparse_item_neighbours_match_dense_cosine():
    import pandas as pd

    from core import recommender
    rng = np.random.default_rng(1)
    n_users, n_items = 60, 80
    train = pd.DataFrame({"u": rng.integers(0, n_users, 900), "i": rng.integers(0, n_items, 900)})
    content = rng.normal(size=(n_items, 8)).astype(np.float32)
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    counts = np.bincount(train.i, minlength=n_items)
    idx, val = recommender.item_neighbours(train, n_users, n_items, content, counts, k=5)
    dense = np.zeros((n_users, n_items))
    dense[train.u, train.i] = 1
    dense /= np.maximum(np.linalg.norm(dense, axis=0), 1e-9)
    sims = np.where((counts < recommender.FEW_RATINGS)[:, None], content @ content.T, dense.T @ dense)
    np.fill_diagonal(sims, -1)
    assert np.allclose(val, -np.sort(-sims, axis=1)[:, :5], atol=1e-5)
    assert np.allclose(np.take_along_axis(sims, idx, 1), val, atol=1e-5)


# --- uploads parsed once per file ------------------------------------------------------------------------

def test_a_rerun_does_not_parse_an_uploaded_csv_again(monkeypatch):
    from core import files
    calls = []
    original = files.read_csv
    monkeypatch.setattr(files, "read_csv", lambda data, name: calls.append(name) or original(data, name))
    at = app().run()
    at.session_state["risk_data"] = "Your own data (CSV)"  # from the first run: the sample model is never trained
    at.switch_page("pages/credit_risk.py").run()
    rows = "".join(f"{20 + i % 40},{1000 + i},{'bad' if i % 3 else 'good'}\n" for i in range(60))
    at.file_uploader(key="risk_train_upload").set_value([("past.csv", ("age,income,status\n" + rows).encode(),
                                                         "text/csv")]).run()
    assert not at.exception and calls == ["past.csv"]
    at.selectbox(key="risk_target").set_value("status").run()
    at.run()
    assert calls == ["past.csv"]  # two more runs, no more parsing


def test_a_rerun_does_not_decode_uploaded_images_again(monkeypatch):
    decoded = []
    original = vision.read_image
    monkeypatch.setattr(vision, "read_image", lambda data, name: decoded.append(name) or original(data, name))
    at = app().run()
    at.switch_page("pages/image_classifier.py").run()
    at.segmented_control(key="source").set_value("Upload").run()
    at.file_uploader(key="uploads").set_value([("a.png", png_bytes(), "image/png"),
                                               ("b.png", png_bytes((40, 40)), "image/png")]).run()
    assert not at.exception and decoded == ["a.png", "b.png"]
    at.run()
    at.run()
    assert decoded == ["a.png", "b.png"]


@pytest.mark.slow
def test_a_large_sentiment_batch_is_scored_in_queued_chunks(monkeypatch):
    """Rows per call (LAUNCHPAD_SENTIMENT_ROWS_PER_CALL): 10 pasted lines at 3 per call are 4 calls, one per run."""
    from core import sentiment
    monkeypatch.setenv("LAUNCHPAD_SENTIMENT_ROWS_PER_CALL", "3")
    monkeypatch.setenv("LAUNCHPAD_RATE_LIMIT", "1000/60")  # a fresh limiter: earlier page tests spent this visitor's
    monkeypatch.setattr(sentiment, "serving_slot", lambda: sentiment.QUICK)  # the fine-tuned model is not needed
    sizes = []
    original = sentiment.score_table
    monkeypatch.setattr(sentiment, "score_table", lambda frame, *a, **k: sizes.append(len(frame)) or original(frame, *a, **k))
    at = app(timeout=300).run()  # the first run fits the quick model on the whole training draw (121 s once in CI)
    at.switch_page("pages/sentiment.py").run()
    at.segmented_control(key="batch_source").set_value("Paste lines").run()
    lines = [f"@united flight {i} was {'great, thanks' if i % 2 else 'late again'}" for i in range(10)]
    at.text_area(key="pasted").set_value("\n".join(lines)).run()
    at.button(key="score").click().run()
    assert not at.exception and sizes == [3, 3, 3, 1]
    scored = at.session_state["scored"][0]
    assert scored.text.tolist() == lines and scored.sentiment.isin(sentiment.LABELS).all()
