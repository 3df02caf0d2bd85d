"""The scale-out topology of deploy/compose.yaml, from Debian packages on loopback: one PostgreSQL (the store),
one llama.cpp server (`python -m core.llm serve`, SmolLM2), two app replicas pointing at both, and nginx with
deploy/nginx.conf (only its upstream `server` lines and `listen` port replaced). One module fixture, because
the topology costs two app start-ups on a 2-core machine."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest
from servers import streamlit_server
from test_llm import start_server
from test_store import new_database, postgres_server, query

from core import config, store

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx_config(listen: int, upstreams: list[str], folder: str) -> str:
    """deploy/nginx.conf with this topology's upstreams, port and temp folders."""
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    servers = "".join(f"        server {u} max_fails=1 fail_timeout=10s;\n" for u in upstreams)
    text, n = re.subn(r"(        server app\d:8501[^\n]*\n)+", servers, text)
    assert n == 1, "deploy/nginx.conf's upstream block changed shape"
    return text.replace("listen 80;", f"listen 127.0.0.1:{listen};").replace("/tmp/launchpad-nginx", folder + "/ng")


def get(url: str, path: str, visitor: str, body: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url + path, headers={"Cookie": f"lp_replica={visitor}",
                                                          "Content-Type": "application/json"},
                                     data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(request, timeout=120) as r:
        return r.status, dict(r.headers), r.read()


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        pytest.skip("nginx is not installed (`make setup` installs Debian's nginx)")
    logs = tmp_path_factory.mktemp("scaleout")
    with ExitStack() as stack:
        server = stack.enter_context(postgres_server())
        db = new_database(server)
        llm_proc, llm_url = start_server(key="scale-key", alias="smol")
        stack.callback(lambda: (llm_proc.terminate(), llm_proc.wait(timeout=30)))
        env = {"LAUNCHPAD_DB": db, "LAUNCHPAD_CHAT_LM": llm_url, "LAUNCHPAD_CHAT_LM_MODEL": "smol",
               "LAUNCHPAD_CHAT_LM_API_KEY": "scale-key", "LAUNCHPAD_RATE_LIMIT": "0/60", "LAUNCHPAD_PASSWORD": "",
               "LAUNCHPAD_USERS": ""}
        replicas = [stack.enter_context(streamlit_server(logs / f"app{n}.log", wait_s=240, **env)) for n in (1, 2)]
        folder = tempfile.mkdtemp(prefix="launchpad-nginx-")
        stack.callback(shutil.rmtree, folder, True)
        port = _free_port()
        conf = Path(folder) / "nginx.conf"
        conf.write_text(nginx_config(port, [r.removeprefix("http://") for r in replicas], folder)
                        .replace("pid /tmp/launchpad-nginx.pid", f"pid {folder}/nginx.pid"))
        subprocess.run([nginx, "-t", "-c", str(conf), "-e", f"{folder}/error.log"], check=True, capture_output=True)
        proc = subprocess.Popen([nginx, "-c", str(conf), "-e", f"{folder}/error.log", "-g", "daemon off;"])
        stack.callback(lambda: (proc.terminate(), proc.wait(timeout=30)))
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                get(base, "/_stcore/health", "probe")
                break
            except OSError:
                time.sleep(0.1)
        yield {"nginx": base, "replicas": replicas, "db": db}


@pytest.mark.slow
def test_two_replicas_share_one_database_and_one_llm_server_and_keep_visitors(topology, monkeypatch):
    base, replicas = topology["nginx"], [r.removeprefix("http://") for r in topology["replicas"]]
    # sticky: each visitor key always reaches one replica; the keys between them reach both
    landing = {}
    for n in range(12):
        seen = {get(base, "/_stcore/health", f"visitor-{n}")[1]["X-Launchpad-Replica"] for _ in range(4)}
        assert len(seen) == 1, f"visitor-{n} moved between replicas: {seen}"
        landing[f"visitor-{n}"] = seen.pop()
    assert set(landing.values()) == set(replicas), landing
    on = {replica: next(v for v, r in landing.items() if r == replica) for replica in replicas}
    # both replicas answer chat, through the one llama.cpp server
    body = {"model": "penny", "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "user", "content": "How do I reset my password?"}]}
    for replica, visitor in on.items():
        status, headers, raw = get(base, "/api/v1/chat/completions", visitor, body)
        assert status == 200 and headers["X-Launchpad-Replica"] == replica
        assert json.loads(raw)["choices"][0]["message"]["content"].strip()
    # one store: rows committed through the shared database are there for every replica's process
    monkeypatch.setenv("LAUNCHPAD_DB", topology["db"])
    ids = [store.create_ticket(f"scale-out ticket {i}", [{"role": "user", "content": "help"}]) for i in range(20)]
    # killing a replica: the other keeps serving its visitors too, and no committed row is lost
    os.kill(int(_pid_listening(replicas[0])), signal.SIGKILL)
    # nginx moves idempotent requests of the dead replica's visitors on (a POST is not replayed: no duplicates)
    status, headers, _ = get(base, "/_stcore/health", on[replicas[0]])
    assert status == 200 and headers["X-Launchpad-Replica"].endswith(replicas[1])
    assert {i for (i,) in query(topology["db"], "SELECT id FROM tickets")} >= set(ids)
    assert config.setting("db") == topology["db"]


def _pid_listening(hostport: str) -> str:
    port = hostport.rsplit(":", 1)[1]
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    return re.search(r"pid=(\d+)", out).group(1)
