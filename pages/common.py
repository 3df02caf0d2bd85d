"""UI pieces every page shares: loading a model with visible progress, and its credits line."""
import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from core.models import registry
from core.registry import READY, SlotError


def app_shell() -> None:
    """Call first on every page. Streamlit starts each process in its legacy `pages/` folder mode and
    leaves it only when app.py calls st.navigation; a fresh server whose first visitor follows a deep
    link (say /models) would run that page alone, without app.py's page config, navigation and
    sidebar, and list every file in pages/ as a page. Leave that mode and rerun through app.py,
    which resolves the same URL to the same page."""
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def ensure_model(slot: str) -> bool:
    """Load a slot on first use inside a status box; on failure show why and how to fix it."""
    if registry.stats(slot)["state"] == READY:
        return True
    title = registry.spec(slot).title
    try:
        with st.status(f"Loading {title}…") as box:
            registry.get(slot, progress=lambda message: box.update(label=message))
            box.update(label=f"{title} is ready", state="complete", expanded=False)
        return True
    except SlotError as exc:
        st.error(f"**{title} is unavailable.** {exc.reason}.\n\n**Fix:** {exc.fix}", icon=":material/error:")
        return False


def model_credits(*slots: str, data: str = "") -> None:
    """Where each model (and data set) came from, and under which licence."""
    lines = [f"**{registry.spec(s).title}**: {registry.spec(s).provenance}. Licence: {registry.licence(s)}."
             for s in slots]
    if data:
        lines.append(f"**Data**: {data}")
    st.caption("  \n".join(lines))
