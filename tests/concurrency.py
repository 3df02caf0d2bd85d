"""Running one function on many inputs at the same moment, from as many threads, and holding a model call
until the others have queued behind it (so a test of coalescing never depends on thread-scheduling luck)."""
import threading
import time
from concurrent.futures import Future


def concurrently(fn, inputs):
    results, start = {}, threading.Barrier(len(inputs))

    def work(i, x):
        start.wait()
        try:
            results[i] = fn(x)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i, x)) for i, x in enumerate(inputs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return [results[i] for i in range(len(inputs))]


def run_in_thread(fn, *args) -> Future:
    """fn(*args) in a daemon thread, as a Future: a test waits on it with a timeout, so a hang fails it."""
    future = Future()

    def work():
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            future.set_exception(exc)

    threading.Thread(target=work, daemon=True).start()
    return future


def until(condition, what: str, timeout: float = 30.0) -> None:
    """Wait for a condition another thread brings about; fails (does not hang) if it never holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.001)


def coalesced(monkeypatch, registry, module, name, ask, inputs, timeout: float = 60.0):
    """ask(x) for every input, each from its own thread, while the batched model function `module.name` is held
    on its first call until all the other requests have queued behind it. Returns (each caller's result, the
    number of items in each model call), read from this call alone, not from the registry's running stats."""
    original, sizes = getattr(module, name), []
    entered, release = threading.Event(), threading.Event()

    def held(bundle, items, *args):
        sizes.append(len(items))
        if len(sizes) == 1:
            entered.set()
            assert release.wait(timeout)
        return original(bundle, items, *args)

    monkeypatch.setattr(module, name, held)
    futures = [run_in_thread(ask, inputs[0])]
    assert entered.wait(timeout), "the first request never reached the model"
    futures += [run_in_thread(ask, x) for x in inputs[1:]]
    batcher = next(b for b in list(registry._batchers.values()) if b.fn is held)
    until(lambda: batcher.queue.qsize() == len(inputs) - 1, "the other requests to queue up", timeout)
    release.set()
    return [f.result(timeout=timeout) for f in futures], sizes
