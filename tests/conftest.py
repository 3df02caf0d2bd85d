import os
import tempfile

# Tests never touch the network: defaults load from installed wheels, overrides from local folders.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("LAUNCHPAD_CONFIG", os.devnull)  # a developer's launchpad.toml does not leak in
# tickets and feedback written by tests go to a throw-away database, never the developer's
os.environ["LAUNCHPAD_DB"] = os.path.join(tempfile.mkdtemp(prefix="launchpad-test-db-"), "test.sqlite")


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
