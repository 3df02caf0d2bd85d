"""Launchpad: page config, navigation and the shared sidebar; and the server, Streamlit plus the HTTP API.

`streamlit run app.py` finds `app` (an st.App) below and serves it with uvicorn: the UI, plus core.api's routes
(/api/v1/..., /healthz, /readyz, /metrics) in the same process, so both share one model registry. Each
visitor's script run executes this file as __main__: page config, navigation, sidebar, as before."""
import streamlit as st

from core import catalog  # noqa: F401  (declares every model slot)
from core.demos import DEMOS
from core.registry import READY, registry
from pages.common import access_gate, inside_app_shell, operations_visible

if __name__ != "__main__":  # imported by `streamlit run` (uvicorn) for the ASGI app
    from core import api

    api.tcp_nodelay()  # Streamlit's own socket leaves it off: 40 ms per keep-alive request
    app = st.App(__file__, routes=api.routes(), lifespan=api.lifespan)
else:  # a visitor's script run
    st.set_page_config(page_title="Launchpad", page_icon="🚀", layout="wide")

    groups = {
        "Home": [st.Page("pages/home.py", title="Home", icon=":material/home:", default=True)],
        "Demos": [st.Page(d.page, title=d.title, icon=d.icon) for d in DEMOS],
        "Operations": [st.Page("pages/models.py", title="Models", icon=":material/memory:"),
                       st.Page("pages/support_desk.py", title="Support desk", icon=":material/support_agent:"),
                       st.Page("pages/training_runs.py", title="Training runs", icon=":material/history:")],
    }
    allowed = access_gate()
    if allowed and not operations_visible():  # a signed-in viewer: demos only (the pages check it again)
        groups.pop("Operations")
    page = st.navigation({name: pages for name, pages in groups.items() if pages},
                         position="sidebar" if allowed else "hidden")
    if not allowed:
        st.stop()

    summary = st.sidebar.empty()
    try:
        with inside_app_shell():
            page.run()
    finally:  # after the page, so models it just loaded are counted (also when it stopped early)
        ready = [s for s in registry.states() if s.state == READY]
        gpu = any(s.device.startswith(("cuda", "mps")) for s in ready)
        summary.caption(f"🚀 **Launchpad** · {len(ready)} of {len(registry.slots())} AI models ready"
                        + (" · running on a GPU" if gpu else ""))  # devices and sizes: the Models page
