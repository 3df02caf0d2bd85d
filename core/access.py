"""Who may use the app, and how often heavy models may be called.

Sign-in is on when a password or a list of users is configured, in `.streamlit/secrets.toml`:

    [auth]
    password = "one shared password"           # or: users, below
    [auth.users]
    alice = "pbkdf2_sha256$600000$...$..."     # `python -m core.access hash` prints one

or in the environment: LAUNCHPAD_PASSWORD, or LAUNCHPAD_USERS="alice:<hash or password>,bob:...".
Stored passwords may be plain text or PBKDF2 hashes; comparisons take constant time.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sys
import threading
import time
from collections import deque
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

    @property
    def required(self) -> bool:
        return bool(self.password or self.users)

    def verify(self, username: str, password: str) -> str | None:
        """The signed-in name, or None. With users configured a name is required."""
        username = (username or "").strip()
        if username and username in self.users:
            return username if check_password(password, self.users[username]) else None
        if self.password and check_password(password, self.password):
            return username or "guest"
        return None


def load_access(secrets_mapping: Mapping | None = None) -> Access:
    """Credentials from the environment (first) or the `[auth]` table of the app's secrets."""
    env_password, env_users = config.setting("password"), config.setting("users")
    if env_password or env_users:
        users = {}
        for pair in filter(None, (p.strip() for p in env_users.split(","))):
            name, _, stored = pair.partition(":")
            if name and stored:
                users[name.strip()] = stored.strip()
        return Access(env_password or None, users, "environment")
    auth = dict((secrets_mapping or {}).get("auth", {}) or {})
    users = {str(k): str(v) for k, v in dict(auth.get("users", {}) or {}).items()}
    return Access(str(auth["password"]) if auth.get("password") else None, users,
                  "secrets.toml" if auth else "")


class SignInGuard:
    """Slows down password guessing: after `attempts` failures, wait `lockout` seconds."""

    def __init__(self, attempts: int = 5, lockout: float = 30.0):
        self.attempts, self.lockout = attempts, lockout
        self.failures: deque[float] = deque(maxlen=attempts)

    def wait_seconds(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        if len(self.failures) < self.attempts:
            return 0.0
        return max(0.0, self.failures[0] + self.lockout - now)

    def failed(self, now: float | None = None) -> None:
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


def main() -> None:
    if sys.argv[1:2] != ["hash"]:
        print("usage: python -m core.access hash   (reads a password, prints a hash for secrets.toml)")
        raise SystemExit(2)
    import getpass

    print(hash_password(getpass.getpass("Password: ")))


if __name__ == "__main__":
    main()
