"""core.access: sign-in, password hashes, the lockout and the per-visitor rate limit, on their own and on the
pages; generation caps."""

import pytest
from streamlit.testing.v1 import AppTest

from core import access


def test_password_hashes_verify_and_plain_passwords_work_too():
    stored = access.hash_password("correct horse", iterations=1000)
    assert stored.startswith("pbkdf2_sha256$1000$")
    assert access.check_password("correct horse", stored) and not access.check_password("wrong", stored)
    assert access.check_password("plain", "plain") and not access.check_password("plain ", "plain")
    assert not access.check_password("x", "pbkdf2_sha256$broken")


def test_access_from_secrets_and_environment(monkeypatch):
    monkeypatch.delenv("LAUNCHPAD_PASSWORD", raising=False)
    monkeypatch.delenv("LAUNCHPAD_USERS", raising=False)
    assert not access.load_access({}).required
    rules = access.load_access({"auth": {"users": {"ann": access.hash_password("a1", iterations=1000)}}})
    assert rules.required and rules.verify("ann", "a1") == "ann"
    assert rules.verify("ann", "a2") is None and rules.verify("", "a1") is None
    shared = access.load_access({"auth": {"password": "team"}})
    assert shared.verify("", "team") == "guest" and shared.verify("Bo", "team") == "Bo"
    monkeypatch.setenv("LAUNCHPAD_USERS", "cy:pw1, dee:pw2")
    env = access.load_access({"auth": {"password": "ignored"}})
    assert env.source == "environment" and env.verify("dee", "pw2") == "dee" and env.verify("", "ignored") is None


def test_sign_in_guard_locks_out_after_repeated_failures():
    guard = access.SignInGuard(attempts=3, lockout=30)
    for t in (0, 1, 2):
        assert guard.wait_seconds(t) == 0
        guard.failed(t)
    assert guard.wait_seconds(3) == pytest.approx(27)
    assert guard.wait_seconds(31) == 0


def test_rate_limiter_is_a_sliding_window():
    limiter = access.RateLimiter(calls=2, seconds=10)
    assert limiter.try_acquire(0) == 0 and limiter.try_acquire(1) == 0
    assert limiter.try_acquire(2) == pytest.approx(8)
    assert limiter.try_acquire(10.5) == 0


def test_generation_length_is_capped_whatever_is_asked():
    from core import chat

    plan = chat.Plan("generate", "q")
    assert chat.AnswerStream(plan, max_new_tokens=100_000).max_new_tokens == chat.MAX_NEW_TOKENS


# --- the app -----------------------------------------------------------------------------------------

def app(**secrets) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=120)
    for key, value in secrets.items():
        at.secrets[key] = value
    return at


def test_without_credentials_the_app_is_open_and_says_so():
    at = app().run()
    assert any("Open access" in c.value for c in at.sidebar.caption)
    assert at.title[0].value.startswith("🚀 Launchpad") and not at.get("form")


def test_with_a_password_every_page_needs_sign_in():
    at = app(auth={"password": "s3cret"}).run()
    assert [b.label for b in at.button] == ["Sign in"] and "private" in at.caption[0].value
    at.switch_page("pages/models.py").run()  # a deep page shows the same gate
    assert not any(t.value == "Models" for t in at.title)
    at.text_input(key="sign_in_password").set_value("wrong")
    at.button[0].click().run()
    assert any("don't match" in e.value for e in at.error)
    at.text_input(key="sign_in_password").set_value("s3cret")
    at.button[0].click().run()
    assert any(t.value == "Models" for t in at.title)
    assert any("Signed in as **guest**" in c.value for c in at.sidebar.caption)


def test_heavy_calls_are_rate_limited_per_visitor(monkeypatch):
    monkeypatch.setenv("LAUNCHPAD_RATE_LIMIT", "1/60")
    at = app().run()
    at.switch_page("pages/chatbot.py").run()
    at.chat_input(key="chat_input").set_value("What's a good name for my puppy?").run()
    assert len(at.chat_message) == 2
    at.chat_input(key="chat_input").set_value("What about a name for my cat?").run()
    assert any("going a little fast" in w.value for w in at.warning)
    assert len(at.chat_message) == 2 and any("Not sent" in c.value for c in at.caption)


# --- the store -----------------------------------------------------------------------------------------
