"""The scale-out topology of deploy/compose.yaml, from Debian packages on loopback: one PostgreSQL (the store),
one llama.cpp server (`python -m core.llm serve`, SmolLM2), two app replicas given the environment compose.yaml
gives them, and nginx running deploy/nginx.conf (only its upstream `server` lines, port and temp paths
replaced). One module fixture, because the topology costs two app start-ups on a 2-core machine; the test that
kills a replica runs last."""
import json
import os
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import psutil
import pytest
import yaml
from servers import CHROMIUM, NGINX, nginx_server, streamlit_server
from test_llm import start_server
from test_store import new_database, postgres_server, query

ROOT = Path(__file__).resolve().parent.parent
LLM_KEY = "scale-key"
QUESTION = "Which payment methods do you accept?"  # in the sample FAQ: retrieval is confident, the LLM answers
pytestmark = pytest.mark.slow


def compose_environment() -> dict[str, str]:
    """The app replicas' environment in deploy/compose.yaml."""
    return yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["x-app"]["environment"]


def call(url: str, path: str, visitor: str, body: dict | None = None, timeout: float = 120) -> tuple[int, dict, bytes]:
    """One request as the visitor whose lp_replica cookie is `visitor`: (status, headers, body), also for 4xx/5xx."""
    request = urllib.request.Request(url + path, headers={"Cookie": f"lp_replica={visitor}",
                                                          "Content-Type": "application/json"},
                                     data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (`make setup` installs Debian's nginx)")
    logs = tmp_path_factory.mktemp("scaleout")
    with ExitStack() as stack:
        db = new_database(stack.enter_context(postgres_server()))
        llm_proc, llm_url = start_server(key=LLM_KEY, alias="smol")
        stack.callback(lambda: (llm_proc.terminate(), llm_proc.wait(timeout=30)))
        # compose.yaml's variables with this machine's addresses; the test adds only what a test needs
        env = {"LAUNCHPAD_DB": db, "LAUNCHPAD_CHAT_LM": llm_url, "LAUNCHPAD_CHAT_LM_B": llm_url,
               "LAUNCHPAD_CHAT_LM_API_KEY": LLM_KEY, "LAUNCHPAD_CHAT_LM_B_API_KEY": LLM_KEY,
               "LAUNCHPAD_STORE": os.environ["LAUNCHPAD_STORE"]}
        assert set(env) == set(compose_environment()), "deploy/compose.yaml's app environment changed: follow it here"
        env |= {"LAUNCHPAD_RATE_LIMIT": "0/60", "LAUNCHPAD_SERVER_RATE_LIMIT": "0/60", "LAUNCHPAD_PASSWORD": "", "LAUNCHPAD_USERS": "",
                "LAUNCHPAD_EMBEDDER_RUNTIME": "torch"}  # not the int8 export (10-20 s a replica; test_quantised's)
        replicas = [stack.enter_context(streamlit_server(logs / f"app{n}.log", wait_s=240, **env)) for n in (1, 2)]
        base = stack.enter_context(nginx_server([r.removeprefix("http://") for r in replicas], logs / "nginx"))
        yield {"nginx": base, "replicas": replicas, "db": db, "llm": llm_url}


@pytest.fixture(scope="module")
def visitors(topology) -> dict[str, str]:
    """replica address -> a visitor key nginx sends there (found by asking, as a browser's cookie would be)."""
    found: dict[str, str] = {}
    for n in range(64):
        status, headers, _ = call(topology["nginx"], "/_stcore/health", f"visitor-{n}")
        assert status == 200
        found.setdefault(headers["X-Launchpad-Replica"], f"visitor-{n}")
        if len(found) == 2:
            return found
    pytest.fail(f"64 visitor keys all reached {set(found)}: the upstream hash does not spread visitors")


def replica_address(topology, n: int) -> str:
    return topology["replicas"][n].removeprefix("http://")


def test_a_visitor_stays_on_one_replica_and_a_new_visitor_gets_a_cookie(topology, visitors):
    for n in range(12):
        seen = {call(topology["nginx"], "/_stcore/health", f"visitor-{n}")[1]["X-Launchpad-Replica"] for _ in range(4)}
        assert len(seen) == 1, f"visitor-{n} moved between replicas: {seen}"
    with urllib.request.urlopen(topology["nginx"] + "/_stcore/health") as r:  # no cookie yet: one is set
        cookie = next(c for c in r.headers.get_all("Set-Cookie") if c.startswith("lp_replica="))
    key = cookie.split(";")[0].removeprefix("lp_replica=")
    assert len(key) == 32 and "HttpOnly" in cookie, cookie
    first = call(topology["nginx"], "/_stcore/health", key)[1]["X-Launchpad-Replica"]
    assert {call(topology["nginx"], "/healthz", key)[1]["X-Launchpad-Replica"] for _ in range(4)} == {first}
    assert set(visitors) == {replica_address(topology, 0), replica_address(topology, 1)}


def _llm_tasks(llm_url: str) -> int:
    """The highest task id the one llama.cpp server has run (its /slots endpoint; ids only grow)."""
    request = urllib.request.Request(llm_url.removesuffix("/v1") + "/slots",
                                     headers={"Authorization": f"Bearer {LLM_KEY}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return max((s.get("id_task", -1) for s in json.load(r)), default=-1)


def _llm_busy(llm_url: str) -> bool:
    request = urllib.request.Request(llm_url.removesuffix("/v1") + "/slots",
                                     headers={"Authorization": f"Bearer {LLM_KEY}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return any(s.get("is_processing") for s in json.load(r))


def test_both_replicas_answer_chat_through_the_one_llm_server(topology, visitors):
    body = {"model": "penny", "max_tokens": 24, "temperature": 0, "messages": [{"role": "user", "content": QUESTION}]}
    for replica, visitor in visitors.items():
        before = _llm_tasks(topology["llm"])
        status, headers, raw = call(topology["nginx"], "/api/v1/chat/completions", visitor, body)
        assert status == 200 and headers["X-Launchpad-Replica"] == replica, raw
        answer = json.loads(raw)
        assert answer["choices"][0]["message"]["content"].strip() and answer["usage"]["completion_tokens"] > 0
        assert _llm_tasks(topology["llm"]) > before, f"{replica} answered, but not through the shared LLM server"
    for server in topology["replicas"]:  # and no replica runs a model server of its own
        children = psutil.Process(server.process.pid).children(recursive=True)
        assert not [c.cmdline() for c in children if "core.llm" in " ".join(c.cmdline())]


@pytest.mark.browser
@pytest.mark.skipif(os.environ.get("LAUNCHPAD_SKIP_BROWSER") == "1", reason="LAUNCHPAD_SKIP_BROWSER=1")
def test_a_ticket_filed_through_replica_1_is_on_replica_2s_support_desk(topology, visitors):
    from playwright.sync_api import sync_playwright

    one, two = replica_address(topology, 0), replica_address(topology, 1)
    question = f"Scale-out: my invoice {os.urandom(4).hex()} never arrived <b>twice</b>"
    status, headers, raw = call(topology["nginx"], "/api/v1/tickets", visitors[one],
                                {"question": question, "name": "Ana", "email": "ana@example.com"})
    assert status == 201 and headers["X-Launchpad-Replica"] == one, raw
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run `make setup`"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "lp_replica", "value": visitors[two], "url": topology["nginx"]}])
            page = context.new_page()
            sockets: list[dict] = []  # the Streamlit session's WebSocket handshake, as Chromium saw it
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.on("Network.webSocketHandshakeResponseReceived", lambda e: sockets.append(e["response"]["headers"]))
            document = page.goto(topology["nginx"] + "/support_desk")
            assert document.headers["x-launchpad-replica"] == two
            page.get_by_text("Answer feedback").first.wait_for(timeout=120_000)
            title = page.get_by_text(f"#{json.loads(raw)['id']} · open")
            try:
                title.first.wait_for(timeout=60_000)
                title.first.click()  # the expander opens: who filed it
                page.get_by_text("Created").first.wait_for(timeout=30_000)
            finally:
                page.screenshot(path=str(ROOT / "artifacts" / "scaleout-support-desk.png"), full_page=True)
            text = page.inner_text("body").replace("\u2060", "")  # files.plain's word joiners stop auto-links
            assert question in text and "Ana" in text, text[-2000:]  # as typed, shown as text
            replicas = {h.get("X-Launchpad-Replica") or h.get("x-launchpad-replica") for h in sockets}
            assert replicas == {two}, sockets  # the page ran in replica 2's process, over its WebSocket
            assert page.locator("b", has_text="twice").count() == 0  # visitor text is not rendered as HTML
        finally:
            browser.close()


def test_killing_a_replica_loses_no_committed_row_and_the_other_keeps_serving(topology, visitors):
    base, db = topology["nginx"], topology["db"]
    one, two = replica_address(topology, 0), replica_address(topology, 1)
    visitor = visitors[one]
    filed: list[tuple[str, int, dict, bytes]] = []  # (question, status, headers, body) per POST, in order
    reads: list[int] = []
    stop, lock = threading.Event(), threading.Lock()

    def writer():
        n = 0
        while not stop.is_set():
            question = f"kill test {n}"
            try:
                result = call(base, "/api/v1/tickets", visitor, {"question": question}, timeout=30)
            except OSError as exc:  # nginx itself never goes away: this would be a failure to report
                result = (0, {}, repr(exc).encode())
            with lock:
                filed.append((question, *result))
            n += 1

    def reader():
        while not stop.is_set():
            status = call(base, "/_stcore/health", visitor, timeout=30)[0]
            with lock:
                reads.append(status)

    def count(condition) -> int:
        with lock:
            return sum(1 for row in filed if condition(row))

    def slow_post():  # a long chat answer (test_api.py's: 60 tokens or more): in flight in replica 1 at the kill
        body = {"model": "penny", "max_tokens": 200, "temperature": 0, "grounded": False,
                "messages": [{"role": "user", "content": "Can I export invoices to PDF? Explain every step in detail."}]}
        in_flight.append(call(base, "/api/v1/chat/completions", visitor, body, timeout=120))

    in_flight: list[tuple[int, dict, bytes]] = []
    threads = [threading.Thread(target=writer), threading.Thread(target=reader), threading.Thread(target=slow_post)]
    for t in threads[:2]:
        t.start()
    try:
        while count(lambda r: r[1] == 201) < 10 and all(t.is_alive() for t in threads[:2]):
            time.sleep(0.05)  # waiting for a count of answers, not for a duration
        assert count(lambda r: r[1] == 201 and r[2]["X-Launchpad-Replica"] == one) >= 10
        threads[2].start()
        while not _llm_busy(topology["llm"]) and threads[2].is_alive():
            time.sleep(0.05)  # until the one LLM server is generating the slow answer
        assert not in_flight, in_flight
        killed_after = len(filed)
        topology["replicas"][0].process.kill()  # SIGKILL: no shutdown, whatever was in flight is cut off
        topology["replicas"][0].process.wait(30)
        for _ in range(2400):
            if count(lambda r: r[1] == 201 and r[2].get("X-Launchpad-Replica") == two) >= 10:
                break
            time.sleep(0.05)  # waiting for a count of answers, not for a duration
    finally:
        stop.set()
        for t in threads:
            if t.ident is not None:
                t.join(60)
    committed = {r[0]: json.loads(r[3])["id"] for r in filed if r[1] == 201}
    after = [r for r in filed[killed_after:] if r[1] == 201]
    assert len([r for r in after if r[2]["X-Launchpad-Replica"] == two]) >= 10, filed[killed_after:][:5]
    rows = query(db, "SELECT id, question FROM tickets WHERE question LIKE 'kill test %'")
    stored = {}
    for ticket, question in rows:
        assert question not in stored, f"{question!r} was stored twice: a POST was replayed"
        stored[question] = ticket
    lost = {q: i for q, i in committed.items() if stored.get(q) != i}
    assert not lost, f"committed tickets missing after the kill: {lost}"
    failed = [r for r in filed if r[1] != 201]
    # a POST that was in flight (or sent on a connection the kill cut) is answered 502, not replayed elsewhere;
    # nothing else fails: every later POST reaches the surviving replica
    assert all(r[1] == 502 for r in failed), failed
    assert filed[-1][1] == 201 and filed[-1][2]["X-Launchpad-Replica"] == two
    assert set(reads) == {200}, sorted(set(reads))  # idempotent requests were moved on: none failed
    (status, headers, raw), = in_flight  # the POST in flight died with its replica: 502, not answered by the other
    assert status == 502 and headers["X-Launchpad-Replica"].startswith(one), (status, headers, raw[:200])
    print(f"\n{len(filed)} tickets filed ({len(failed)} answered 502), {len(reads)} reads, chat in flight: {status}")
    assert call(base, "/_stcore/health", visitor)[1]["X-Launchpad-Replica"] == two
