"""UI pieces every page shares: loading a model with visible progress, and its credits line."""
import streamlit as st

from core.models import registry
from core.registry import READY, SlotError


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
