import inspect
import os
import pathlib
import tempfile

import pytest

# Tests never touch the network: defaults load from installed wheels, overrides from local folders.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("LAUNCHPAD_CONFIG", os.devnull)  # a developer's launchpad.toml does not leak in
# tickets and feedback written by tests go to a throw-away database, never the developer's
os.environ["LAUNCHPAD_DB"] = os.path.join(tempfile.mkdtemp(prefix="launchpad-test-db-"), "test.sqlite")

# Models trained by tests (on small subsets) go to a throw-away model store, never the developer's;
# only the joined GGUF files of the packaged Qwen models are shared with model_store/, so each is joined once.
_root = pathlib.Path(__file__).resolve().parent.parent
_store = pathlib.Path(tempfile.mkdtemp(prefix="launchpad-test-store-"))
(_root / "model_store" / "gguf").mkdir(parents=True, exist_ok=True)
(_store / "gguf").symlink_to(_root / "model_store" / "gguf", target_is_directory=True)
os.environ["LAUNCHPAD_STORE"] = str(_store)
# Pages and chat tests run the real llama.cpp on the smallest packaged model (about 70 tok/s here);
# tests/test_llm.py loads the defaults and the other runtimes on purpose.
os.environ.setdefault("LAUNCHPAD_CHAT_LM", "smollm2-135m")
os.environ.setdefault("LAUNCHPAD_CHAT_LM_B", "smollm2-135m")
os.environ.setdefault("LAUNCHPAD_SENTIMENT_JUDGE", "smollm2-135m")
os.environ["LAUNCHPAD_SENTIMENT_TRAIN_LIMIT"] = "600"  # trains in well under a minute on 2 cores
os.environ.setdefault("LAUNCHPAD_SENTIMENT_RUNTIME", "torch")  # int8 exports cost 10-20 s per retrain; test_quantised sets its own
os.environ["LAUNCHPAD_SENTIMENT_MODE"] = "frozen"  # learns from 600 tweets; fine-tuning needs them all
# Operations pages are for operators, and with open access there are none by default (#23): the suite's page and
# browser tests use them with open access, so every visitor is one here; tests/test_roles.py checks the default.
os.environ.setdefault("LAUNCHPAD_OPERATORS", "*")
# The server-wide budget of heavy calls (300 a minute) is shared by the whole process: the suite's many visitors
# together would spend it. Its own tests set it (tests/test_access.py).
os.environ.setdefault("LAUNCHPAD_SERVER_RATE_LIMIT", "0/60")


def _mirror_a_running_server() -> None:
    """AppTest resets Streamlit's legacy pages/-folder flag before every run, and our pages/ folder turns
    it back on, so every AppTest run would start in legacy mode and pages/common.app_shell would rerun it
    (dropping a clicked button). A real server leaves legacy mode for good on its first st.navigation
    call. Mirror that here; tests/test_browser.py covers the real first-request path."""
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    PagesManager.__init__ = init


_mirror_a_running_server()


KINDS = ("unit", "page", "browser")
# module fixtures that train, start or load a real model (10-30 s each on 2 cores): their tests are slow
SLOW_FIXTURES = {"model", "trained", "movielens_model", "server", "kb"}


def pytest_collection_modifyitems(items):
    """Each test gets one of unit/page/browser: its own mark, else browser for a test that takes the Chromium
    `browser` fixture, page for one in test_pages.py, named test_page_*, or creating an AppTest, unit otherwise; slow as well when it
    takes a fixture that trains or starts a real model."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if any(item.get_closest_marker(k) for k in KINDS):
            continue
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
        elif (item.module.__name__ == "test_pages" or item.name.startswith("test_page")
              or "AppTest" in inspect.getsource(item.function)):
            item.add_marker(pytest.mark.page)
        else:
            item.add_marker(pytest.mark.unit)
