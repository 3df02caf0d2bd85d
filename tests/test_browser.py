"""Real-browser tests: `streamlit run` on localhost, driven by Debian's headless Chromium.

Screenshots of every page land in artifacts/screenshots/ for a person to look at.
"""
import os
import re
import time
import warnings
from pathlib import Path

import pytest
from servers import CHROMIUM, CHROMIUM_ARGS, ServerDidNotStart, ask_for_hand_off, streamlit_server

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "artifacts" / "screenshots"
pytestmark = pytest.mark.skipif(
    os.environ.get("LAUNCHPAD_SKIP_BROWSER") == "1", reason="LAUNCHPAD_SKIP_BROWSER=1")


@pytest.fixture(scope="module")
def server():
    """A fresh app process: no page has been visited yet (this matters for deep links)."""
    try:
        with streamlit_server(SHOTS / "server.log") as url:
            yield url
    except ServerDidNotStart as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run `make setup`"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, errors


def settle(pg, text: str, timeout: float = 120, state: str = "visible") -> None:
    """Wait until `text` is on the page and Streamlit has finished running the script."""
    pg.get_by_text(text).first.wait_for(timeout=timeout * 1000, state=state)
    deadline = time.time() + timeout
    while pg.locator("[data-testid='stStatusWidget']").count() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)


def shot(pg, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sidebar_text(pg) -> str:
    return pg.locator("[data-testid='stSidebar']").inner_text()


def test_a_deep_link_to_a_fresh_server_gets_the_whole_app_shell(server, page):
    page.goto(server + "/models")  # the very first request this process serves
    settle(page, "Memory the models use")
    settle(page, "AI models ready")  # the sidebar's summary is written after the page has run
    nav = sidebar_text(page)
    assert "Operations" in nav and "Demos" in nav and "Launchpad" in nav, nav
    assert "common" not in nav.split()  # pages/common.py is a helper, not a page
    shot(page, "models")


def test_home_cards_lead_to_the_demos(server, page):
    page.goto(server)
    settle(page, "Working prototypes")
    shot(page, "home")
    page.get_by_text("Open Image classifier").click()
    settle(page, "confident")
    assert page.url.endswith("/image_classifier")


def test_image_classifier_recognises_the_sample_photos(server, page):
    page.goto(server + "/image_classifier")
    settle(page, "confident")
    assert "espresso" in page.inner_text("body")
    page.get_by_text("About this demo").first.click()  # sources and licences: one click away
    page.get_by_text("Licence").first.wait_for(timeout=10_000)
    page.locator("[data-testid='stPlotlyChart']").nth(1).wait_for(timeout=30_000)  # a top-5 chart per photo
    shot(page, "image_classifier")


def test_chatbot_answers_with_sources_and_offers_a_hand_off(server, page):
    page.goto(server + "/chatbot")
    settle(page, "Knowledge base:")
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill("my card expired, how do I put in a new one?")
    box.press("Enter")
    settle(page, "Sources (")
    assert page.get_by_test_id("stChatMessage").count() == 2
    first = page.get_by_test_id("stChatMessage").nth(1).inner_text()
    assert "Sources (" in first and "pass this to a person" not in first, first  # answered, with its sources
    box.fill("Who won the football world cup in 2018?")
    box.press("Enter")
    settle(page, "Create support ticket")
    assert page.get_by_test_id("stChatMessage").count() == 4
    handoff = page.get_by_test_id("stChatMessage").nth(3).inner_text()
    assert "pass this to a person" in handoff and "2018" not in handoff, handoff  # no guess at the answer
    # the hand-off form asks where to answer (the first answer may carry one too, when its sentences were not supported)
    assert page.get_by_test_id("stChatMessage").nth(3).get_by_label("Email (optional, for a reply)").count() == 1
    shot(page, "chatbot")


def test_chatbot_stop_keeps_what_was_shown_and_regenerate_asks_again(server, page):
    page.goto(server + "/chatbot")
    settle(page, "Knowledge base:")
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill("How do I reset my password?")
    box.press("Enter")
    page.get_by_role("button", name="Stop").wait_for(timeout=120_000)
    shown = page.locator(".st-key-streaming-answer").inner_text()  # what the visitor has read when they press Stop (may be nothing yet)
    page.get_by_role("button", name="Stop").click()
    settle(page, "Regenerate")
    messages = page.get_by_test_id("stChatMessage")
    assert messages.count() == 2, "the stopped answer is kept as the reply"
    kept = messages.nth(1).get_by_test_id("stMarkdownContainer").first.inner_text()
    assert kept.strip() and shown.strip() in kept, (shown, kept)
    question = messages.nth(0).inner_text()
    page.get_by_role("button", name="Regenerate").click()
    settle(page, "Regenerate", timeout=180)
    messages = page.get_by_test_id("stChatMessage")
    assert messages.count() == 2, "Regenerate replaces the answer; it does not add a second question"
    assert "reset my password" in messages.nth(0).inner_text() and messages.nth(0).inner_text() == question
    shot(page, "chatbot-regenerated")


def test_copy_studio_writes_variants(server, page):
    page.goto(server + "/copy_studio")
    settle(page, "Product description")
    page.get_by_label("Product description").fill("Handmade ceramic mugs that keep coffee warm for hours")
    page.get_by_text("Tagline", exact=True).click()
    page.get_by_role("button", name="Generate").click()
    settle(page, "Download all (Markdown)", timeout=240)
    assert page.get_by_test_id("stCode").count() == 3
    shot(page, "copy_studio")


def test_support_desk_closes_a_ticket(server, page):
    from core import store  # the server shares this test run's database (LAUNCHPAD_DB)

    ticket = store.create_ticket("Browser test: where is my refund?",
                                 [{"role": "user", "content": "Browser test: where is my refund?"}], "Kim")
    page.goto(server + "/support_desk")
    settle(page, "Answer feedback")
    page.get_by_text(f"#{ticket} · open").click()
    shot(page, "support_desk")
    page.get_by_role("button", name="Mark closed").first.click()
    settle(page, "Answer feedback")
    assert all(t["id"] != ticket for t in store.tickets("open"))


def test_models_page_warms_up_a_slot(server, page):
    page.goto(server + "/models")
    settle(page, "Memory the models use")
    page.get_by_role("button", name="Warm up").nth(2).click()  # the third slot in the table
    settle(page, "warmed up")
    toast = page.get_by_test_id("stToast").inner_text()
    warmed = re.search(r"(.+) warmed up: one inference took \d+ ms", toast)
    from core import catalog  # noqa: F401  (declares every slot)
    from core.registry import registry

    assert warmed and warmed.group(1).strip() in {spec.title for spec in registry.specs()}, toast


def test_twenty_simultaneous_sessions_stay_separate_and_share_one_copy_of_each_model(server, page):
    """20 visitors at once on different pages: no errors, no visitor sees another's chat or results,
    and the Models page afterwards shows each model loaded exactly once."""
    import asyncio
    import re

    from playwright.async_api import async_playwright

    # Waits guard against a hang, they do not time anyone: on 2 cores a visitor's page finished 18-90 s after
    # it opened in most runs, yet some runs had one past 180 s (a different page each time; cause not found).
    # A slow run passes with a warning that names the slowest visitor; speed itself is measured in bench/.
    WAIT_MS = 400_000
    took: dict[int, float] = {}

    async def visit(browser, i: int) -> tuple[int, str, str]:
        context = await browser.new_context(viewport={"width": 1200, "height": 900})
        pg = await context.new_page()
        errors = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        marker = f"marker-{i:02d}"
        kind = ("chatbot", "sentiment", "image_classifier", "models")[i % 4]
        downloaded = ""
        await pg.goto(f"{server}/{kind}", timeout=120_000)
        opened = time.time()
        if kind == "chatbot":
            await ask_for_hand_off(pg, f"What colour is the {marker} balloon at the fair?", WAIT_MS)
        elif kind == "sentiment":
            paste = pg.get_by_role("tabpanel").get_by_text("Paste lines")
            for _ in range(20):  # a first visit may rerun once (see app_shell): click until the tab opens
                await pg.get_by_role("tab", name="Batch scoring").click(timeout=300_000)
                try:
                    await paste.wait_for(state="visible", timeout=5_000)
                    break
                except Exception:
                    continue
            await paste.click(timeout=30_000)
            await pg.get_by_label("One text per line").fill(f"@united {marker} was great\n@united {marker} was late",
                                                             timeout=WAIT_MS)
            await pg.get_by_label("One text per line").press("Control+Enter")
            await pg.get_by_role("button", name=re.compile("Score 2 rows")).click(timeout=60_000)
            await pg.get_by_text("Download results (CSV)").wait_for(timeout=WAIT_MS)
            async with pg.expect_download() as download:  # the results table is a canvas: read its CSV
                await pg.get_by_text("Download results (CSV)").click()
            path = await (await download.value).path()
            downloaded = Path(path).read_text()
            assert downloaded.count("@united") == 2, downloaded
        elif kind == "image_classifier":
            await pg.get_by_text("espresso").first.wait_for(timeout=WAIT_MS)
        else:
            await pg.get_by_text("Memory the models use").wait_for(timeout=WAIT_MS)
        took[i] = time.time() - opened
        body = await pg.inner_text("body") + (downloaded if kind == "sentiment" else "")
        await context.close()
        assert not errors, errors
        return i, kind, body

    async def main():
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, downloads_path=str(SHOTS), args=CHROMIUM_ARGS)
            results = await asyncio.gather(*(visit(browser, i) for i in range(20)))
            await browser.close()
            return results

    import threading

    results, failures = [], []  # its own thread: this module's sync Playwright fixture holds this thread's loop

    def run():
        try:
            results.extend(asyncio.run(main()))
        except BaseException as exc:
            failures.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if failures:
        raise failures[0]
    assert len(results) == 20
    slowest = max(took, key=took.get)
    if took[slowest] > 120:
        warnings.warn(f"the slowest of 20 visitors ({results[slowest][1]}) finished {took[slowest]:.0f} s after "
                      "its page opened (usually 18-90 s)", stacklevel=1)
    for i, kind, body in results:
        seen = set(re.findall(r"marker-\d\d", body))
        if kind in ("chatbot", "sentiment"):
            assert seen == {f"marker-{i:02d}"}, (i, kind, seen)
        else:
            assert not seen, (i, kind, seen)

    page.goto(server + "/models")
    settle(page, "Memory the models use")
    shot(page, "models_after_concurrency")
    text = page.inner_text("body")
    loads = dict(re.findall(r"· (\w+) · [^·\n]+ · ready · loaded (\d+)× in this process", text))
    assert {"chat_lm", "embedder", "image_classifier"} <= set(loads), text
    # on a store without the fine-tuned sentiment model (this test run alone) the quick one answers while it trains
    assert {"sentiment", "sentiment_quick"} & set(loads), text
    assert set(loads.values()) == {"1"}, loads


def test_sentiment_explains_a_text(server, page):
    page.goto(server + "/sentiment")
    settle(page, "Analyse a text")
    page.get_by_role("textbox", name="Text", exact=True).fill("@united the crew was lovely and the flight was on time, thank you!")
    page.get_by_role("button", name="Analyse").click()
    settle(page, "Why")
    assert "positive" in page.inner_text("body")
    shot(page, "sentiment")


def test_credit_risk_scores_an_applicant_with_a_waterfall(server, page):
    page.goto(server + "/credit_risk")
    settle(page, "Calibration (tenths of held-out applicants)")
    page.get_by_role("tab", name="One applicant").click()
    page.get_by_role("button", name="Score this applicant").click()
    settle(page, "How the score was reached")
    body = page.inner_text("body")
    assert "Probability of default" in body and "points" in body
    assert page.locator(".waterfalllayer .point").count() >= 3  # Plotly drew the waterfall: base, features, score
    shot(page, "credit_risk")


def test_recommender_folds_in_a_new_visitor(server, page):
    page.goto(server + "/recommender")
    settle(page, "Pick a few movies you like", timeout=300)  # a fresh store trains the recommender first
    page.locator("[data-testid='stMultiSelect'] input").first.click()
    page.keyboard.type("Toy Story (1995)")
    page.get_by_role("option", name="Toy Story (1995)").first.click()
    page.keyboard.press("Escape")
    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=60_000)
    settle(page, "Because you liked", state="attached")  # a header the grid keeps for screen readers
    assert "Pick at least one movie" not in page.inner_text("body")
    grid = page.locator("[data-testid='stDataFrame']").first.locator("table")  # the grid's table for screen readers
    cells = grid.inner_text()
    assert cells.count("Toy Story (1995)") >= 3, cells  # each recommendation follows from the one movie liked
    assert grid.locator("tbody tr").count() >= 5, cells
    shot(page, "recommender")


# Every page at a phone's width, and the text that says its first screen has been drawn. After the tests above, so
# their models are loaded (credit risk, recommender); the Digit lab's data section comes before its first training.
PHONE = {"width": 390, "height": 844}
PHONE_PAGES = {"": "Working prototypes", "chatbot": "Knowledge base:", "copy_studio": "Product description",
               "sentiment": "Analyse a text", "image_classifier": "confident",
               "credit_risk": "Calibration (tenths of held-out applicants)", "recommender": "Pick a few movies you like",
               "digit_lab": "Twelve training examples of each digit", "models": "Memory the models use",
               "support_desk": "Answer feedback", "training_runs": "Every run of the models we train here"}
# Streamlit's main area (.stMain) is the element that scrolls, so a page that is too wide scrolls there, not in the
# document; both are measured. An element sticking out of a scroll box of its own (a wide table) does not count.
SIDEWAYS = """() => {
  const main = document.querySelector('.stMain'), limit = window.innerWidth + 1, out = [];
  for (const el of main ? main.querySelectorAll('*') : []) {
    if (el.getBoundingClientRect().right <= limit) continue;
    let box = el.parentElement;
    while (box && box !== main && !['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(box).overflowX)) box = box.parentElement;
    if (box === main) out.push((el.getAttribute('data-testid') || el.tagName) + ' to ' + Math.round(el.getBoundingClientRect().right) + ' px');
  }
  return {document: document.documentElement.scrollWidth, main: main ? main.scrollWidth : null,
          window: window.innerWidth, sticking_out: out.slice(0, 5)};
}"""


def test_every_page_fits_a_phone_screen_without_sideways_scrolling(server, browser):
    from core.demos import DEMOS

    assert {Path(d.page).stem for d in DEMOS} <= set(PHONE_PAGES), "a new demo page: add it to PHONE_PAGES"
    context = browser.new_context(viewport=PHONE)
    pg = context.new_page()
    errors, wide, broken = [], {}, []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    for path, marker in PHONE_PAGES.items():
        pg.goto(f"{server}/{path}")
        settle(pg, marker, timeout=180)
        shot(pg, f"phone-{path or 'home'}")
        sizes = pg.evaluate(SIDEWAYS)
        if max(sizes["document"], sizes["main"] or 0) > sizes["window"] + 1:
            wide[path or "home"] = sizes
        if pg.locator("[data-testid='stException']").count():
            broken.append(path or "home")
    context.close()
    assert not wide, f"pages that scroll sideways at {PHONE['width']} px: {wide}"
    assert not broken and not errors, (broken, errors)


# --- first use on an empty model store (issue 16): training belongs to the server, not to a visitor ----------

FINE_TUNE = dict(LAUNCHPAD_SENTIMENT_MODE="finetune", LAUNCHPAD_SENTIMENT_TRAIN_LIMIT="800")  # 25 steps, ~30 s here


def readyz(base: str) -> dict:
    import json
    import urllib.error
    import urllib.request

    try:
        return json.loads(urllib.request.urlopen(base + "/readyz", timeout=10).read())
    except urllib.error.HTTPError as exc:  # 503 while not ready, with what it waits for
        return json.loads(exc.read())


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := condition()):
            return value
        time.sleep(1)
    pytest.fail(f"waited {timeout:.0f} s for {what}")


def test_the_fine_tuned_model_taking_over_keeps_the_visitors_tab_and_text(browser, tmp_path):
    """On a fresh store the quick model answers first; when the fine-tuned one is ready the page reruns itself.
    A visitor pasting lines on the Batch scoring tab stays there, the lines still in the box."""
    with streamlit_server(SHOTS / "server-takeover.log", LAUNCHPAD_STORE=str(tmp_path / "store")) as url:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        pg = context.new_page()
        pg.goto(url + "/sentiment")
        pg.get_by_text("For now the quick model answers").wait_for(timeout=240_000)
        pg.get_by_role("tab", name="Batch scoring").click()
        pg.get_by_role("tabpanel").get_by_text("Paste lines").click()
        pg.get_by_label("One text per line").fill("the staff were kind\nthe app keeps crashing")
        pg.get_by_text("For now the quick model answers").wait_for(state="detached", timeout=400_000)
        settle(pg, "Batch scoring")
        assert pg.get_by_role("tab", selected=True).inner_text() == "Batch scoring"
        assert pg.get_by_label("One text per line").input_value() == "the staff were kind\nthe app keeps crashing"
        context.close()


@pytest.mark.slow
def test_closing_the_page_mid_training_leaves_the_fine_tuned_model_training(browser, tmp_path):
    store = tmp_path / "store"
    with streamlit_server(SHOTS / "server-first-use.log", LAUNCHPAD_STORE=str(store), **FINE_TUNE) as url:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        pg = context.new_page()
        pg.goto(url + "/sentiment")
        pg.get_by_text("Fine-tuning: step").first.wait_for(timeout=240_000)
        assert "quick model answers" in pg.inner_text("body")
        pg.get_by_role("tab", name="Analyse a text").click()
        pg.get_by_label("Text", exact=True).fill("@united two hours on the tarmac and no updates")
        pg.get_by_role("button", name="Analyse").click()
        settle(pg, "confident")
        shot(pg, "sentiment-quick-model")
        assert not (store / "sentiment" / "meta.json").exists(), "training finished before the visitor left"
        context.close()  # the visitor leaves mid-training
        wait_for(lambda: (store / "sentiment" / "meta.json").is_file(), 400, "the fine-tuned model to be saved")
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        pg = context.new_page()
        pg.goto(url + "/sentiment")
        settle(pg, "Analyse a text")
        assert "quick model answers" not in pg.inner_text("body")
        context.close()


@pytest.mark.slow
def test_a_server_killed_mid_training_trains_again_cleanly_when_restarted(tmp_path):
    store = tmp_path / "store"
    env = dict(LAUNCHPAD_STORE=str(store), LAUNCHPAD_API_READY_SLOTS="sentiment", **FINE_TUNE)  # trained at start
    with streamlit_server(SHOTS / "server-killed.log", **env) as url:
        wait_for(lambda: "Fine-tuning: step" in readyz(url).get("waiting_for", {}).get("sentiment", {}).get("progress", ""),
                 240, "fine-tuning to start with no visitor")
        url.process.kill()  # a crash, not a clean shutdown
        url.process.wait(30)
    assert not (store / "sentiment").exists(), "a half-trained model was left where the loader reads"
    with streamlit_server(SHOTS / "server-restarted.log", **env) as url:
        body = wait_for(lambda: (b := readyz(url))["status"] == "ready" and b, 400, "the restarted server to train it")
    assert body["slots"] == {"sentiment": "ready"}
    import json

    meta = json.loads((store / "sentiment" / "meta.json").read_text())
    assert meta["mode"] == "finetune" and meta["limit"] == 800
