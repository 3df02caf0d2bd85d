"""Start the real app (`streamlit run app.py`) on a free loopback port: for the browser and API tests and bench/api.py."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ServerDidNotStart(RuntimeError):
    pass


class Server(str):
    """The base URL (a str, as callers use it), with the server's process for a test that kills it."""
    process: subprocess.Popen


@contextmanager
def streamlit_server(log_path: Path, wait_s: float = 120, **env: str):
    """Yields the server's base URL once /_stcore/health answers; its output goes to `log_path` (an unread pipe
    would block the server once 64 KB had piled up). Raises ServerDidNotStart, with the log, if it exits or
    does not answer within `wait_s`. Stopped when the block ends. Nothing loads at start unless `env` sets
    LAUNCHPAD_PRELOAD."""
    env.setdefault("LAUNCHPAD_PRELOAD", "none")  # a test that wants start-up loading says so
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1", **env), stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                if urllib.request.urlopen(base + "/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise ServerDidNotStart("the server did not start:\n" + log_path.read_text(errors="replace"))
        server = Server(base)
        server.process = proc
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
