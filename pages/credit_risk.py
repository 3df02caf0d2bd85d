import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core import files, risk
from pages.common import allow_heavy_call, api_help, app_shell, model_credits, read_uploaded_csv, sample_or_own_model

app_shell()
# a legend inside the plot: below it, a legend of long names crowded the x-axis title on a phone (390 px)
INSIDE_BOTTOM_RIGHT = dict(x=0.98, xanchor="right", y=0.02, yanchor="bottom", bgcolor="rgba(255,255,255,0.8)")
BAND_COLOURS = {"approve": "#2E9E5B", "review": "#E0A030", "decline": "#D9534F", "not scored": "#8C8C8C"}
SAMPLE, OWN = "Sample: 4,454 real loan applications", "Your own data (CSV)"


def train_own() -> None:
    """Upload a table, pick its outcome column, train both models on it for this session."""
    upload = st.file_uploader("Training data: one row per past applicant, with the outcome in one column",
                              type=["csv", "txt"], key="risk_train_upload")
    if upload is None:
        return
    frame, notices = read_uploaded_csv(upload)
    if frame is None:
        return
    for notice in notices:
        st.info(files.plain(notice))  # notices and errors quote the visitor's file: shown as plain text
    guess = next((i for i, c in enumerate(frame.columns) if c.lower() in ("status", "target", "default", "bad",
                                                                          "creditability", "class")), 0)
    left, right = st.columns(2)
    target = left.selectbox("Outcome column", list(frame.columns), index=guess, key="risk_target")
    values = sorted(v for v in frame[target].astype(str).str.strip().unique() if v)[:50]
    bad_guess = next((i for i, v in enumerate(values) if v.lower() in ("bad", "1", "yes", "default")), 0)
    bad = right.selectbox("Value that means the loan went bad", values, index=bad_guess, key="risk_bad")
    if st.button("Train on this data", type="primary", key="risk_train") and allow_heavy_call():
        try:
            with st.status("Training…") as box:
                model = risk.train(frame, target, bad, lambda message, fraction=None: box.update(label=message))
                box.update(label=f"Trained on {model.meta['rows']:,} rows in {model.meta['train_seconds']:.1f} s",
                           state="complete", expanded=False)
            st.session_state.risk_own = model
        except risk.SchemaError as exc:
            st.error(files.plain(exc), icon=":material/error:")


METRIC_HELP = {
    "AUC": "How often a defaulter gets a higher risk than a good payer: 0.5 is chance, 1 is perfect.",
    "Gini": "2 × AUC − 1: the banking industry's usual way of writing the same ranking power (0 chance, 1 perfect).",
    "KS": "The largest gap between the score distributions of good and bad applicants (0 none, 1 complete).",
    "Brier": "Mean squared error of the predicted probabilities: lower is better; it rewards honest probabilities.",
}


def metrics_table(model: risk.RiskModel) -> pd.DataFrame:
    names = {**risk.METHODS, "gbm_uncalibrated": "Gradient boosting, before calibration"}
    return pd.DataFrame([{"Model": names[k], **model.metrics[k]} for k in names]).set_index("Model")


def roc_chart(test: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for key, name in risk.METHODS.items():
        fpr, tpr = risk.roc_points(test, key)
        fig.add_scatter(x=fpr, y=tpr, name=name, mode="lines")
    fig.add_scatter(x=[0, 1], y=[0, 1], name="chance", mode="lines", line=dict(dash="dot", color="grey"))
    fig.update_layout(title="ROC", xaxis_title="False-positive rate (good applicants flagged)",
                      yaxis_title="True-positive rate (bad applicants caught)", height=380,
                      legend=INSIDE_BOTTOM_RIGHT)  # the empty corner under the curves
    return fig


def calibration_chart(test: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for key, name in risk.METHODS.items():
        grouped = risk.calibration_table(test, key)
        fig.add_scatter(x=grouped.predicted, y=grouped.observed, name=name, mode="lines+markers")
    fig.add_scatter(x=[0, 1], y=[0, 1], name="perfect", mode="lines", line=dict(dash="dot", color="grey"))
    fig.update_layout(title="Calibration (tenths of held-out applicants)",
                      xaxis_title="Predicted probability of default",
                      yaxis_title="Observed default rate", height=380,
                      legend=dict(INSIDE_BOTTOM_RIGHT, x=0.02, xanchor="left", y=0.98, yanchor="top"))  # top left: empty
    return fig


def score_histogram(test: pd.DataFrame, method: risk.Method, limits: tuple[float, float]) -> go.Figure:
    frame = pd.DataFrame({"score": risk.score_from_pd(test[f"pd_{method}"]),
                          "outcome": np.where(test.bad == 1, "bad", "good")})
    fig = px.histogram(frame, x="score", color="outcome", barmode="overlay", nbins=40, opacity=0.7,
                       color_discrete_map={"good": "#2E9E5B", "bad": "#D9534F"})
    for x, name, side in zip(limits, ("decline below", "approve at"), ("top left", "top right")):
        fig.add_vline(x=x, line_dash="dash", annotation_text=name, annotation_position=side)  # apart, never on top
    fig.update_layout(title="Score distribution", xaxis_title="Score (points)", yaxis_title="Applicants", height=380,
                      legend=dict(title="Outcome", orientation="h", x=1, xanchor="right", y=1.02, yanchor="bottom"))
    return fig


def waterfall(base: float, points: pd.Series, score: float) -> go.Figure:
    top = points.reindex(points.abs().sort_values(ascending=False).index)
    shown, rest = top.head(8), top.iloc[8:].sum()
    labels = ["base"] + list(shown.index) + (["other features"] if len(top) > 8 else []) + ["score"]
    values = [base] + list(shown.values) + ([rest] if len(top) > 8 else []) + [score]
    measure = ["absolute"] + ["relative"] * (len(values) - 2) + ["total"]
    fig = go.Figure(go.Waterfall(x=labels, y=values, measure=measure, text=[f"{base:.0f}"] + [f"{v:+.0f}" for v in values[1:-1]]
                                 + [f"{score:.0f}"], decreasing=dict(marker_color="#D9534F"),
                                 increasing=dict(marker_color="#2E9E5B"), totals=dict(marker_color="#4A6FA5")))
    fig.update_layout(title="How the score was reached", xaxis_title="Feature", yaxis_title="Points",
                      height=400, yaxis=dict(range=[min(base, score, base + points.clip(upper=0).sum()) - 40,
                                                    max(base, score, base + points.clip(lower=0).sum()) + 40]))
    return fig


def applicant_form(model: risk.RiskModel, method: risk.Method, limits: tuple[float, float]) -> None:
    schema = model.schema
    with st.form("applicant"):
        columns = st.columns(4)
        values = {}
        for i, name in enumerate(schema.features):
            box = columns[i % 4]
            if name in schema.categorical:
                options = schema.categorical[name] + ["(unknown)"]
                values[name] = box.selectbox(name, options, index=options.index(schema.modes[name]),
                                             key=f"risk_in_{name}", help=risk.SAMPLE_FIELDS.get(name))
            else:
                values[name] = box.number_input(name, value=float(schema.medians[name]), format="%g",
                                                key=f"risk_in_{name}", help=risk.SAMPLE_FIELDS.get(name))
        if st.form_submit_button("Score this applicant", type="primary") and allow_heavy_call():
            st.session_state.risk_applicant = values
    values = st.session_state.get("risk_applicant")
    if not values or set(values) != set(schema.features):
        return
    row = pd.DataFrame([{k: ("" if v == "(unknown)" else v) for k, v in values.items()}])
    x = risk.features(row, schema)
    outside = [f"{c} ({values[c]:,.6g}; seen {lo:,.6g} to {hi:,.6g})" for c, (lo, hi) in schema.ranges.items()
               if not lo <= values[c] <= hi]
    if outside:
        st.warning("Outside the range seen in training, so the model is extrapolating: " + files.plain(", ".join(outside)))
    pd_ = float(model.probability_of_default(x, method)[0])
    score = float(risk.score_from_pd(pd_))
    decision = str(risk.band(score, limits[1], limits[0]))
    a, b, c = st.columns(3)
    a.metric("Probability of default", f"{pd_:.1%}")
    b.metric("Score", f"{score:.0f} points")
    c.markdown(f"**Decision**  \n:{'green' if decision == 'approve' else 'orange' if decision == 'review' else 'red'}"
               f"-badge[{decision.upper()}]")
    base, points = model.explain(x, method)
    reasons = points[points < 0].sort_values().head(4)
    if len(reasons):
        st.markdown("**Reason codes** (what lowered the score most): " + files.plain("; ".join(
            f"{name} = {values[name] if isinstance(values[name], str) else f'{values[name]:,.6g}'} "
            f"({pts:+.0f} points)" for name, pts in reasons.items())))
    how = ("exact scorecard points" if method == risk.Method.SCORECARD else
           "Shapley values against 64 training applicants, sampled over 12 feature orders")
    st.plotly_chart(waterfall(base, points, score), width="stretch", key="risk_waterfall")
    st.caption(f"Per-feature contributions in points ({how}); base + contributions = score.")


def policy_view(model: risk.RiskModel, method: risk.Method, limits: tuple[float, float]) -> None:
    result = risk.policy(model.test, method, approve_at=limits[1], decline_below=limits[0])
    cols = st.columns(5)
    cols[0].metric("Approved", f"{result['approve_rate']:.0%}")
    cols[1].metric("Referred for review", f"{result['review_rate']:.0%}")
    cols[2].metric("Declined", f"{result['decline_rate']:.0%}")
    cols[3].metric("Expected bad rate, approved", f"{result['expected_bad_rate']:.1%}")
    cols[4].metric("Observed bad rate, approved", f"{result['observed_bad_rate']:.1%}")
    st.caption(f"On the {len(model.test):,} held-out applicants. Expected: the mean predicted probability of "
               "default among those approved; observed: how many of them actually went bad.")
    scores = risk.score_from_pd(model.test[f"pd_{method}"].to_numpy())
    grid = np.arange(np.floor(scores.min() / 5) * 5, np.ceil(scores.max() / 5) * 5 + 5, 5)
    curve = pd.DataFrame([{"approve at": t, **risk.policy(model.test, method, t, min(t, limits[0]))} for t in grid])
    fig = go.Figure()
    fig.add_scatter(x=curve["approve at"], y=curve.approve_rate, name="approval rate", mode="lines")
    fig.add_scatter(x=curve["approve at"], y=curve.observed_bad_rate, name="bad rate among approved", mode="lines")
    fig.add_vline(x=limits[1], line_dash="dash", annotation_text="current")
    fig.update_layout(title="The trade-off: approval rate against bad rate", xaxis_title="Approve at score ≥",
                      yaxis=dict(title="Share of applicants", tickformat=".0%"), height=360)
    st.plotly_chart(fig, width="stretch", key="risk_policy_curve")


def batch_view(model: risk.RiskModel, method: risk.Method, limits: tuple[float, float]) -> None:
    st.download_button("Template CSV (header and one example row)", risk.template(model.schema),
                       file_name="applicants_template.csv", mime="text/csv", on_click="ignore")
    upload = st.file_uploader("Applicants to score (CSV)", type=["csv", "txt"], key="risk_batch_upload")
    if upload is None:
        return
    key = (upload.file_id, id(model), method, limits)
    if st.session_state.get("risk_batch", {}).get("key") != key:
        if not allow_heavy_call():
            return
        frame, notices = read_uploaded_csv(upload)
        if frame is None:
            return
        with st.spinner(f"Scoring {len(frame):,} applicants…"):
            scored, problems = risk.score_batch(model, frame, method, approve_at=limits[1], decline_below=limits[0])
        st.session_state.risk_batch = {"key": key, "notices": notices, "scored": scored, "problems": problems}
    result = st.session_state.risk_batch
    scored, problems = result["scored"], result["problems"]
    for notice in result["notices"]:
        st.info(files.plain(notice))
    for problem in problems:  # messages quote the visitor's cells and column names: shown as plain text
        show = {"error": st.error, "row": st.warning, "note": st.info}[problem.level]
        show(f"**{problem.kind.capitalize()}.** {files.plain(problem.message)}")
    if scored is None:
        return
    counts = scored.band.value_counts().reindex([*risk.BANDS, "not scored"], fill_value=0)
    counts = counts[counts > 0]
    st.success(f"Scored {int((scored.band != 'not scored').sum()):,} of {len(scored):,} applicants.")
    left, right = st.columns([3, 2])
    left.dataframe(scored, hide_index=True, height=320)
    fig = px.bar(x=counts.index, y=counts.values, color=counts.index, color_discrete_map=BAND_COLOURS)
    fig.update_layout(xaxis_title="Decision", yaxis_title="Applicants", showlegend=False, height=320)
    right.plotly_chart(fig, width="stretch", key="risk_batch_chart")
    st.download_button("Download scored CSV", files.csv_download(scored), file_name="scored_applicants.csv",
                       mime="text/csv", type="primary", on_click="ignore")


def fairness_view(model: risk.RiskModel, method: risk.Method, limits: tuple[float, float]) -> None:
    options = model.schema.features
    default = next((i for i, c in enumerate(options) if c.lower() == "age"), 0)
    column = st.selectbox("Compare groups by", options, index=default, key="risk_fair_column")
    table = risk.fairness(model.test, column, method, approve_at=limits[1], decline_below=limits[0])
    judged = table[table.applicants >= risk.SMALL_GROUP]["approval rate"]
    if len(judged) >= 2 and judged.max() > 0:
        st.metric("Lowest approval rate ÷ highest", f"{judged.min() / judged.max():.2f}",
                  help=f"Groups of {risk.SMALL_GROUP} or more held-out applicants. The 'four-fifths rule' of thumb "
                       f"flags ratios below {risk.FAIR_RATIO} for review.")
    for finding in risk.fairness_findings(table):
        st.warning(files.plain(finding), icon=":material/balance:")
    fig = go.Figure()
    fig.add_bar(x=table.group, y=table["approval rate"], name="approval rate")
    fig.add_bar(x=table.group, y=table["bad rate"], name="observed bad rate")
    fig.add_scatter(x=table.group, y=table.AUC, name="AUC within group", mode="lines+markers", yaxis="y2")
    fig.update_layout(barmode="group", xaxis_title=column, yaxis=dict(title="Share of group", tickformat=".0%"),
                      yaxis2=dict(title="AUC", overlaying="y", side="right", range=[0.5, 1]), height=380,
                      legend=dict(orientation="h", y=-0.25))
    st.plotly_chart(fig, width="stretch", key="risk_fair_chart")
    st.dataframe(table, hide_index=True, column_config={
        "bad rate": st.column_config.NumberColumn(format="percent"),
        "approval rate": st.column_config.NumberColumn(format="percent"),
        "AUC": st.column_config.NumberColumn(format="%.3f")})
    st.caption("Held-out applicants only. AUC is blank for a group with only good or only bad outcomes.")


st.title("🏦 Credit-risk scoring")
st.caption("Decide loan applications in seconds: each applicant gets a score, an approve / review / decline answer "
           "under the policy you set, and the reasons a loan officer can read out; then check the policy is fair "
           "across groups. **Try first:** open *One applicant* and change the income.",
           help="Two models trained here estimate the probability of default; it becomes a score in points (600 at "
                "50:1 good:bad odds, 20 points to double the odds).")
model_credits("credit_risk", data=risk.SAMPLE_CREDIT)
api_help("credit_risk")

model = sample_or_own_model("credit_risk", (SAMPLE, OWN), "risk_data", train_own, "risk_own",
                            "Upload past applicants with their outcome, pick the outcome column, and train.")

left, right = st.columns([1, 2])
method = risk.Method(left.radio("Model", list(risk.METHODS), format_func=risk.METHODS.get, key="risk_method"))
limits = right.slider("Policy: decline below, approve at (score)", 400, 700, (500, 540), step=5, key="risk_limits")
right.caption(f"Decline below {limits[0]} (probability of default above {risk.pd_from_score(limits[0]):.0%}); "
              f"approve at {limits[1]} and above (below {risk.pd_from_score(limits[1]):.0%}); review in between.")

tabs = st.tabs(["Performance", "One applicant", "Policy", "Batch scoring", "Fairness", "Scorecard"], key="risk_tab")
with tabs[0]:
    meta = model.meta
    st.caption(f"Trained on {meta['train_rows']:,} applicants and tested on {meta['test_rows']:,} it never saw; "
               f"{meta['bad_rate']:.0%} went bad. Training took {meta['train_seconds']:.1f} s.",
               help="A stratified 75/25 split (seed 0): the held-out quarter has the same share of bad loans.")
    auc = model.metrics[str(method)]["AUC"]
    if auc == auc:  # NaN when the held-out part has one outcome only
        st.markdown(f"**In plain words:** shown one applicant who later defaulted and one who repaid, the "
                    f"{risk.METHODS[method].lower()} model gives the defaulter the higher risk {auc:.0%} of the "
                    "time (a coin toss would manage 50%).")
    st.dataframe(metrics_table(model), column_config={k: st.column_config.NumberColumn(format="%.3f", help=h)
                                                      for k, h in METRIC_HELP.items()})
    cal = model.metrics["calibration"]
    st.caption(f"Calibration (Platt scaling, 5-fold) changed the gradient-boosting Brier score by "
               f"{cal['brier_change']:+.4f} (bootstrap standard error {cal['brier_change_se']:.4f}); lower is better.")
    a, b = st.columns(2)
    a.plotly_chart(roc_chart(model.test), width="stretch", key="risk_roc")
    b.plotly_chart(calibration_chart(model.test), width="stretch", key="risk_cal")
    st.plotly_chart(score_histogram(model.test, method, limits), width="stretch", key="risk_hist")
with tabs[1]:
    applicant_form(model, method, limits)
with tabs[2]:
    policy_view(model, method, limits)
with tabs[3]:
    batch_view(model, method, limits)
with tabs[4]:
    fairness_view(model, method, limits)
with tabs[5]:
    st.caption("The logistic scorecard in full: each applicant gets the base points plus one row per feature.")
    st.metric("Base points", f"{model.scorecard.base_points:.0f}")
    st.dataframe(model.scorecard.table(), hide_index=True, height=420, column_config={
        "bad rate": st.column_config.NumberColumn(format="percent"),
        "WoE": st.column_config.NumberColumn(format="%.3f"), "points": st.column_config.NumberColumn(format="%.1f")})
