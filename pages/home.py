import streamlit as st

from core.demos import DEMOS, TOUR
from core.registry import registry
from pages.common import app_shell, operations_visible

app_shell()

st.title("🚀 Launchpad")
st.markdown("Working prototypes of our AI products. Every demo runs on models that ship with the app, "
            "loaded once and shared by every visitor. Pick one to try it.")

with st.expander(f"**Five-minute demo for a stakeholder** · {len(TOUR)} steps, in this order", icon=":material/route:"):
    for number, step in enumerate(TOUR, 1):
        st.markdown(f"**{number}. {step.label}** · about {step.minutes:g} min")
        st.write(f"Do: {step.click}")
        st.caption(f"What it shows: {step.say}")
        st.page_link(step.page, label=f"Step {number}: go to {step.label}", icon=":material/arrow_forward:")

if not DEMOS:
    st.info("No demos are installed yet. The **Models** page shows the models they will use.")
for row in range(0, len(DEMOS), 3):
    for col, demo in zip(st.columns(3), DEMOS[row:row + 3]):
        with col.container(border=True):
            st.subheader(demo.title)
            st.write(demo.pitch)
            st.caption(("Models: " if len(demo.slots) > 1 else "Model: ")
                       + ", ".join(registry.model_name(s) for s in demo.slots) + " · sources and licences on its page")
            st.page_link(demo.page, label=f"Open {demo.title}", icon=":material/arrow_forward:")

st.divider()
if operations_visible():  # Models is an Operations page: a signed-in viewer's navigation has no such page
    st.page_link("pages/models.py", label="See every model, its source, licence and live stats",
                 icon=":material/memory:")
