import json

import pandas as pd
import plotly.express as px
import streamlit as st

from core import store
from pages.common import app_shell, operations_gate

app_shell()


def flat(metrics: dict, prefix: str = "") -> dict:
    """Nested metrics ({"gbm": {"auc": 0.85}}) as one level ({"gbm.auc": 0.85}); lists (a confusion matrix) left out."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        elif not isinstance(value, (list, tuple)):
            out[f"{prefix}{key}"] = value
    return out


st.title("Training runs")
operations_gate()  # operators only (core.access)
st.caption("Every run of the models we train here: its parameters, the data it saw (fingerprint), how long it "
           "took, who started it and its held-out metrics. ★ marks the run whose model each slot serves now.")

runs = [r | {"metrics": flat(r["metrics"])} for r in store.training_runs()]
if not runs:
    st.info("No training runs recorded yet. Train a model on a demo page (the Digit lab trains in under a "
            "minute) and it appears here.", icon=":material/history:")
    st.stop()


def number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def shown_value(value) -> str:
    return "—" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def label(run: dict) -> str:
    return f"#{run['id']} · {run['slot']} · {run['started_at']}" + (" ★" if run["current"] else "")


slots = sorted({r["slot"] for r in runs})
chosen = st.multiselect("Slots", slots, default=slots, key="runs_slots")
shown = [r for r in runs if r["slot"] in chosen]
metric_names = sorted({k for r in shown for k, v in r["metrics"].items() if number(v) is not None})
table = pd.DataFrame([{
    "Run": r["id"], "Current": "★" if r["current"] else "", "Slot": r["slot"], "Model": r["model"],
    "Started": r["started_at"], "By": r["started_by"], "Duration (s)": r["duration_s"],
    **{m: number(r["metrics"].get(m)) for m in metric_names},
    "Data fingerprint": r["data_fingerprint"], "Parameters": json.dumps(r["params"], sort_keys=True),
} for r in shown])
st.dataframe(table, hide_index=True, width="stretch", height=min(420, 38 + 35 * len(table)),
             column_config={"Duration (s)": st.column_config.NumberColumn(format="%.1f"),
                            **{m: st.column_config.NumberColumn(format="%.4g") for m in metric_names}})
current = {r["slot"]: r for r in runs if r["current"]}
st.caption("Current model per slot: " + (", ".join(f"**{s}** run #{r['id']}" for s, r in sorted(current.items()))
                                         or "none recorded"))

st.subheader("A metric across runs")
if metric_names:
    a, b = st.columns([1, 3])
    metric = a.selectbox("Metric", metric_names, index=metric_names.index("accuracy") if "accuracy" in metric_names
                         else 0, key="runs_metric")
    series = pd.DataFrame([{"Run": r["id"], "Slot": r["slot"], "Started": r["started_at"],
                            metric: number(r["metrics"].get(metric)), "Current": "current" if r["current"] else "earlier"}
                           for r in shown if number(r["metrics"].get(metric)) is not None]).sort_values("Run")
    fig = px.line(series, x="Run", y=metric, color="Slot", markers=True, hover_data=["Started"],
                  labels={"Run": "Training run (#)", metric: metric.replace("_", " ")})
    best = series[series.Current == "current"]
    fig.add_scatter(x=best.Run, y=best[metric], mode="markers", name="current model",
                    marker=dict(symbol="star", size=16, color="#E8833A"))
    low, high = series[metric].min(), series[metric].max()
    pad = max(abs(high - low) * 0.15, abs(high) * 0.01, 1e-3)
    fig.update_yaxes(range=[low - pad, high + pad])
    fig.update_xaxes(tickformat="d", dtick=1 if series.Run.nunique() <= 20 else None)
    fig.update_layout(height=360, margin=dict(t=10, b=10),  # legend below: beside the plot it took a third of a phone
                      legend=dict(orientation="h", x=0, yref="container", y=0, yanchor="bottom"))
    b.plotly_chart(fig, width="stretch", key="runs_metric_chart")
else:
    st.caption("No numeric metrics recorded.")

st.subheader("Compare two runs")
if len(shown) < 2:
    st.caption("Two runs are needed to compare.")
else:
    # by default the two latest runs of the slot trained most recently with at least two runs
    counts = pd.Series([r["slot"] for r in shown]).value_counts()
    pair = next((r["slot"] for r in shown if counts[r["slot"]] >= 2), None)
    latest = [i for i, r in enumerate(shown) if r["slot"] == pair][:2] if pair else [0, 1]
    a, b = st.columns(2)
    first = a.selectbox("Run", shown, index=latest[1], format_func=label, key="runs_first")
    second = b.selectbox("with run", shown, index=latest[0], format_func=label, key="runs_second")
    if first["id"] == second["id"]:
        st.info("Pick two different runs.")
        st.stop()
    rows = []
    for section, key in (("parameter", "params"), ("metric", "metrics")):
        for name in sorted(set(first[key]) | set(second[key])):
            x, y = first[key].get(name), second[key].get(name)
            change = y - x if number(x) is not None and number(y) is not None else None
            rows.append({"What": section, "Name": name, f"#{first['id']}": shown_value(x), f"#{second['id']}": shown_value(y),
                         "Change": change, "Differs": "●" if x != y else ""})
    for name, field in (("duration (s)", "duration_s"), ("data fingerprint", "data_fingerprint"),
                        ("started by", "started_by"), ("model", "model")):
        x, y = first[field], second[field]
        rows.append({"What": "run", "Name": name, f"#{first['id']}": shown_value(x), f"#{second['id']}": shown_value(y),
                     "Change": y - x if number(x) is not None else None, "Differs": "●" if x != y else ""})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"Change": st.column_config.NumberColumn(format="%+.4g")})
