"""Who may use the app, and how often heavy models may be called.

Sign-in is on when a password or a list of users is configured, in `.streamlit/secrets.toml`:

    [auth]
    password = "one shared password"           # or: users, below
    [auth.users]
    alice = "pbkdf2_sha256$600000$...$..."     # `python -m core.access hash` prints one

or in the environment: LAUNCHPAD_PASSWORD, or LAUNCHPAD_USERS="alice:<hash or password>,bob:...".
Stored passwords may be plain text or PBKDF2 hashes; comparisons take constant time.

Two roles: viewers use the demos; operators (named users listed in LAUNCHPAD_OPERATORS, `[app] operators` in
launchpad.toml, or `operators = ["alice"]` under `[auth]`) also get the Operations pages (models, tickets and
feedback, training runs), retraining of shared models and overwriting saved image classes. A shared password
names no one, so it makes no operator; with open access no one is an operator unless LAUNCHPAD_OPERATORS=*
(everyone: for a machine only you can reach).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Mapping

from core import config

ITERATIONS = 600_000


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    if stored.startswith("pbkdf2_sha256$"):
        try:
            _, iterations, salt, digest = stored.split("$")
            computed = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
            return hmac.compare_digest(computed, base64.b64decode(digest))
        except (ValueError, TypeError):
            return False
    return hmac.compare_digest(password.encode(), stored.encode())


@dataclass
class Access:
    """The configured credentials: a shared password, and/or named users."""

    password: str | None = None
    users: dict[str, str] = field(default_factory=dict)
    source: str = ""
    operators: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return bool(self.password or self.users)

    def is_operator(self, user: str | None, named: bool) -> bool:
        """Whether this visitor (the signed-in name, and whether it is a configured user's name rather than one
        typed beside a shared password) is an operator. `*` makes everyone who may use the app one."""
        if "*" in self.operators:
            return not self.required or bool(user)
        return bool(self.required and named and user and user in self.users and user in self.operators)

    def operations_refusal(self, user: str | None, named: bool) -> str:
        """"" for an operator; else why this visitor gets no Operations, and how an operator is set."""
        if self.is_operator(user, named):
            return ""
        how = ("Name operators in LAUNCHPAD_OPERATORS=alice,bob (or `operators = [\"alice\"]` under [auth] in "
               ".streamlit/secrets.toml); each must be a named user (LAUNCHPAD_USERS or [auth.users]), who signs in "
               "with their own password.")
        if not self.required:
            return ("**Operations are disabled until an operator is set.** This app has open access (no sign-in), so "
                    "anyone with the link could read tickets, load and unload models or retrain them. Configure "
                    "sign-in with named users, then " + how[0].lower() + how[1:] + " On a machine only you can "
                    "reach, LAUNCHPAD_OPERATORS=* makes every visitor an operator.")
        if not self.users:
            return ("**Operations are for operators**, who sign in with their own name. This app has only a shared "
                    "password, which names no one. Add named users (LAUNCHPAD_USERS or [auth.users]), then " +
                    how[0].lower() + how[1:])
        if not any(name in self.users for name in self.operators):
            return ("**Operations are disabled until an operator is set**: no operator is named among this app's "
                    "users. " + how)
        return (f"**Operations are for operators.** You are signed in as {user or 'a visitor'}, a viewer: the demos "
                "are all yours. Ask an operator if you need tickets, models or retraining.")

    def verify(self, username: str, password: str) -> str | None:
        """The signed-in name, or None. With users configured a name is required. A known and an unknown name
        cost the same: exactly one password hash is computed either way (a dummy one when the name is unknown
        or its password is stored in plain text), so timing does not tell which names exist."""
        username = (username or "").strip()
        if username and username in self.users:
            stored = self.users[username]
            self._unless_hashed(stored, password)
            return username if check_password(password, stored) else None
        if self.password:
            self._unless_hashed(self.password, password)
            return (username or "guest") if check_password(password, self.password) else None
        self._unless_hashed("", password)
        return None

    def _unless_hashed(self, stored: str, password: str) -> None:
        """With named users, pay for one dummy hash when `stored` is no hash, so every path costs one hash."""
        if self.users and not stored.startswith("pbkdf2_sha256$"):
            check_password(password, self._dummy_hash())

    def _dummy_hash(self) -> str:
        """A hash no password matches, as slow as the slowest configured user's hash."""
        rounds = [int(s.split("$")[1]) for s in self.users.values()
                  if s.startswith("pbkdf2_sha256$") and s.count("$") == 3 and s.split("$")[1].isdigit()]
        return _dummy(max(rounds, default=ITERATIONS))


def load_access(secrets_mapping: Mapping | None = None) -> Access:
    """Credentials from the environment (first) or the `[auth]` table of the app's secrets."""
    env_password, env_users = config.setting("password"), config.setting("users")
    auth = dict((secrets_mapping or {}).get("auth", {}) or {})
    operators = config.setting("operators") or _names(auth.get("operators"))
    if env_password or env_users:
        users = {}
        for pair in filter(None, (p.strip() for p in env_users.split(","))):
            name, _, stored = pair.partition(":")
            if name and stored:
                users[name.strip()] = stored.strip()
        return Access(env_password or None, users, "environment", operators)
    users = {str(k): str(v) for k, v in dict(auth.get("users", {}) or {}).items()}
    return Access(str(auth["password"]) if auth.get("password") else None, users,
                  "secrets.toml" if auth else "", operators)


def _names(value) -> tuple[str, ...]:
    """Operator names from secrets.toml: a list, or one comma-separated string."""
    if not value:
        return ()
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return tuple(p.strip() for p in parts if p.strip())


def _dummy(iterations: int) -> str:
    """A well-formed hash with a random digest: checking any password against it costs `iterations` rounds
    and never matches. Made without hashing anything, so the first unknown name is not slower than the rest."""
    salt, digest = (base64.b64encode(secrets.token_bytes(n)).decode() for n in (16, 32))
    return f"pbkdf2_sha256${min(iterations, 10_000_000)}${salt}${digest}"


class SignInGuard:
    """Slows down password guessing: after `attempts` failures, wait `lockout` seconds."""

    def __init__(self, attempts: int = 5, lockout: float = 30.0):
        self.attempts, self.lockout = attempts, lockout
        self.failures: deque[float] = deque(maxlen=attempts)
        self._lock = threading.Lock()

    def wait_seconds(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self.failures) < self.attempts:
                return 0.0
            return max(0.0, self.failures[0] + self.lockout - now)

    def failed(self, now: float | None = None) -> None:
        with self._lock:
            self.failures.append(time.monotonic() if now is None else now)


class RateLimiter:
    """A sliding-window limit on heavy model calls: at most `calls` per `seconds`, per session."""

    def __init__(self, calls: int | None = None, seconds: float | None = None):
        default_calls, default_seconds = config.setting("rate_limit")  # 30 heavy calls a minute
        self.calls = calls if calls is not None else default_calls
        self.seconds = seconds if seconds is not None else default_seconds
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def try_acquire(self, now: float | None = None) -> float:
        """0 when the call may go ahead (and counts it); else the seconds to wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._times and self._times[0] <= now - self.seconds:
                self._times.popleft()
            if self.calls <= 0 or len(self._times) < self.calls:
                self._times.append(now)
                return 0.0
            return self._times[0] + self.seconds - now


# --- limits per visitor, across sessions -------------------------------------------------------------

class Expiring:
    """A thread-safe map of visitor key -> object that forgets keys not used for `idle` seconds and holds at
    most `size` keys (the least recently used goes first), so a flood of new addresses cannot grow memory."""

    def __init__(self, make, idle: float = 900.0, size: int = 50_000):
        self.make, self.idle, self.size = make, idle, size
        self._items: OrderedDict = OrderedDict()  # key -> (last used, object), least recently used first
        self._lock = threading.Lock()

    def get(self, key, now: float | None = None):
        now = time.monotonic() if now is None else now
        with self._lock:
            entry = self._items.pop(key, None)
            while self._items and (len(self._items) >= self.size
                                   or next(iter(self._items.values()))[0] < now - self.idle):
                self._items.popitem(last=False)
            item = entry[1] if entry else self.make(key)
            self._items[key] = (now, item)
            return item

    def __len__(self) -> int:
        return len(self._items)


_LIMITERS = Expiring(lambda key: RateLimiter(key[1], key[2]))
_LOCKOUTS = Expiring(lambda key: SignInGuard())


def limiter_for(key: str) -> RateLimiter:
    """The process-wide rate limiter of one visitor or API client (`visitor_key`, or the API's client name),
    shared by every session and request with that key. A changed LAUNCHPAD_RATE_LIMIT starts fresh limiters."""
    calls, seconds = config.setting("rate_limit")
    return _LIMITERS.get((key, calls, seconds))


SERVER = "the whole server"  # the key of the server-wide limiter (visitor keys start "user", "address", ...)


def server_limiter() -> RateLimiter:
    """The whole server's budget of heavy model calls, every visitor and API client together
    (LAUNCHPAD_SERVER_RATE_LIMIT): a crowd, each visitor within their own limit, cannot queue unbounded work."""
    calls, seconds = config.setting("server_rate_limit")
    return _LIMITERS.get((SERVER, calls, seconds))


def heavy_call(key: str) -> tuple[float, RateLimiter]:
    """Asks for one heavy model call for visitor or client `key`: (0, the server's limiter) when it may go ahead,
    counted against both budgets; else (seconds to wait, the limiter that refused: the visitor's own, checked
    first so one visitor's flood never spends the others' share, or `server_limiter()`)."""
    own = limiter_for(key)
    wait = own.try_acquire()
    if wait:
        return wait, own
    server = server_limiter()
    return server.try_acquire(), server


def lockout_for(key: str) -> SignInGuard:
    """The process-wide sign-in lockout of one visitor (`visitor_key`): a reload or a new tab keeps it."""
    return _LOCKOUTS.get(key)


def visitor_key(user: str | None, address: str | None, xsrf_cookie: str | None, session: str) -> str:
    """Who a visitor is, for limits: the signed-in name; else the client address; else this browser's XSRF
    token; else the session (nothing better is known: a reload starts afresh). Anything but a non-empty
    string counts as unknown (under AppTest st.context returns mocks)."""
    if isinstance(user, str) and user:
        return f"user {user}"
    if isinstance(address, str) and address:
        return f"address {address}"
    token = browser_token(xsrf_cookie if isinstance(xsrf_cookie, str) else None)
    return f"browser {token}" if token else f"session {session}"


def browser_token(cookie: str | None) -> str:
    """The stable token inside Streamlit's `_streamlit_xsrf` cookie ("2|mask|masked token|time": the mask is
    new on every page load, the token is not), as hex; "" when the cookie is missing or malformed."""
    parts = (cookie or "").split("|")
    if len(parts) != 4 or parts[0] != "2":
        return ""
    try:
        mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
    except ValueError:
        return ""
    if not mask or not masked:
        return ""
    return bytes(b ^ mask[i % len(mask)] for i, b in enumerate(masked)).hex()


def main() -> None:
    if sys.argv[1:2] != ["hash"]:
        print("usage: python -m core.access hash   (reads a password, prints a hash for secrets.toml)")
        raise SystemExit(2)
    import getpass

    print(hash_password(getpass.getpass("Password: ")))


if __name__ == "__main__":
    main()
