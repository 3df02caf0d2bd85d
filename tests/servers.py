"""Start the real app (`streamlit run app.py`) on a free loopback port: for the browser and API tests and bench/api.py;
and nginx with deploy/nginx.conf in front of replicas (tests/test_scaleout.py, bench/scaleout.py)."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's, installed by `make setup`
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


async def ask_for_hand_off(page, question: str, timeout_ms: float) -> None:
    """On an open chatbot page (Playwright's async API): asks `question`, one the FAQ does not answer, and waits
    until Penny offers a person (the "Create support ticket" button)."""
    box = page.get_by_test_id("stChatInputTextArea")
    await box.wait_for(timeout=timeout_ms)
    await box.fill(question)
    await box.press("Enter")
    await page.get_by_text("Create support ticket").wait_for(timeout=timeout_ms)


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


NGINX = "/usr/sbin/nginx"


def nginx_config(listen: int, upstreams: list[str], folder: Path) -> str:
    """deploy/nginx.conf with only its upstream `server` lines, `listen` port, pid file and temp folders replaced."""
    import re

    text = (ROOT / "deploy" / "nginx.conf").read_text()
    servers = "".join(f"        server {u} max_fails=1 fail_timeout=10s;\n" for u in upstreams)
    text, n = re.subn(r"(        server app\d:8501 max_fails=1 fail_timeout=10s;\n)+", servers, text)
    if n != 1 or "listen 80;" not in text:
        raise ValueError("deploy/nginx.conf's upstream block or listen line changed shape: update tests/servers.py")
    return text.replace("listen 80;", f"listen 127.0.0.1:{listen};").replace("/tmp/launchpad-nginx", f"{folder}/ng")


@contextmanager
def nginx_server(upstreams: list[str], folder: Path):
    """nginx with deploy/nginx.conf in front of `upstreams` ("127.0.0.1:PORT"), on a free loopback port: yields
    its base URL once it answers; stopped (and waited for) when the block ends. Its error log is folder/error.log."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text(nginx_config(port, upstreams, folder))
    command = [NGINX, "-c", str(conf), "-e", str(folder / "error.log")]
    subprocess.run(command + ["-t"], check=True, capture_output=True)
    proc = subprocess.Popen(command + ["-g", "daemon off;"])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ServerDidNotStart("nginx did not start:\n" + (folder / "error.log").read_text()) from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
