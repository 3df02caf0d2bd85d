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

def app() -> AppTest:
    return AppTest.from_file("../app.py", default_timeout=120)


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
