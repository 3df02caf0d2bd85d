"""core.access: sign-in, password hashes, the lockout and the per-visitor rate limit, on their own and on the
pages; generation caps."""

import pytest
from streamlit.runtime.context import ContextProxy
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


@pytest.fixture
def fresh_visitors(monkeypatch):
    """Empty per-visitor limiter and lockout tables for this test: the process-wide ones keep what earlier tests
    (or an earlier run in the same process, as under mutmut) did with the same visitor key."""
    monkeypatch.setattr(access, "_LIMITERS", access.Expiring(lambda key: access.RateLimiter(key[1], key[2])))
    monkeypatch.setattr(access, "_LOCKOUTS", access.Expiring(lambda key: access.SignInGuard()))


def test_by_default_five_wrong_passwords_lock_a_visitor_out_for_30_seconds(fresh_visitors):
    """The README's promise, through what the sign-in form uses (lockout_for), not only the class defaults."""
    for guard in (access.SignInGuard(), access.lockout_for("address 203.0.113.250")):
        for t in range(4):
            guard.failed(100.0 + t)
        assert guard.wait_seconds(104.0) == 0  # four failures: not yet
        guard.failed(104.0)
        assert guard.wait_seconds(104.0) == pytest.approx(26.0)  # 30 s from the first of the five
        assert guard.wait_seconds(129.9) > 0 and guard.wait_seconds(130.0) == 0


def test_by_default_30_heavy_calls_a_minute_are_allowed(monkeypatch, fresh_visitors):
    monkeypatch.delenv("LAUNCHPAD_RATE_LIMIT", raising=False)
    monkeypatch.setenv("LAUNCHPAD_CONFIG", "/dev/null")
    for limiter in (access.RateLimiter(), access.limiter_for("address 203.0.113.251")):
        assert all(limiter.try_acquire(1000.0 + i) == 0 for i in range(30))
        assert limiter.try_acquire(1030.0) == pytest.approx(30.0)  # the 31st within the minute waits
        assert limiter.try_acquire(1059.9) > 0 and limiter.try_acquire(1060.0) == 0  # the first has left the window


def test_by_default_the_server_allows_300_heavy_calls_a_minute_and_each_visitor_spends_only_their_own(
        monkeypatch, fresh_visitors):
    monkeypatch.setenv("LAUNCHPAD_CONFIG", "/dev/null")
    monkeypatch.delenv("LAUNCHPAD_SERVER_RATE_LIMIT", raising=False)
    monkeypatch.delenv("LAUNCHPAD_RATE_LIMIT", raising=False)
    server = access.server_limiter()
    assert (server.calls, server.seconds) == (300, 60.0)
    for i in range(40):  # one visitor's flood: 30 go ahead, the other 10 are refused by their own limit
        wait, limiter = access.heavy_call("address 198.51.100.7")
        assert (wait == 0) == (i < 30) and (limiter is server) == (i < 30)
    allowed = sum(access.heavy_call(f"address 198.51.100.{n}")[0] == 0 for n in range(100, 120) for _ in range(30))
    assert allowed == 270  # 600 asked by 20 visitors each within their limit: the server's 300, less the first 30
    wait, limiter = access.heavy_call("address 198.51.100.250")
    assert wait > 0 and limiter is server


def test_the_server_budget_setting_changes_it_and_0_turns_it_off(monkeypatch, fresh_visitors):
    monkeypatch.setenv("LAUNCHPAD_SERVER_RATE_LIMIT", "2/60")
    assert [access.heavy_call(f"address 192.0.2.{n}")[0] == 0 for n in range(3)] == [True, True, False]
    monkeypatch.setenv("LAUNCHPAD_SERVER_RATE_LIMIT", "0/60")
    assert all(access.heavy_call(f"address 192.0.2.{n}")[0] == 0 for n in range(500))


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


def test_a_visitor_within_their_limit_is_told_when_the_whole_server_is_busy(monkeypatch, fresh_visitors):
    monkeypatch.setenv("LAUNCHPAD_RATE_LIMIT", "100/60")
    monkeypatch.setenv("LAUNCHPAD_SERVER_RATE_LIMIT", "1/60")
    at = app().run()
    at.switch_page("pages/chatbot.py").run()
    at.chat_input(key="chat_input").set_value("What's a good name for my puppy?").run()
    assert len(at.chat_message) == 2 and not at.warning
    at.chat_input(key="chat_input").set_value("What about a name for my cat?").run()
    assert any("The demo is busy" in w.value and "all visitors together may make 1 model calls" in w.value
               for w in at.warning)
    assert len(at.chat_message) == 2 and any("Not sent" in c.value for c in at.caption)


# --- the store -----------------------------------------------------------------------------------------


# --- limits per visitor, across sessions (#23) ---------------------------------------------------------

@pytest.fixture
def address(monkeypatch, fresh_visitors):
    """Set the client address every AppTest run sees as st.context.ip_address (AppTest cannot seed it)."""
    current = {"ip": None}
    monkeypatch.setattr(ContextProxy, "ip_address", property(lambda self: current["ip"]))

    def use(ip: str) -> None:
        current["ip"] = ip
    return use


def test_limiters_are_shared_per_key_and_expire():
    assert access.limiter_for("address 198.51.100.1") is access.limiter_for("address 198.51.100.1")
    assert access.limiter_for("address 198.51.100.1") is not access.limiter_for("address 198.51.100.2")
    assert access.lockout_for("address 198.51.100.1") is access.lockout_for("address 198.51.100.1")
    made = access.Expiring(lambda key: object(), idle=10, size=3)
    first = made.get("a", now=0)
    assert made.get("a", now=5) is first  # used again: kept
    for i, key in enumerate("bcd"):
        made.get(key, now=6 + i)
    assert len(made) == 3 and "a" not in made._items  # bounded: the least recently used went
    made.get("e", now=100)
    assert len(made) == 1  # everything idle for more than 10 s expired


def test_visitor_key_prefers_a_named_user_then_the_address_then_the_browser():
    from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string

    token = bytes(range(16))
    cookie, reloaded = generate_xsrf_token_string(token, 1), generate_xsrf_token_string(token, 1)
    assert cookie != reloaded  # a new mask on every page load ...
    assert access.browser_token(cookie) == access.browser_token(reloaded) == token.hex()  # ... the same browser
    assert access.visitor_key("ann", "203.0.113.9", cookie, "s1") == "user ann"
    assert access.visitor_key(None, "203.0.113.9", cookie, "s1") == "address 203.0.113.9"
    assert access.visitor_key(None, None, cookie, "s1") == f"browser {token.hex()}"
    assert access.visitor_key(None, None, "garbage", "s1") == "session s1"


def test_a_new_session_from_the_same_address_stays_rate_limited(monkeypatch, address):
    monkeypatch.setenv("LAUNCHPAD_RATE_LIMIT", "1/3600")
    address("203.0.113.10")
    first = app().run()
    first.switch_page("pages/image_classifier.py").run()
    assert not first.exception and not any("going a little fast" in w.value for w in first.warning)
    again = app().run()  # a reload: a new session, the same visitor
    again.switch_page("pages/image_classifier.py").run()
    assert any("going a little fast" in w.value for w in again.warning)
    address("203.0.113.11")  # someone else is not limited by them
    other = app().run()
    other.switch_page("pages/image_classifier.py").run()
    assert not any("going a little fast" in w.value for w in other.warning)


def wrong_password(at: AppTest, password: str = "wrong") -> AppTest:
    at.text_input(key="sign_in_password").set_value(password)
    at.button[0].click().run()
    return at


def test_a_new_session_from_the_same_address_stays_locked_out(address):
    address("203.0.113.20")
    at = app(auth={"password": "s3cret"}).run()
    for _ in range(5):
        wrong_password(at)
    again = wrong_password(app(auth={"password": "s3cret"}).run(), "s3cret")  # reload, then the right password
    assert any("Too many attempts" in e.value for e in again.error)
    assert not any("Signed in as" in c.value for c in again.sidebar.caption)
    address("203.0.113.21")
    other = wrong_password(app(auth={"password": "s3cret"}).run(), "s3cret")
    assert not other.error and any("Signed in as" in c.value for c in other.sidebar.caption)


def test_sign_in_hashes_once_for_known_and_unknown_names(monkeypatch):
    """Timing without a clock: each path computes exactly one PBKDF2 of the same cost."""
    ann = access.hash_password("a1", iterations=1000)
    rules = access.Access(None, {"ann": ann, "bo": "plain-text"})
    calls = []
    real = access.check_password
    monkeypatch.setattr(access, "check_password", lambda pw, stored: calls.append(stored) or real(pw, stored))

    def rounds(name: str) -> list[str]:
        calls.clear()
        rules.verify(name, "guess")
        return [s.split("$")[1] for s in calls if s.startswith("pbkdf2_sha256$")]

    assert rounds("ann") == ["1000"]
    assert rounds("nobody") == ["1000"]  # the unknown name pays for a dummy hash as slow as ann's
    assert rounds("bo") == ["1000"]  # so does a user whose password is stored in plain text
    assert rules.verify("nobody", "a1") is None and rules.verify("ann", "a1") == "ann"


# --- what mutation testing found unchecked (tests/mutants.md) --------------------------------------------

def test_hashes_have_a_16_byte_salt_and_dummies_look_like_real_hashes():
    import base64

    _, rounds, salt, digest = access.hash_password("pw", iterations=1000).split("$")
    assert rounds == "1000" and len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
    _, rounds, salt, digest = access._dummy(1000).split("$")
    assert rounds == "1000" and len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
    assert access._dummy(10**12).split("$")[1] == "10000000"  # capped: a huge stored count cannot stall sign-in
    assert not access.check_password("", access._dummy(1000))


def test_a_malformed_stored_hash_is_skipped_when_sizing_the_dummy():
    rules = access.Access(users={"ann": "pbkdf2_sha256$many$x$y", "bo": access.hash_password("b", iterations=1500)})
    assert rules._dummy_hash().split("$")[1] == "1500"
    assert rules.verify("nobody", "x") is None and rules.verify("ann", "x") is None and rules.verify("bo", "b") == "bo"


def test_the_hash_command_prints_a_hash_of_the_typed_password(monkeypatch, capsys):
    import getpass

    monkeypatch.setattr("sys.argv", ["core.access"])
    with pytest.raises(SystemExit) as info:
        access.main()
    assert info.value.code == 2
    assert capsys.readouterr().out == "usage: python -m core.access hash   (reads a password, prints a hash for secrets.toml)\n"
    monkeypatch.setattr("sys.argv", ["core.access", "hash"])
    prompts = []
    monkeypatch.setattr(getpass, "getpass", lambda prompt: prompts.append(prompt) or "typed secret")
    access.main()
    assert prompts == ["Password: "]
    printed = capsys.readouterr().out.strip()
    assert printed.startswith(f"pbkdf2_sha256${access.ITERATIONS}$") and access.check_password("typed secret", printed)


def test_a_shared_password_beside_named_users_still_signs_in_with_one_hash(monkeypatch):
    rules = access.Access(password="team", users={"ann": access.hash_password("a1", iterations=1000)})
    hashed = []
    real = access.hashlib.pbkdf2_hmac
    monkeypatch.setattr(access.hashlib, "pbkdf2_hmac", lambda *a: hashed.append(a[3]) or real(*a))
    assert rules.verify("", "team") == "guest" and rules.verify("bo", "team") == "bo"
    assert rules.verify("bo", "wrong") is None and rules.verify("ann", "a1") == "ann"
    assert len(hashed) == 4  # one per attempt: a dummy for the plain shared password, the real one for ann


def test_a_second_burst_of_failures_after_the_lockout_locks_out_again():
    guard = access.SignInGuard()
    for t in range(5):
        guard.failed(float(t))
    assert guard.wait_seconds(100.0) == 0
    for t in range(100, 105):
        guard.failed(float(t))
    assert guard.wait_seconds(105.0) == pytest.approx(25.0)  # counted from the first of the last five
