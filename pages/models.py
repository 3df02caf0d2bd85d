import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import catalog, files, quantised
from core.registry import FAILED, LOADING, NOT_LOADED, READY, SlotError, registry
from pages.common import app_shell, operations_gate

app_shell()

st.title("Models")
operations_gate()  # operators only (core.access)
st.caption("The AI models behind the demos, whether each is ready and how fast it answers visitors. Each is loaded "
           "once and shared by everyone; the least recently used is unloaded when memory runs short. Engineers can "
           "point any model at a Hugging Face id, a folder or a server (README, Configuration).")

live = st.toggle("Live figures", value=True, key="models_live",
                 help="Latency is per request, including any wait to join a batch; mean batch is how many "
                      "requests each model call served (micro-batching across visitors). The figures refresh "
                      "every 2 s while a model loads, every 10 s otherwise.")


ICONS = {READY: ":material/check_circle:", LOADING: ":material/hourglass_top:", FAILED: ":material/error:",
         NOT_LOADED: ":material/radio_button_unchecked:"}


def number(value, digits: int = 1) -> str:
    """A table cell: the figure, or a dash where there is none yet (never 'None')."""
    return "—" if value is None or value != value else f"{value:,.{digits}f}"


# Every open Models page reruns this fragment on the server: every 2 s while a model loads or trains (its progress
# moves), every 10 s otherwise, so idle Models tabs cost the visitors on other pages little (#23).
busy = any(registry.state(n).state == LOADING for n in catalog.slots())


@st.fragment(run_every=(2 if busy else 10) if live else None)
def figures() -> None:
    stats = [registry.state(n) for n in catalog.slots()]
    if live and busy != any(s.state == LOADING for s in stats):
        st.rerun(scope="app")  # a load began or ended: the refresh interval follows
    ready = [s for s in stats if s.state == READY]
    broken = [s for s in stats if s.state == FAILED or s.errors]
    a, b, c = st.columns(3)
    a.metric("Models ready", f"{len(ready)} of {len(stats)}", help="The others load when a visitor first needs them.")
    b.metric("Health", "all well" if not broken else f"{len(broken)} with problems",
             help="A model with problems failed to load or failed some requests: see its line below.")
    c.metric("Requests served", f"{sum(s.calls for s in stats):,}", help="Since this server started, all visitors.")
    for s in stats:
        st.markdown(f"{ICONS[s.state]} **{s.title}** · {files.plain(s.in_words())}")
    used = sum(s.bytes for s in stats)
    budget = registry.memory_budget_bytes
    st.progress(min(used / budget, 1.0),
                text=f"Memory the models use: {used / 2**20:,.0f} MB of a {budget / 2**20:,.0f} MB budget")
    st.markdown("**Engineering details**")
    table = pd.DataFrame([{
        "Slot": s.slot, "Model": s.model, "State": s.state, "Runtime": s.runtime or "torch",
        "Device": s.device, "Dtype": s.dtype,
        "Params (M)": number(s.parameters / 1e6 if s.parameters else None),
        "Memory (MB)": number(s.bytes / 2**20 if s.bytes else None),
        "Load (s)": number(s.load_seconds), "Trained (s)": number(s.train_seconds or None), "Loads": s.loads,
        "Calls": s.calls, "Errors": s.errors,
        "p50 (ms)": number(s.p50_ms), "p95 (ms)": number(s.p95_ms), "Mean batch": number(s.mean_batch),
        "Note": s.fallback or s.progress or s.last_error or "—",
    } for s in stats])
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "Note": st.column_config.TextColumn(width="large")})
    st.caption("p50 and p95: the time half and 95% of requests took, from asking to the last word; a chat answer is "
               "one request that streams for seconds, so its p95 is the longest answers. Load: reading the weights "
               "(training is counted apart, under Trained). Batching: "
               + ("on: concurrent requests from different visitors share one model call"
                  if registry.batching else "off (LAUNCHPAD_BATCHING=off)"))


figures()
stats = [registry.state(n) for n in catalog.slots()]
for s in stats:
    with st.container(border=True):
        left, right = st.columns([3, 2])
        left.markdown(f"**{s.title}** · {s.model} · `{s.slot}` · {s.task} · _{s.state}_"
                      + (f" · loaded {s.loads}× in this process" if s.loads else ""))
        left.caption(f"{s.provenance}  \nSource: `{s.source}`  \nLicence: {s.licence}")
        load = warm = unload = right.container(horizontal=True)  # one row, wrapping only when it must (a phone)
        try:
            if load.button("Load", key=f"load-{s.slot}"):
                registry.prepare(s.slot, retry=True)  # loads apart from this run: leaving the page does not stop it
                with st.spinner(f"Loading {s.title}…"):
                    while not registry.wait(s.slot, timeout=0.5):
                        pass
                st.rerun()
            if warm.button("Warm up", key=f"warm-{s.slot}"):
                with st.spinner(f"Warming up {s.title}…"):
                    seconds = registry.warmup(s.slot)
                st.toast(f"{s.title} warmed up: one inference took {seconds * 1000:.0f} ms")
            if unload.button("Unload", key=f"unload-{s.slot}", disabled=s.state != READY):
                registry.unload(s.slot)
                st.rerun()
        except SlotError as exc:
            st.error(f"{exc.reason}.  \n**Fix:** {exc.fix}", icon=":material/error:")
        if s.last_error:
            st.error(s.last_error, icon=":material/error:")

loaded = [s for s in stats if s.load_seconds is not None]
if loaded:
    names = [s.slot for s in loaded]
    # two charts in columns, not two subplots of one figure: on a phone the columns stack, while subplots
    # squeezed side by side put one chart's axis title over the other's bars
    for col, (title, values, axis) in zip(st.columns(2), (
            ("Last load time", [s.load_seconds for s in loaded], "Seconds"),
            ("Resident memory", [s.bytes / 2**20 for s in loaded], "MB (weights and buffers)"))):
        fig = go.Figure(go.Bar(x=names, y=values))
        fig.update_layout(title=title, xaxis_title="Model slot", yaxis_title=axis, height=360, margin=dict(t=40, b=10))
        col.plotly_chart(fig, width="stretch", key=f"models_{title.split()[-1].lower()}")
else:
    st.info("No model has been loaded in this process yet. Open a demo, or press **Load** above.")

st.subheader("Optimisation: fp32 vs int8")
rows = quantised.comparison()
if not rows:
    st.info("No int8 copy has been made on this machine yet. It is made, once per model, the first time the "
            "text embedder or the sentiment model loads on a CPU (press **Load** above).")
else:
    optimised = pd.DataFrame(rows)
    for slot in optimised.slot.unique():
        st.markdown(f"**{registry.spec(slot).title}**: {quantised.summary(slot)}")
    st.dataframe(optimised.rename(columns={
        "slot": "Slot", "variant": "Variant", "runtime": "Runtime", "size_mb": "Size on disk (MB)",
        "memory_mb": "Memory (MB)", "p50_ms": "One text p50 (ms)", "texts_per_s": "Throughput (texts/s)",
        "quality": "Quality", "quality_name": "Quality measure", "macro_f1": "Macro-F1"})[
        ["Slot", "Variant", "Runtime", "Size on disk (MB)", "Memory (MB)", "One text p50 (ms)", "Throughput (texts/s)",
         "Quality", "Quality measure", "Macro-F1"]], hide_index=True, width="stretch", column_config={
        c: st.column_config.NumberColumn(format="%.1f") for c in ("Size on disk (MB)", "Memory (MB)",
                                                                   "One text p50 (ms)", "Throughput (texts/s)")}
        | {c: st.column_config.NumberColumn(format="%.3f") for c in ("Quality", "Macro-F1")})
    gains = quantised.gains(rows)
    below = dict(orientation="h", x=0, yref="container", y=0, yanchor="bottom")  # at the figure's foot: clears the axis
    gain_col, quality_col = st.columns([3, 2])  # separate charts: they stack on a phone (see the load chart)
    fig = go.Figure()
    for slot, g in gains.items():
        fig.add_bar(x=list(g), y=list(g.values()), name=registry.spec(slot).title,
                    text=[f"{v:.1f}x" for v in g.values()], textposition="outside")
    fig.update_layout(title="int8 against fp32 (higher is better)", xaxis_title="Measure",
                      yaxis_title="int8 / fp32 (x)", barmode="group", height=460, margin=dict(t=40, b=10),
                      legend=below)
    gain_col.plotly_chart(fig, width="stretch", key="int8_chart")
    fig = go.Figure()
    for variant in ("fp32", "int8"):
        part = optimised[optimised.variant == variant]
        fig.add_bar(x=part.slot, y=part.quality, name=f"{variant} quality",
                    text=[f"{v:.3f}" for v in part.quality], textposition="outside")
    fig.update_layout(title="Quality on held-out data", xaxis_title="Model slot",
                      yaxis=dict(title="Top-1 (embedder) / accuracy (sentiment)", range=[0, 1.1]), barmode="group",
                      height=460, margin=dict(t=40, b=10), legend=below)
    quality_col.plotly_chart(fig, width="stretch", key="int8_quality_chart")
    with st.expander("How the int8 copies are made and measured"):
        st.markdown(quantised.details_markdown())
